"""The generation API the app, the CLI and the benchmarks use: `load_chain(...).generate(prompt)`."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import InputError
from .io import bundled, load_weights
from .precision import bf16_calls, cpu_has_bf16
from .prompt import parse_prompt
from .render import compose_row, to_uint8
from .sampler import guided, iter_improved, network_evals

MAX_SEED = 2**63 - 1
MAX_GUIDANCE = 20.0


@dataclass
class Generation:
    """One drawn prompt: the final row, the row after every step, and (improved) every guess."""

    prompt: str
    digits: list[int]
    seed: int
    chain: str
    row: np.ndarray  # (28, W) uint8
    steps: list[np.ndarray] = field(default_factory=list)  # starting noise first, last == row
    guesses: list[np.ndarray] | None = None  # the denoiser's clean-digit guess at each step
    done: bool = True  # False on the partial results `stream` yields while the chain runs


def check_seed(seed) -> int:
    """A usable seed: None draws a random one; anything else must be an integer 0 ... 2**63 - 1."""
    if seed is None:
        return secrets.randbelow(2**31)
    if isinstance(seed, float) and seed.is_integer():
        seed = int(seed)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise InputError(f"The seed must be a whole number, got {seed!r}.")
    if not 0 <= int(seed) <= MAX_SEED:
        raise InputError(f"The seed must be between 0 and {MAX_SEED}, got {seed}.")
    return int(seed)


class Chain:
    """Common front of both chains: parse, seed, stream partial rows, return a Generation."""

    name = "chain"
    max_steps = 0
    default_steps = 0
    supports_guidance = False

    def __init__(self, model, source: str):
        self.model = model
        self.source = source  # where the weights came from, shown in the app

    def generate(self, prompt: str, seed=None, steps=None, guidance=None, same_hand=False, labels=None):
        """Draw `prompt` (or explicit digit `labels`); see `stream` for the arguments."""
        last = None
        for last in self.stream(prompt, seed, steps, guidance, same_hand, labels):
            pass
        return last

    def stream(self, prompt, seed=None, steps=None, guidance=None, same_hand=False, labels=None):
        """Yield a partial Generation after every step, then the finished one (done=True)."""
        digits = list(labels) if labels is not None else parse_prompt(prompt)
        seed = check_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        partial = Generation(prompt, digits, seed, self.name, row=np.zeros((28, 28), np.uint8), done=False)
        for row, guess in self._frames(digits, gen, steps, guidance, bool(same_hand)):
            partial.steps.append(row)
            if guess is not None:
                partial.guesses = partial.guesses or []
                partial.guesses.append(guess)
            partial.row = row
            yield partial
        partial.done = True
        yield partial

    def sample(self, labels, seed=None, steps=None, guidance=None, same_hand=False) -> np.ndarray:
        """(N, 28, 28) uint8 digits for explicit labels; one batched run, no frames kept."""
        gen = torch.Generator().manual_seed(check_seed(seed))
        return self._final(list(labels), gen, steps, guidance, bool(same_hand))

    def _noise(self, n: int, gen, same_hand: bool) -> torch.Tensor:
        if same_hand:
            return torch.randn((1, 1, 28, 28), generator=gen).expand(n, -1, -1, -1).contiguous()
        return torch.randn((n, 1, 28, 28), generator=gen)


class OriginalChain(Chain):
    """The author's recipe: per-digit chains of denoisers and connections from normal noise."""

    name = "original"

    def __init__(self, model, source):
        super().__init__(model, source)
        self.max_steps = self.default_steps = model.n_blocks

    def _check(self, steps, guidance):
        if steps not in (None, self.max_steps):
            raise InputError(f"The original chain always runs all {self.max_steps} blocks; leave steps empty.")
        if guidance not in (None, 1.0):
            raise InputError("The original chain has no guidance; leave it empty.")

    @torch.inference_mode()
    def _frames(self, digits, gen, steps, guidance, same_hand) -> Iterator:
        self._check(steps, guidance)
        frames: list = []
        self.model(self._noise(len(digits), gen, same_hand), digits, lambda i, x: frames.append(x))
        for x in frames:  # the original chain is tiny: run it, then hand out the frames
            yield compose_row(to_uint8(x)), None

    @torch.inference_mode()
    def _final(self, labels, gen, steps, guidance, same_hand):
        self._check(steps, guidance)
        return to_uint8(self.model(self._noise(len(labels), gen, same_hand), labels))


class ImprovedChainAPI(Chain):
    """The shared conditional denoiser, sampled with fresh noise at every step."""

    name = "improved"
    supports_guidance = True

    def __init__(self, model, source, eta: float | None = None, order: int | None = None, bf16: bool | None = None):
        super().__init__(model, source)
        self.max_steps = model.levels
        self.default_steps = model.default_steps
        self._ladders = {k: model.sub_alpha_bars(k) for k in range(1, model.levels + 1)}  # once
        # the weights' sampling defaults, then the caller's; bf16 network passes where the CPU runs them natively
        self.eta, self.order, self.bf16, self.guidance_interval = 1.0, 1, False, None
        self.configure(getattr(model, "default_eta", 1.0), getattr(model, "default_order", 1), True,
                       getattr(model, "guidance_interval", None) or "all")  # fmt: skip
        self.configure(eta, order, bf16)
        self.on_cpu = next(model.parameters()).device.type == "cpu"

    def configure(self, eta=None, order=None, bf16=None, guidance_interval=None) -> None:
        """How the chain steps. eta: 1 = fresh noise at every step (posterior sampling), 0 = deterministic;
        order: 1 = each step uses its own guess, 2 = also the previous step's (DPM-Solver++(2M), no extra pass);
        bf16: run the network in bf16 (only where the CPU has it natively); guidance_interval: (sigma_lo,
        sigma_hi) to guide only at those noise levels, or "all". None keeps the current setting."""
        if guidance_interval is not None:
            if guidance_interval == "all":
                self.guidance_interval = None
            else:
                try:
                    lo, hi = (float(v) for v in guidance_interval)
                except (TypeError, ValueError):
                    lo = hi = float("nan")
                if not 0 <= lo <= hi:
                    raise InputError(f"guidance_interval must be (sigma_lo, sigma_hi) with 0 <= lo <= hi or "
                                     f"'all', got {guidance_interval!r}.")  # fmt: skip
                self.guidance_interval = (lo, hi)
        if bf16 is not None:
            self.bf16 = bool(bf16) and cpu_has_bf16()
        if eta is not None:
            if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 0 <= eta <= 1:
                raise InputError(f"eta must be a number from 0 to 1, got {eta!r}.")
            self.eta = float(eta)
        if order is not None:
            if order not in (1, 2) or isinstance(order, bool):
                raise InputError(f"order must be 1 or 2, got {order!r}.")
            self.order = int(order)

    def _settings(self, steps, guidance) -> tuple[int, float]:
        """Checked (steps, guidance), the weights' defaults where None."""
        steps = self.default_steps if steps is None else steps
        if isinstance(steps, float) and steps.is_integer():
            steps = int(steps)
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 1 <= steps <= self.max_steps:
            raise InputError(f"steps must be a whole number from 1 to {self.max_steps}, got {steps!r}.")
        guidance = self.model.default_guidance if guidance is None else guidance
        if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or not 0 <= guidance <= MAX_GUIDANCE:
            raise InputError(f"guidance must be a number from 0 to {MAX_GUIDANCE:g}, got {guidance!r}.")
        return int(steps), float(guidance)

    def network_evals(self, steps=None, guidance=None) -> int:
        """Network passes per digit of one chain run with these settings (guided steps count twice)."""
        steps, guidance = self._settings(steps, guidance)
        return network_evals(self._ladders[steps], guidance, self.guidance_interval)

    def _denoiser(self, labels: torch.Tensor, guidance: float):
        """denoise(x, alpha_bar, z) -> clean guess for these labels: the network with classifier-free guidance."""
        return guided(self.model, labels, guidance, self.guidance_interval)

    def _iter(self, labels, gen, steps, guidance, same_hand):
        steps, guidance = self._settings(steps, guidance)
        n = len(labels)
        shape = (1 if same_hand else n, 1, 28, 28)
        nz = self.model.net.latent_dim

        def expand(t):
            return t.expand(n, *t.shape[1:]) if same_hand else t

        noise = expand(torch.randn(shape, generator=gen))
        latents = [expand(torch.randn((shape[0], nz), generator=gen)) for _ in range(steps)]
        fresh = [expand(torch.randn(shape, generator=gen)) for _ in range(steps)]
        label_t = torch.as_tensor(labels, dtype=torch.long)
        denoise = bf16_calls(self._denoiser(label_t, guidance), self.bf16 and self.on_cpu)
        it = iter_improved(
            denoise, noise, self._ladders[steps], latents.__getitem__, self.eta,
            step_noise=fresh.__getitem__, order=self.order,
        )  # fmt: skip
        return noise, it

    @torch.inference_mode()
    def _frames(self, digits, gen, steps, guidance, same_hand) -> Iterator:
        noise, it = self._iter(digits, gen, steps, guidance, same_hand)
        yield compose_row(to_uint8(noise, -1, 1)), None
        for _, x, x0 in it:
            yield compose_row(to_uint8(x, -1, 1)), compose_row(to_uint8(x0, -1, 1))

    @torch.inference_mode()
    def _final(self, labels, gen, steps, guidance, same_hand):
        _, it = self._iter(labels, gen, steps, guidance, same_hand)
        x = None
        for _, x, _ in it:
            pass
        return to_uint8(x, -1, 1)


ADAPTERS = {"original": OriginalChain, "improved": ImprovedChainAPI}


def load_chain(
    name: str | None = None, source: str | Path | None = None, revision: str | None = None, **hub_kwargs
) -> Chain:
    """Load a chain by name ("improved", the default, or "original").

    source: None for the bundled weights in assets/, a local directory, or a Hub repo id.
    """
    name = name or "improved"
    if name not in ADAPTERS:
        raise InputError(f"Unknown chain {name!r}; choose 'improved' or 'original'.")
    src = bundled(name) if source is None else source
    model = load_weights(name, src, revision=revision, **hub_kwargs)
    label = "bundled" if source is None else str(source) + (f"@{revision}" if revision else "")
    return ADAPTERS[name](model, label)
