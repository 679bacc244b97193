"""The improved chain's network: a small class-conditional U-Net that predicts the clean digit.

Conditioning: the noise level (log-SNR, Fourier features), the digit (10 classes + 1 "no label"
slot for classifier-free guidance) and a latent z (zero-initialised, so it only starts to matter in
the adversarial stage, as in Denoising Diffusion GANs). Preconditioning follows EDM (Karras et al.
2022, table 1) written for a variance-preserving state x_t = sqrt(ab) x0 + sqrt(1 - ab) eps.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

NULL_LABEL = 10  # the extra class slot used for unconditional passes (label dropout / guidance)


class FourierEmbedding(nn.Module):
    """Fixed random Fourier features of a scalar (B,) -> (B, dim)."""

    def __init__(self, dim: int, scale: float = 4.0):
        super().__init__()
        g = torch.Generator().manual_seed(0)  # fixed seed, so the buffer need not be saved
        freqs = torch.randn(dim // 2, generator=g) * scale
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, x):
        x = x[:, None] * self.freqs[None].to(x) * 2 * math.pi
        return torch.cat([x.cos(), x.sin()], dim=1)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with the embedding as a per-channel scale and shift."""

    def __init__(self, cin: int, cout: int, emb_dim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(min(8, cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * cout)
        self.norm2 = nn.GroupNorm(min(8, cout), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(self.norm2(h) * (1 + scale) + shift)
        return self.skip(x) + self.conv2(h)


class UNet(nn.Module):
    """(B, 1, 28, 28) noisy state -> (B, 1, 28, 28) clean-digit estimate, in [-1, 1] units.

    Resolutions 28 -> 14 -> 7 with channels (ch, 2ch, low_mult x ch); one ResBlock per level each way,
    `mid_blocks` of them at 7x7 (where the digit's overall shape is decided, and a block costs least).
    """

    def __init__(
        self,
        ch: int = 32,
        emb_dim: int = 128,
        latent_dim: int = 16,
        sigma_data=0.5,
        mid_blocks: int = 1,
        low_mult: int = 2,
    ):
        super().__init__()
        self.sigma_data = sigma_data
        self.latent_dim = latent_dim
        c1, c2, c3 = ch, 2 * ch, low_mult * ch
        self.noise_emb = FourierEmbedding(emb_dim)
        self.label_emb = nn.Embedding(11, emb_dim)
        self.latent_emb = nn.Linear(latent_dim, emb_dim)
        nn.init.zeros_(self.latent_emb.weight)
        nn.init.zeros_(self.latent_emb.bias)
        self.emb_mlp = nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.inp = nn.Conv2d(1, c1, 3, padding=1)
        self.down1 = ResBlock(c1, c1, emb_dim)  # 28x28
        self.pool1 = nn.Conv2d(c1, c2, 3, stride=2, padding=1)  # -> 14x14
        self.down2 = ResBlock(c2, c2, emb_dim)
        self.pool2 = nn.Conv2d(c2, c3, 3, stride=2, padding=1)  # -> 7x7
        self.mid = ResBlock(c3, c3, emb_dim)
        self.mid_more = nn.ModuleList(ResBlock(c3, c3, emb_dim) for _ in range(mid_blocks - 1))
        self.up2 = ResBlock(c3 + c2, c2, emb_dim)  # 14x14, with skip
        self.up1 = ResBlock(c2 + c1, c1, emb_dim)  # 28x28, with skip
        self.out = nn.Sequential(nn.GroupNorm(8, c1), nn.SiLU(), nn.Conv2d(c1, 1, 3, padding=1))

    def forward(self, x_t, alpha_bar, labels, z=None):
        """x_t: (B, 1, 28, 28); alpha_bar: (B,) signal fraction; labels: (B,) in 0..10."""
        ab = alpha_bar.to(x_t.dtype).clamp(1e-6, 1 - 1e-6)
        sigma = ((1 - ab) / ab).sqrt()  # EDM noise level of y = x_t / sqrt(ab) = x0 + sigma eps
        sd = self.sigma_data
        c_in = 1 / (ab.sqrt() * (sigma**2 + sd**2).sqrt())
        c_skip = sd**2 / (sigma**2 + sd**2)
        c_out = sigma * sd / (sigma**2 + sd**2).sqrt()
        emb = self.noise_emb(sigma.log() / 4) + self.label_emb(labels)
        if z is not None:
            emb = emb + self.latent_emb(z)
        emb = self.emb_mlp(F.silu(emb))

        h0 = self.inp(x_t * c_in[:, None, None, None])
        h1 = self.down1(h0, emb)
        h2 = self.down2(self.pool1(h1), emb)
        h = self.mid(self.pool2(h2), emb)
        for block in self.mid_more:
            h = block(h, emb)
        h = self.up2(torch.cat([F.interpolate(h, scale_factor=2.0), h2], 1), emb)
        h = self.up1(torch.cat([F.interpolate(h, scale_factor=2.0), h1], 1), emb)
        f = self.out(h)
        y = x_t / ab.sqrt()[:, None, None, None]
        return c_skip[:, None, None, None] * y + c_out[:, None, None, None] * f
