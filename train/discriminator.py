"""The adversarial stage's discriminator: judges (x_s, x_t) pairs given the level and the digit."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Discriminator(nn.Module):
    """(x_s, x_t) (B, 1, 28, 28) each, level index t (B,), digit (B,) -> logit (B,).

    A small strided convnet over the concatenated pair; conditioning by projection (Miyato &
    Koyama 2018) on an embedding of the level and the digit.
    """

    def __init__(self, ch: int = 32, emb_dim: int = 128, max_levels: int = 64):
        super().__init__()
        self.level_emb = nn.Embedding(max_levels + 1, emb_dim)
        self.label_emb = nn.Embedding(11, emb_dim)
        self.body = nn.Sequential(
            nn.Conv2d(2, ch, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(ch, 2 * ch, 4, stride=2, padding=1), nn.LeakyReLU(0.2),  # 14x14
            nn.Conv2d(2 * ch, 4 * ch, 4, stride=2, padding=1), nn.LeakyReLU(0.2),  # 7x7
            nn.Conv2d(4 * ch, emb_dim, 3, padding=1), nn.LeakyReLU(0.2),
        )  # fmt: skip
        self.out = nn.Linear(emb_dim, 1)

    def forward(self, x_s, x_t, t, labels):
        h = self.body(torch.cat([x_s, x_t], 1)).sum((2, 3))  # (B, emb_dim)
        e = self.level_emb(t) + self.label_emb(labels)
        return self.out(F.leaky_relu(h, 0.2))[:, 0] + (h * e).sum(1) / h.shape[1] ** 0.5
