"""Turning model outputs into pictures: rows as the original composed them, grids, GIFs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image


def to_uint8(x: torch.Tensor, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
    """(B, 1, 28, 28) float in [lo, hi] -> (B, 28, 28) uint8."""
    x = ((x.detach().float().cpu() - lo) / (hi - lo)).clamp(0, 1)
    return (x[:, 0] * 255).round().to(torch.uint8).numpy()


def compose_row(digits: np.ndarray) -> np.ndarray:
    """(B, 28, 28) -> (28, 28 + 25 (B - 1)): every digit after the first cropped to columns 2..26."""
    parts = [digits[0]] + [d[:, 2:27] for d in digits[1:]]
    return np.concatenate(parts, axis=1)


def row_width(n: int) -> int:
    return 28 + 25 * (n - 1)


def grid(images: np.ndarray, nrow: int = 10, pad: int = 2) -> np.ndarray:
    """(N, 28, 28) uint8 -> one (H, W) uint8 grid, `nrow` images per row."""
    from torchvision.utils import make_grid

    t = torch.from_numpy(np.asarray(images))[:, None]
    return make_grid(t, nrow=nrow, padding=pad, pad_value=255)[0].numpy()


def upscale(img: np.ndarray, factor: int = 4) -> Image.Image:
    """Nearest-neighbour upscaling, so pixels stay crisp in the browser."""
    im = Image.fromarray(np.asarray(img, dtype=np.uint8))
    return im.resize((im.width * factor, im.height * factor), Image.Resampling.NEAREST)


def save_png(img: np.ndarray, path: str | Path, factor: int = 1) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    upscale(img, factor).save(path)
    return path


def save_gif(frames: list[np.ndarray], path: str | Path, factor: int = 4, ms: int = 250) -> Path:
    """Animated GIF of equally sized uint8 frames; the last frame is held a little longer."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ims = [upscale(f, factor) for f in frames]
    durations = [ms] * (len(ims) - 1) + [ms * 4]
    ims[0].save(path, save_all=True, append_images=ims[1:], duration=durations, loop=0)
    return path
