"""Shared fixtures: a tiny MNIST written in torchvision's raw layout, made inside the test."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(1)  # tests are tiny; one thread avoids oversubscribing 2-core CI machines


def fake_digits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n 28x28 uint8 images with labels 0..9: a bar whose position encodes the digit, plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    images = (rng.random((n, 28, 28)) * 40).astype(np.uint8)
    for i, d in enumerate(labels):
        c = 3 + 2 * d + rng.integers(0, 2)
        images[i, 4:24, c : c + 3] = 255
    return images, labels.astype(np.uint8)


def write_idx(raw: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    raw.mkdir(parents=True, exist_ok=True)
    (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
        struct.pack(">IIII", 2051, len(images), 28, 28) + images.tobytes()
    )
    (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, len(labels)) + labels.tobytes())


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory) -> Path:
    """A data root holding MNIST/raw with 400 train and 200 test fake digits."""
    root = tmp_path_factory.mktemp("mnist")
    raw = root / "MNIST" / "raw"
    write_idx(raw, "train", *fake_digits(400, seed=0))
    write_idx(raw, "t10k", *fake_digits(200, seed=1))
    return root
