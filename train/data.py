"""MNIST through torchvision, with a clear message when it is missing, and per-digit subsets."""

from __future__ import annotations

import socket
from pathlib import Path

import torch


class DataError(RuntimeError):
    """MNIST could not be found or fetched; the message says where it looked and what to do."""


def load_mnist(root: str | Path, train: bool = True, download: bool = True):
    """Return (images uint8 (N, 28, 28), labels int64 (N,)) from `root` in torchvision's layout.

    Downloads into `root` when the files are missing and `download` is set (needs internet).
    """
    from torchvision.datasets import MNIST

    root = Path(root).expanduser()
    split = "train" if train else "test"
    try:
        ds = MNIST(str(root), train=train, download=False)
    except RuntimeError:
        if not download:
            raise DataError(_missing(root, split)) from None
        old = socket.getdefaulttimeout()
        socket.setdefaulttimeout(15)  # a machine without internet fails fast instead of hanging
        try:
            ds = MNIST(str(root), train=train, download=True)
        except Exception as e:  # any network or disk failure ends in the same advice
            raise DataError(_missing(root, split) + f" (download failed: {e})") from None
        finally:
            socket.setdefaulttimeout(old)
    return ds.data.clone(), ds.targets.clone()


def _missing(root: Path, split: str) -> str:
    return (
        f"MNIST ({split}) was not found under {root.resolve()}/MNIST/raw. Pass --data-root with "
        "the folder that holds MNIST/raw (torchvision's layout), or run once with internet so "
        "torchvision can download it there."
    )


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float (N, 1, 28, 28) in [0, 1]."""
    return images.float().div(255).unsqueeze(1)


def digit_subsets(
    images: torch.Tensor, labels: torch.Tensor, equalise: bool = True, limit: int | None = None
) -> dict[int, torch.Tensor]:
    """Images of each digit; `equalise` truncates every class to the smallest (as the original).

    `limit` caps each class further (the cpu and smoke presets train on fewer images).
    """
    subsets = {d: images[labels == d] for d in range(10)}
    n = min(len(s) for s in subsets.values()) if equalise else None
    if limit is not None:
        n = limit if n is None else min(n, limit)
    return {d: s[:n] for d, s in subsets.items()}
