"""Samplers: pure functions of (network, starting noise, ladder, labels, generator).

Each is a generator over the chain's steps, so a caller can watch every intermediate state;
`run` drains one and hands each step to a callback (the k-diffusion calling convention).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch


def posterior_step(x_t, x0, ab_t, ab_s, eta: float, noise):
    """Sample x_s ~ q(x_s | x_t, x0) for levels s < t of a variance-preserving ladder.

    eta = 1 is the exact posterior (DDPM, Ho et al. 2020 eq. 7, generalised to skipped levels);
    eta = 0 is deterministic DDIM (Song et al. 2021 eq. 12). ab_*: floats or (B,) tensors.
    """
    ab_t, ab_s = torch.as_tensor(ab_t, dtype=x_t.dtype), torch.as_tensor(ab_s, dtype=x_t.dtype)
    ab_t, ab_s = ab_t.reshape(-1, 1, 1, 1), ab_s.reshape(-1, 1, 1, 1)
    var = (1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s)  # posterior variance
    sigma = eta * var.clamp(min=0).sqrt()
    eps = (x_t - ab_t.sqrt() * x0) / (1 - ab_t).sqrt()  # the noise the estimate implies
    direction = (1 - ab_s - sigma**2).clamp(min=0).sqrt() * eps
    return ab_s.sqrt() * x0 + direction + sigma * noise


def dpm_step(x_t, x0, x0_prev, ab_t, ab_s, h_prev, eta: float, noise):
    """One SDE-DPM-Solver++(2M) step from level t to s < t (Lu et al. 2022, "DPM-Solver++").

    Works in log-SNR time lambda = log(sqrt(ab) / sqrt(1 - ab)); h = lambda_s - lambda_t.
    eta = 1: the first-order step *is* the exact posterior sample (same as `posterior_step(eta=1)`);
    eta = 0: deterministic DPM-Solver++(2M). With a previous guess x0_prev (from the step before, of
    length h_prev) the guess is extrapolated to second order (multistep: no extra network pass).
    Returns (x_s, h).
    """
    ab_t, ab_s = torch.as_tensor(ab_t, dtype=torch.float64), torch.as_tensor(ab_s, dtype=torch.float64)
    a_s, s_t, s_s = ab_s.sqrt(), (1 - ab_t).sqrt(), (1 - ab_s).sqrt()
    h = (a_s / s_s).log() - (ab_t.sqrt() / s_t).log()
    keep = float(s_s / s_t * torch.exp(-h * eta))  # how much of x_t survives
    mix = float(a_s * -torch.expm1(-h * (1 + eta)))  # weight of the clean guess
    x0_hat = x0 if x0_prev is None else x0 + (x0 - x0_prev) * float(h / (2 * h_prev))
    x_s = keep * x_t + mix * x0_hat
    if eta > 0:
        x_s = x_s + float(s_s * (-torch.expm1(-2 * h * eta)).sqrt()) * noise
    return x_s, float(h)


def iter_improved(
    denoise: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    noise: torch.Tensor,
    alpha_bars: torch.Tensor,
    latents: Callable[[int], torch.Tensor | None],
    eta: float | Sequence[float] = 1.0,
    generator: torch.Generator | None = None,
    step_noise: Callable[[int], torch.Tensor] | None = None,
    order: int = 1,
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """Walk the sub-ladder alpha_bars[0] (noisiest) ... alpha_bars[-1] (= 1, clean).

    denoise(x, alpha_bar (B,), z) -> clean estimate. Yields (i, x_i, x0_guess_i) after step i.
    `latents(i)` gives step i's latent (fresh per step, DDGAN); `step_noise(i)` the fresh noise
    injected at step i (defaults to standard normal from `generator`).
    order 1: each step samples the posterior around the guess (`posterior_step`; eta as in DDIM).
    order 2: `dpm_step`, which also uses the previous step's guess (eta as in SDE-DPM-Solver++).
    Both give the same first step and agree exactly for eta in {0, 1} when order is 1.
    `eta` is one number for every step, or one per step (noisiest first).
    """
    if order not in (1, 2):
        raise ValueError(f"order must be 1 or 2, got {order!r}")
    x, prev, h_prev = noise, None, None
    b = x.shape[0]
    etas = [float(eta)] * (len(alpha_bars) - 1) if isinstance(eta, (int, float)) else [float(e) for e in eta]
    if len(etas) != len(alpha_bars) - 1:
        raise ValueError(f"eta: one value per step ({len(alpha_bars) - 1}), got {len(etas)}")
    for i in range(len(alpha_bars) - 1):
        ab_t, ab_s, eta = alpha_bars[i], alpha_bars[i + 1], etas[i]
        x0 = denoise(x, ab_t.expand(b), latents(i)).clamp(-1, 1)
        if step_noise is not None:
            z = step_noise(i)
        else:
            z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        if ab_s >= 1:
            x = x0
        elif order == 1:
            x = posterior_step(x, x0, ab_t, ab_s, eta, z)
        else:
            x, h_prev = dpm_step(x, x0, prev, ab_t, ab_s, h_prev, eta, z)
            prev = x0
        yield i + 1, x, x0


def noise_level(alpha_bar) -> float:
    """EDM's sigma of a VP level: x_t / sqrt(ab) = x0 + sigma * eps."""
    ab = float(alpha_bar)
    return ((1 - ab) / ab) ** 0.5 if ab > 0 else float("inf")


def in_interval(alpha_bar, interval: tuple[float, float] | None) -> bool:
    """Whether guidance applies at this level: everywhere (None) or for sigma in [lo, hi]."""
    return interval is None or interval[0] <= noise_level(alpha_bar) <= interval[1]


def guided(net, labels: torch.Tensor, guidance: float, interval: tuple[float, float] | None = None):
    """Classifier-free guidance (Ho & Salimans 2022): x0 = u + w (c - u), one batched pass.

    interval (sigma_lo, sigma_hi): guide only at those noise levels, one plain pass elsewhere
    (Kynkäänniemi et al. 2024: guidance at high noise costs diversity, at low noise it does little).
    """
    from .unet import NULL_LABEL

    if guidance == 1.0:
        return lambda x, ab, z: net(x, ab, labels, z)
    null = torch.full_like(labels, NULL_LABEL)

    def denoise(x, ab, z):
        if not in_interval(ab[0], interval):
            return net(x, ab, labels, z)
        zz = None if z is None else torch.cat([z, z])
        both = net(torch.cat([x, x]), torch.cat([ab, ab]), torch.cat([labels, null]), zz)
        cond, uncond = both.chunk(2)
        return uncond + guidance * (cond - uncond)

    return denoise


def network_evals(alpha_bars, guidance: float, interval: tuple[float, float] | None = None) -> int:
    """Network passes per digit for a chain over alpha_bars (noisiest first): 2 at each guided step."""
    return sum(2 if guidance != 1.0 and in_interval(ab, interval) else 1 for ab in alpha_bars[:-1])


def run(steps: Iterator, callback: Callable | None = None):
    """Drain a sampler, calling callback(*step) on each; returns the last step."""
    last = None
    for last in steps:
        if callback is not None:
            callback(*last)
    return last
