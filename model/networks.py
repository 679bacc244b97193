"""The original author's networks: the denoiser and the (simpler) connection layer.

Both map (B, 1, 28, 28) in [0, 1] to (B, 1, 28, 28) in [0, 1] through a sigmoid. Layers follow
ORIGINAL_METHOD.md section 2/3 exactly ("same" padding, 3x3 unless stated); `width` scales every
channel count so a CPU-sized variant exists (width=1.0 is the original).
"""

from __future__ import annotations

from torch import nn


def _ch(c: int, width: float) -> int:
    return max(1, round(c * width))


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1)


def _up(c: int) -> nn.ConvTranspose2d:
    # Keras Conv2DTranspose(k=4, s=2, padding="same") doubles the size; so does k4 s2 p1 here.
    return nn.ConvTranspose2d(c, c, 4, stride=2, padding=1)


class Denoiser(nn.Module):
    """One step down the uniform ladder: level k+1 -> level k (conv autoencoder, sec. 2)."""

    def __init__(self, width: float = 1.0):
        super().__init__()
        c256, c128, c64 = _ch(256, width), _ch(128, width), _ch(64, width)
        self.net = nn.Sequential(
            _conv(1, c256), nn.ReLU(), nn.MaxPool2d(2), nn.BatchNorm2d(c256),  # (B, c256, 14, 14)
            _conv(c256, c128), nn.ReLU(), nn.MaxPool2d(2), nn.BatchNorm2d(c128),  # (B, c128, 7, 7)
            _conv(c128, c64), nn.ReLU(),
            _conv(c64, c128), nn.ReLU(), _up(c128), nn.Dropout(0.5),  # (B, c128, 14, 14)
            _conv(c128, c128), nn.ReLU(), _up(c128), nn.Dropout(0.5),  # (B, c128, 28, 28)
            _conv(c128, 1), nn.Sigmoid(),
        )  # fmt: skip

    def forward(self, x):
        return self.net(x)


class Connection(nn.Module):
    """The smaller net between two denoisers that "picks out the main points" (sec. 3)."""

    def __init__(self, width: float = 1.0):
        super().__init__()
        c = _ch(128, width)
        self.net = nn.Sequential(
            _conv(1, c), nn.ReLU(), nn.MaxPool2d(2), nn.BatchNorm2d(c),  # (B, c, 14, 14)
            _conv(c, c), nn.ReLU(), _up(c), nn.Dropout(0.5),  # (B, c, 28, 28)
            _conv(c, 1), nn.Sigmoid(),
        )  # fmt: skip

    def forward(self, x):
        return self.net(x)
