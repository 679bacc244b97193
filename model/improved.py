"""The improved chain's weights: the shared U-Net plus its Gaussian noise ladder (saved as data)."""

from __future__ import annotations

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from .ladder import cosine_alpha_bars, sub_ladder
from .unet import UNet


class ImprovedChain(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="denoiser-chain",
    tags=["mnist", "denoiser-chain", "diffusion", "ddgan"],
    license="mit",
):
    """A class-conditional denoiser shared by every step of a K-level variance-preserving ladder."""

    kind = "improved"

    def __init__(
        self,
        ch: int = 32,
        emb_dim: int = 128,
        latent_dim: int = 16,
        levels: int = 8,
        default_steps: int = 4,
        default_guidance: float = 1.0,
        adversarial: bool = False,
        default_eta: float = 1.0,
        default_order: int = 1,
        guidance_interval: list[float] | None = None,
        adversarial_mix: float = 0.0,
        mid_blocks: int = 1,
        low_mult: int = 2,
    ):
        super().__init__()
        self.levels, self.default_steps, self.default_guidance = levels, default_steps, default_guidance
        # how the shipped chain steps by default (model.sampler.iter_improved): fresh noise (eta) and solver order
        self.default_eta, self.default_order = default_eta, default_order
        self.guidance_interval = guidance_interval  # [sigma_lo, sigma_hi]: guide only there (None: everywhere)
        self.adversarial = adversarial  # set when the DDGAN stage produced these weights
        self.adversarial_mix = adversarial_mix  # m > 0: (1 - m) x the denoiser's weights + m x the DDGAN stage's
        self.net = UNet(ch=ch, emb_dim=emb_dim, latent_dim=latent_dim, mid_blocks=mid_blocks, low_mult=low_mult)
        # alpha_bar_k, k = 0 (clean) ... levels (noise); saved with the weights (a persistent buffer).
        self.register_buffer("alpha_bars", cosine_alpha_bars(levels))

    def check_ladder(self, where: str = "checkpoint") -> None:
        """Raise ValueError when the stored ladder cannot be the one this config describes."""
        ab = self.alpha_bars
        if ab.shape != (self.levels + 1,):
            raise ValueError(f"{where}: ladder has {ab.numel()} levels, config says {self.levels + 1}")
        if not (ab[0] == 1 and (ab[1:] < ab[:-1]).all() and ab[-1] >= 0):
            raise ValueError(f"{where}: ladder is not a decreasing signal fraction from 1")

    def sub_alpha_bars(self, steps: int) -> torch.Tensor:
        """The alpha_bars a `steps`-step chain visits, noisiest first, ending at 1 (clean)."""
        return self.alpha_bars[sub_ladder(self.levels, steps)]

    def forward(self, x_t, alpha_bar, labels, z=None):
        return self.net(x_t, alpha_bar, labels, z)
