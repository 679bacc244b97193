"""The original author's chain: per digit, denoisers and connection layers run in order.

Weights are one `model.safetensors` + `config.json` (the Hub layout, via PyTorchModelHubMixin)
holding one assembled chain per digit (or a single unconditional chain, key "all").
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from .networks import Connection, Denoiser

ASSEMBLIES = ("every_second", "all")


def assembly_indices(assembly: str, steps: int = 12) -> list[tuple[str, int]]:
    """Which pieces a chain runs, in order: [("denoiser", 0), ("connection", 0), ...].

    "every_second" (the original's happy mistake): denoisers 0, 2, ..., each followed by its
    connection layer -> 12 blocks for 12 steps. "all": every denoiser, with connection i between
    denoiser i and i + 1 -> 2 * steps - 1 blocks.
    """
    if assembly == "every_second":
        return [(kind, i) for i in range(0, steps, 2) for kind in ("denoiser", "connection")]
    if assembly == "all":
        order = [(kind, i) for i in range(steps - 1) for kind in ("denoiser", "connection")]
        return order + [("denoiser", steps - 1)]
    raise ValueError(f"Unknown assembly {assembly!r}; choose one of {', '.join(ASSEMBLIES)}.")


def make_block(kind: str, width: float) -> nn.Module:
    return Denoiser(width) if kind == "denoiser" else Connection(width)


def chain_keys(digits: list[int] | None) -> list[str]:
    """Keys of the per-digit chains: "0" ... "9", or "all" for one unconditional chain."""
    return ["all"] if digits is None else [str(d) for d in digits]


class OriginalChains(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="denoiser-chain",
    tags=["mnist", "denoiser-chain", "original"],
    license="mit",
):
    """One assembled chain per digit; `forward` runs them block by block from normal noise."""

    kind = "original"

    def __init__(
        self,
        width: float = 1.0,
        steps: int = 12,
        a: float = 0.3,
        assembly: str = "every_second",
        digits: list[int] | None = None,
    ):
        super().__init__()
        self.width, self.steps, self.a, self.assembly = width, steps, a, assembly
        self.digits = None if digits is None else list(digits)
        order = assembly_indices(assembly, steps)
        self.chains = nn.ModuleDict(
            {k: nn.ModuleList([make_block(kind, width) for kind, _ in order]) for k in chain_keys(self.digits)}
        )

    @property
    def n_blocks(self) -> int:
        return len(next(iter(self.chains.values())))

    def key(self, label: int) -> str:
        if self.digits is None:
            return "all"
        if label not in self.digits:
            raise ValueError(f"This checkpoint has no chain for digit {label} (it has {self.digits}).")
        return str(label)

    @torch.no_grad()
    def forward(
        self,
        noise: torch.Tensor,
        labels: list[int],
        callback: Callable[[int, torch.Tensor], None] | None = None,
    ) -> torch.Tensor:
        """noise: (B, 1, 28, 28) standard normal; labels: B digits. Returns (B, 1, 28, 28) in [0, 1].

        All chains advance one block at a time, so `callback(i, x)` sees the whole batch after
        block i (i = 1 ... n_blocks); it is first called with i = 0 and the starting noise.
        """
        groups: dict[str, list[int]] = {}
        for i, d in enumerate(labels):
            groups.setdefault(self.key(int(d)), []).append(i)
        x = noise
        if callback is not None:
            callback(0, x)
        for j in range(self.n_blocks):
            out = torch.empty_like(x)
            for k, idx in groups.items():
                out[idx] = self.chains[k][j](x[idx])
            x = out
            if callback is not None:
                callback(j + 1, x)
        return x
