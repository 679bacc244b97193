"""Recipes as dataclasses: one per chain, three presets each, every field overridable."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace


@dataclass
class OriginalConfig:
    """The author's five-stage recipe (ORIGINAL_METHOD.md); `faithful` is his exact numbers."""

    width: float = 1.0  # channel multiplier of every denoiser / connection (1.0 = original)
    steps: int = 12  # ladder steps (13 levels x_0 ... x_12)
    a: float = 0.3  # uniform noise amplitude per ladder step
    per_digit: int | None = None  # images per digit after equalising (None = smallest class)
    equalise: bool = True  # truncate every class to the smallest, as the original did
    assembly: str = "every_second"  # "every_second" (the original's) or "all" denoisers
    stage2_target: str = "natural"  # "natural": 13-i -> 11-i; "original": 12-i -> 13-i (his off-by-one)
    epochs1: int = 20  # stage 1, each denoiser on its pair of levels
    epochs2: int = 20  # stage 2, each connection between its two frozen denoisers (unstated: choice)
    epochs4: int = 40  # stage 4, whole chain, denoisers frozen
    epochs5: int = 20  # stage 5, whole chain, everything trainable (half of stage 4)
    batch_size: int = 64
    lr: float = 1e-3  # Adam's Keras default, as the notebooks used
    grid: int = 5  # the per-epoch GIF shows a grid x grid sample from fixed noise
    seed: int = 0


@dataclass
class ImprovedConfig:
    """The improved chain: one conditional U-Net, Gaussian ladder, optional DDGAN fine-tune."""

    ch: int = 32  # U-Net base channels (28x28: ch, 14x14: 2 ch, 7x7: low_mult x ch)
    low_mult: int = 2  # channel multiplier of the 7x7 level
    mid_blocks: int = 1  # ResBlocks at 7x7 (each costs little: the level has 1/16 of the pixels)
    emb_dim: int = 128  # width of the noise-level / digit / latent embedding
    latent_dim: int = 16  # DDGAN latent z fed to the denoiser (ignored until the GAN stage)
    levels: int = 8  # K: levels of the Gaussian ladder the denoiser is trained on
    default_steps: int = 4  # steps the shipped chain takes by default (a sub-ladder of K)
    default_eta: float = 1.0  # its default noise per step (1 = fresh posterior noise, 0 = deterministic)
    default_order: int = 1  # its default solver order (2 = DPM-Solver++(2M): reuses the last guess)
    default_guidance: float = 1.0  # its default classifier-free guidance weight (1 = none)
    guidance_interval: list | None = None  # [sigma_lo, sigma_hi]: guide only at those noise levels (None: all)
    label_dropout: float = 0.1  # fraction of labels replaced by "no label" (guidance)
    iters: int = 20000  # denoising pre-training steps
    batch_size: int = 128
    lr: float = 2e-3
    ema: float = 0.999  # EMA decay of the shipped weights
    warmup: int = 200  # linear lr warm-up steps
    adv_iters: int = 3000  # adversarial fine-tune steps (0 = skip the stage)
    adv_lr_g: float = 5e-5
    adv_lr_d: float = 2e-4  # the discriminator learns faster, so it does not sit at chance
    adv_rec: float = 1.0  # weight of the reconstruction (denoising) term during the GAN stage
    adv_r1: float = 0.02  # R1 gradient penalty on real pairs (DDGAN uses it too)
    adv_eval_every: int = 500  # measure FID/diversity this often and keep the best
    adv_eval_n: int = 100  # samples per digit for those quick checks
    adv_mix: float = 0.0  # if the stage's weights are not kept: try (1 - m) denoiser + m stage's weights (0 = off)
    sample_every: int = 1000  # GIF frame / metrics row cadence (steps)
    per_digit: int | None = None  # cap per class (None = all of MNIST train)
    bf16: bool = True  # bf16 autocast for denoising: always on CUDA; on a CPU with native bf16 (AVX512-BF16/AMX)
    seed: int = 0


PRESETS = {
    "original": {
        "faithful": {},
        "cpu": dict(width=0.125, per_digit=1000, epochs1=2, epochs2=1, epochs4=3, epochs5=2),
        "smoke": dict(width=0.0625, per_digit=48, epochs1=1, epochs2=1, epochs4=1, epochs5=1, batch_size=16, grid=2),
    },
    "improved": {
        "faithful": dict(ch=48, iters=30000, batch_size=256, adv_iters=4000),
        "cpu": dict(ch=32, low_mult=4, mid_blocks=2, iters=15000, default_steps=7, default_eta=0.25, default_order=2,
                    default_guidance=1.5, guidance_interval=[1.2, 2.0], adv_iters=300, adv_eval_every=100, adv_mix=0.25,
                    sample_every=500),
        "smoke": dict(ch=8, emb_dim=32, iters=6, batch_size=16, adv_iters=4, adv_eval_every=2,
                      adv_eval_n=4, sample_every=3, per_digit=20, warmup=2),
    },
}  # fmt: skip


def make_config(recipe: str, preset: str, overrides: list[str] | None = None):
    """The preset's config with `key=value` overrides applied (values parsed as Python literals)."""
    import ast

    cls = OriginalConfig if recipe == "original" else ImprovedConfig
    if preset not in PRESETS[recipe]:
        raise SystemExit(f"Unknown preset {preset!r}; choose one of {', '.join(PRESETS[recipe])}.")
    cfg = replace(cls(), **PRESETS[recipe][preset])
    names = {f.name for f in fields(cls)}
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep or key not in names:
            raise SystemExit(f"Bad override {item!r}: use key=value with key one of {', '.join(sorted(names))}.")
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parsed = value
        cfg = replace(cfg, **{key: parsed})
    return cfg


def as_dict(cfg) -> dict:
    return asdict(cfg)
