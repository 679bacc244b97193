"""Noise ladders: the original's uniform ladder and the improved chain's Gaussian one."""

from __future__ import annotations

import math

import torch


def uniform_ladder(
    x0: torch.Tensor, steps: int = 12, a: float = 0.3, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Levels x_0 ... x_steps with x_{k+1} = (x_k + u) / (1 + a), u ~ U(0, a) per pixel.

    x0: (N, 1, 28, 28) in [0, 1]. Returns (steps + 1, N, 1, 28, 28), same image order per level,
    so (levels[k + 1], levels[k]) are aligned pairs. Values stay in [0, 1].
    """
    levels = [x0]
    for _ in range(steps):
        u = torch.rand(x0.shape, generator=generator, device=x0.device) * a
        levels.append((levels[-1] + u) / (1 + a))
    return torch.stack(levels)


def cosine_alpha_bars(levels: int, s: float = 0.008, max_noise: float = 0.9999) -> torch.Tensor:
    """Signal fractions alpha_bar_k for k = 0 ... levels (Nichol & Dhariwal 2021, eq. 17).

    alpha_bar_0 = 1 (clean); alpha_bar_levels ~ 0 (pure noise). Shape (levels + 1,).
    """
    t = torch.linspace(0, 1, levels + 1, dtype=torch.float64)
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    ab = (f / f[0]).clamp(min=1 - max_noise, max=1.0)
    ab[0] = 1.0
    return ab.float()


def sub_ladder(levels: int, steps: int) -> list[int]:
    """`steps` evenly spaced level indices from the noisiest (levels) down to 0, both included.

    A chain of `steps` steps visits len == steps + 1 levels; steps == levels is the full ladder.
    """
    if not 1 <= steps <= levels:
        raise ValueError(f"steps must be between 1 and {levels}, got {steps}.")
    idx = torch.linspace(levels, 0, steps + 1).round().long().tolist()
    return idx
