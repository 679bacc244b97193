"""The improved chain's training: denoising pre-training, then the DDGAN adversarial stage.

Stage "denoise": the shared U-Net learns the clean digit from every level of a K-level Gaussian
ladder (EDM loss weighting, label dropout for guidance, EMA weights shipped).
Stage "adversarial" (Xiao et al. 2022): the denoiser also takes a latent z; a discriminator
conditioned on the level pair and the digit judges (x_s, x_t) pairs, real ones from q(x_s | x0)
and fake ones from the posterior around the denoiser's guess. A reconstruction term keeps it
anchored, and the stage keeps its weights only if they measurably beat the denoiser alone.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from model.api import ImprovedChainAPI
from model.improved import ImprovedChain
from model.io import load_weights, save_weights
from model.render import grid
from model.sampler import posterior_step
from model.unet import NULL_LABEL

from .config import ImprovedConfig
from .data import digit_subsets, load_mnist
from .discriminator import Discriminator
from .loop import ResumeError, atomic_save, autocast, load_state, log_metrics
from .original import check_run_dir
from .plots import add_frame, plot_losses


def edm_weight(ab: torch.Tensor, sigma_data: float = 0.5) -> torch.Tensor:
    """1 / c_out^2: the EDM weighting that gives every level a unit-variance target."""
    sigma2 = (1 - ab) / ab
    return (sigma2 + sigma_data**2) / (sigma2 * sigma_data**2)


def denoise_loss(model: ImprovedChain, x0, labels, cfg: ImprovedConfig, generator=None):
    """Per-batch loss: noise x0 to a random ladder level, ask for x0 back (EDM-weighted MSE)."""
    b = x0.shape[0]
    k = torch.randint(1, model.levels + 1, (b,), device=x0.device, generator=generator)
    ab = model.alpha_bars[k]
    eps = torch.randn_like(x0)
    x_t = ab.sqrt()[:, None, None, None] * x0 + (1 - ab).sqrt()[:, None, None, None] * eps
    drop = torch.rand(b, device=x0.device) < cfg.label_dropout
    labels = torch.where(drop, torch.full_like(labels, NULL_LABEL), labels)
    pred = model(x_t, ab, labels)
    w = edm_weight(ab, model.net.sigma_data).clamp(max=1e4)  # (B,)
    return (w[:, None, None, None] * (pred.float() - x0) ** 2).mean()


@torch.no_grad()
def ema_update(ema, model, decay: float) -> None:
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm, 1 - decay)


def lr_at(it: int, cfg: ImprovedConfig, iters: int, base: float) -> float:
    """Linear warm-up, then cosine decay to 10 % of the base rate."""
    if it < cfg.warmup:
        return base * (it + 1) / cfg.warmup
    p = (it - cfg.warmup) / max(1, iters - cfg.warmup)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(p, 1.0))))


@torch.no_grad()
def sample_grid(model: ImprovedChain, steps: int | None = None, n: int = 10) -> np.ndarray:
    """n samples of each digit 0-9 from a fixed seed, as one grid (rows = digits' columns)."""
    chain = ImprovedChainAPI(copy.deepcopy(model).cpu().float().eval(), "training")
    labels = [d for _ in range(n) for d in range(10)]
    return grid(chain.sample(labels, seed=1234, steps=steps), nrow=10)


def load_data(data_root, cfg: ImprovedConfig, device, download=True):
    images, labels = load_mnist(data_root, train=True, download=download)
    if cfg.per_digit is not None:
        per = digit_subsets(images, labels, equalise=False, limit=cfg.per_digit)
        images = torch.cat([per[d] for d in range(10)])
        labels = torch.cat([torch.full((len(per[d]),), d) for d in range(10)])
    x = images.float().div(127.5).sub(1).unsqueeze(1).to(device)  # (N, 1, 28, 28) in [-1, 1]
    return x, labels.to(device)


def make_model(cfg: ImprovedConfig) -> ImprovedChain:
    return ImprovedChain(cfg.ch, cfg.emb_dim, cfg.latent_dim, cfg.levels, cfg.default_steps,
                         default_guidance=cfg.default_guidance, default_eta=cfg.default_eta,
                         default_order=cfg.default_order, guidance_interval=cfg.guidance_interval,
                         mid_blocks=cfg.mid_blocks, low_mult=cfg.low_mult)


def train_denoise(cfg: ImprovedConfig, x, y, out: Path, device, progress=True) -> ImprovedChain:
    torch.manual_seed(cfg.seed)
    model = make_model(cfg).to(device)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    state_path, metrics = out / "state" / "denoise.pt", out / "metrics.jsonl"
    state = load_state(state_path)
    it, history = 0, []
    if state is not None:
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        it, history = state["it"], state["history"]

    def save():
        atomic_save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                     "it": it, "history": history}, state_path)  # fmt: skip
        save_weights(ema, out / "denoise", extra={"iters": it, "stage": "denoise"})

    bar = tqdm(total=cfg.iters, initial=it, desc="denoise", disable=not progress)
    g = torch.Generator(device=device).manual_seed(cfg.seed + it)
    last_save, t0, it0 = time.monotonic(), time.monotonic(), it
    try:
        while it < cfg.iters:
            # -- step ------------------------------------------------------------------------
            for group in opt.param_groups:
                group["lr"] = lr_at(it, cfg, cfg.iters, cfg.lr)
            idx = torch.randint(0, len(x), (cfg.batch_size,), device=device, generator=g)
            with autocast(device, cpu=cfg.bf16):
                loss = denoise_loss(model, x[idx], y[idx], cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            # -- EMA (short warm-up so early snapshots are not all initial weights) -------------
            ema_update(ema, model, min(cfg.ema, (1 + it) / (10 + it)))
            it += 1
            history.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{history[-1]:.4f}")
            # -- log, samples, checkpoint ------------------------------------------------------
            if it % cfg.sample_every == 0 or it == cfg.iters:
                mean = float(np.mean(history[-cfg.sample_every :]))
                speed = (it - it0) / (time.monotonic() - t0 + 1e-9)
                log_metrics(metrics, stage="denoise", it=it, loss=mean, it_per_s=speed)
                add_frame(out / "frames_denoise", it, sample_grid(ema), out / "samples_denoise.gif")
                save()
                last_save = time.monotonic()
            elif time.monotonic() - last_save > 120:
                save()
                last_save = time.monotonic()
    except KeyboardInterrupt:
        save()
        raise
    bar.close()
    save()
    plot_losses({"denoise": {"loss": history}}, out / "loss_denoise.png", "improved chain: denoising")
    return ema


# ---------------------------------------------------------------------------------------------
# The adversarial stage
# ---------------------------------------------------------------------------------------------


def adv_pairs(model: ImprovedChain, steps_list=(2, 4)) -> torch.Tensor:
    """(P, 2) level pairs (t, s), s < t, that the listed sub-ladders step between."""
    from model.ladder import sub_ladder

    pairs = {
        (a, b)
        for st in steps_list
        if st <= model.levels
        for a, b in zip(sub_ladder(model.levels, st), sub_ladder(model.levels, st)[1:])
    }
    return torch.tensor(sorted(pairs))


def real_and_fake(G, x0, labels, pairs, generator=None):
    """A real pair (x_s, x_t) from the forward process and a fake x_s from G's guess + posterior."""
    b = x0.shape[0]
    pick = pairs[torch.randint(0, len(pairs), (b,), generator=generator)].to(x0.device)
    t, s = pick[:, 0], pick[:, 1]
    ab_t, ab_s = G.alpha_bars[t], G.alpha_bars[s]

    def bc(v):
        return v[:, None, None, None]

    x_s = bc(ab_s.sqrt()) * x0 + bc((1 - ab_s).sqrt()) * torch.randn_like(x0)
    a_ts = ab_t / ab_s  # q(x_t | x_s): one Gaussian jump between the two levels
    x_t = bc(a_ts.sqrt()) * x_s + bc((1 - a_ts).sqrt()) * torch.randn_like(x0)
    z = torch.randn(b, G.net.latent_dim, device=x0.device)
    x0_fake = G(x_t, ab_t, labels, z)
    fake_s = posterior_step(x_t, x0_fake.clamp(-1, 1), ab_t, ab_s.clamp(max=1 - 1e-7), 1.0, torch.randn_like(x0))
    clean = (s == 0)[:, None, None, None]
    fake_s = torch.where(clean, x0_fake, fake_s)  # the last step lands on the guess itself
    return x_s, x_t, fake_s, x0_fake, t, ab_t


def make_adversarial(base: ImprovedChain, cfg: ImprovedConfig, device):
    """G (a copy of the denoiser, now fed a latent), D, and one optimiser for each."""
    G = copy.deepcopy(base).to(device).train().requires_grad_(True)
    G.adversarial = True
    G._hub_mixin_config = {**base._hub_mixin_config, "adversarial": True}
    D = Discriminator(emb_dim=cfg.emb_dim).to(device)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.adv_lr_g, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.adv_lr_d, betas=(0.5, 0.9))
    return G, D, opt_g, opt_d


def adversarial_step(G, D, opt_g, opt_d, x0, labels, pairs, cfg: ImprovedConfig):
    """One D update then one G update; returns the three losses (detached)."""
    # -- discriminator: real pairs up, fake pairs down, R1 penalty on the real ones -------------
    with torch.no_grad():
        x_s, x_t, fake_s, _, t, _ = real_and_fake(G, x0, labels, pairs)
    x_s.requires_grad_(True)
    real_logit = D(x_s, x_t, t, labels)
    (grad,) = torch.autograd.grad(real_logit.sum(), x_s, create_graph=True)
    r1 = grad.square().flatten(1).sum(1).mean()
    d_loss = F.softplus(-real_logit).mean() + F.softplus(D(fake_s, x_t, t, labels)).mean() + cfg.adv_r1 / 2 * r1
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_d.step()
    # -- generator: fool D, and stay a denoiser (the reconstruction term) ----------------------
    D.requires_grad_(False)
    _, x_t, fake_s, x0_fake, t, ab_t = real_and_fake(G, x0, labels, pairs)
    g_adv = F.softplus(-D(fake_s, x_t, t, labels)).mean()
    w = edm_weight(ab_t, G.net.sigma_data).clamp(max=1e4)
    g_rec = (w[:, None, None, None] * (x0_fake - x0) ** 2).mean()
    opt_g.zero_grad(set_to_none=True)
    (g_adv + cfg.adv_rec * g_rec).backward()
    torch.nn.utils.clip_grad_norm_(G.parameters(), 1.0)
    opt_g.step()
    D.requires_grad_(True)
    return d_loss.detach(), g_adv.detach(), g_rec.detach()


def quick_score(model, clf, ref, cfg: ImprovedConfig, steps=None) -> dict:
    """FID / diversity / accuracy on a small sample, for keeping the best adversarial weights."""
    from .evaluate import generate_set, score

    chain = ImprovedChainAPI(copy.deepcopy(model).cpu().float().eval(), "training")
    imgs, labels = generate_set(chain, cfg.adv_eval_n, seed=99, steps=steps)
    return score(clf, ref, imgs, labels)


def better(new: dict, best: dict) -> bool:
    """Lower FID wins, but never at the cost of more than half a point of accuracy or 5 % diversity."""
    return (new["fid"] < best["fid"] and new["accuracy"] >= best["accuracy"] - 0.005
            and new["diversity"] >= best["diversity"] - 0.05)  # fmt: skip


def train_adversarial(cfg: ImprovedConfig, base: ImprovedChain, x, y, out: Path, device, data_root, progress=True):
    from .classifier import load_classifier
    from .evaluate import Reference

    torch.manual_seed(cfg.seed + 1)
    G, D, opt_g, opt_d = make_adversarial(base, cfg, device)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    pairs = adv_pairs(G, sorted({2, 4, cfg.default_steps}))
    state_path, metrics = out / "state" / "adversarial.pt", out / "metrics.jsonl"
    clf = load_classifier()
    ref = Reference(clf, data_root)
    state = load_state(state_path)
    it, hist = 0, {"d": [], "g_adv": [], "g_rec": []}
    if state is not None:
        G.load_state_dict(state["G"])
        D.load_state_dict(state["D"])
        G_ema.load_state_dict(state["G_ema"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        it, hist, best = state["it"], state["hist"], state["best"]
    else:
        best = {**quick_score(base, clf, ref, cfg), "it": 0, "source": "denoise"}
        log_metrics(
            metrics, stage="adversarial", it=0, **{k: best[k] for k in ("accuracy", "fid", "floor", "diversity")}
        )

    def save():
        atomic_save({"G": G.state_dict(), "D": D.state_dict(), "G_ema": G_ema.state_dict(), "opt_g": opt_g.state_dict(),
                     "opt_d": opt_d.state_dict(), "it": it, "hist": hist, "best": best}, state_path)  # fmt: skip

    bar = tqdm(total=cfg.adv_iters, initial=it, desc="adversarial", disable=not progress)
    try:
        while it < cfg.adv_iters:
            idx = torch.randint(0, len(x), (cfg.batch_size,), device=device)
            d_loss, g_adv, g_rec = adversarial_step(G, D, opt_g, opt_d, x[idx], y[idx], pairs, cfg)
            ema_update(G_ema, G, 0.99)
            it += 1
            for k, v in (("d", d_loss), ("g_adv", g_adv), ("g_rec", g_rec)):
                hist[k].append(v.item())
            bar.update(1)
            bar.set_postfix(d=f"{hist['d'][-1]:.3f}", g=f"{hist['g_adv'][-1]:.3f}")
            # -- measure, keep the best, checkpoint ----------------------------------------------
            if it % cfg.adv_eval_every == 0 or it == cfg.adv_iters:
                sc = quick_score(G_ema, clf, ref, cfg)
                row = {k: sc[k] for k in ("accuracy", "fid", "floor", "diversity")}
                log_metrics(metrics, stage="adversarial", it=it, d=float(np.mean(hist["d"][-50:])),
                            g_adv=float(np.mean(hist["g_adv"][-50:])), **row)  # fmt: skip
                add_frame(out / "frames_adversarial", it, sample_grid(G_ema), out / "samples_adversarial.gif")
                if better(sc, best):
                    best = {**sc, "it": it, "source": "adversarial"}
                    save_weights(G_ema, out / "adversarial", extra={"stage": "adversarial", "iters": it, "quick": row})
                scores = json.dumps({k: round(v, 4) for k, v in row.items()})
                tqdm.write(f"adversarial it {it}: {scores}; best: {best['source']} @ {best['it']}")
                save()
    except KeyboardInterrupt:
        save()
        raise
    bar.close()
    save()
    # the stage's last weights, kept or not, so "with the adversarial stage" can always be measured
    save_weights(G_ema, out / "adversarial_last", extra={"stage": "adversarial", "iters": it})
    plot_losses({"adversarial": {"D": hist["d"], "G adv": hist["g_adv"], "G rec": hist["g_rec"]}},
                out / "loss_adversarial.png", "improved chain: adversarial stage")  # fmt: skip
    return best


def blend(a: ImprovedChain, b: ImprovedChain, m: float) -> ImprovedChain:
    """(1 - m) a + m b, parameter by parameter (weight-space ensembling of a net and its fine-tune,
    Wortsman et al. 2022); a's config, with `adversarial_mix` = m."""
    mixed = copy.deepcopy(a).cpu().float()
    sa, sb = mixed.state_dict(), b.state_dict()
    mixed.load_state_dict({k: torch.lerp(v, sb[k].to(v), m) if v.is_floating_point() else v for k, v in sa.items()})
    mixed.adversarial, mixed.adversarial_mix = False, m
    mixed._hub_mixin_config = {**(a._hub_mixin_config or {}), "adversarial": False, "adversarial_mix": m}
    return mixed.eval()


def mix_stage(cfg: ImprovedConfig, base: ImprovedChain, out: Path, data_root) -> dict | None:
    """Blend the denoiser with the adversarial stage's last weights (`adv_mix`) and keep the blend only if the
    quick check reads it more accurately than the denoiser while it still meets the FID (<= 2x floor) and
    diversity (>= 0.95) targets. Returns the blend's scores with "kept", or None when there is nothing to blend."""
    from .classifier import load_classifier
    from .evaluate import Reference

    if cfg.adv_mix <= 0 or not (out / "adversarial_last" / "model.safetensors").exists():
        return None
    mixed = blend(base, load_weights("improved", out / "adversarial_last"), cfg.adv_mix)
    clf = load_classifier()
    ref = Reference(clf, data_root)
    keys = ("accuracy", "fid", "floor", "diversity")
    plain, sc = quick_score(base, clf, ref, cfg), quick_score(mixed, clf, ref, cfg)
    kept = (sc["accuracy"] > plain["accuracy"] and sc["fid"] <= 2 * sc["floor"] and sc["diversity"] >= 0.95)
    log_metrics(out / "metrics.jsonl", stage="mix", adv_mix=cfg.adv_mix, kept=kept, **{k: sc[k] for k in keys},
                **{f"denoise_{k}": plain[k] for k in keys})  # fmt: skip
    if kept:
        save_weights(mixed, out / "mix", extra={"stage": "mix", "quick": {k: sc[k] for k in keys}})
    return {**{k: sc[k] for k in keys}, "adv_mix": cfg.adv_mix, "kept": kept, "denoise": {k: plain[k] for k in keys}}


def train_improved(cfg: ImprovedConfig, data_root, out, stage="all", resume=False,
                   device=torch.device("cpu"), download=True, progress=True) -> Path:  # fmt: skip
    """Run the denoise and/or adversarial stage; out/model is the chain to ship."""
    out = Path(out)
    check_run_dir(out, cfg, resume, "improved")
    print(json.dumps({"recipe": "improved", **asdict(cfg)}, indent=1))
    x, y = load_data(data_root, cfg, device, download)
    if stage in ("denoise", "all"):
        base = train_denoise(cfg, x, y, out, device, progress)
    else:
        if not (out / "denoise" / "model.safetensors").exists():
            raise ResumeError(f"The adversarial stage needs {out / 'denoise'}; run --stage denoise first.")
        base = load_weights("improved", out / "denoise").to(device)
    chosen = out / "denoise"
    if stage in ("adversarial", "all") and cfg.adv_iters > 0:
        best = train_adversarial(cfg, base, x, y, out, device, data_root, progress)
        chosen = out / best["source"]
        print(f"adversarial stage: kept the {best['source']} weights (quick FID {best['fid']:.3f}, "
              f"diversity {best['diversity']:.3f}, accuracy {best['accuracy']:.4f})")  # fmt: skip
        if best["source"] == "denoise":
            mix = mix_stage(cfg, base, out, data_root)
            if mix is not None:
                best["mix"] = mix
                chosen = out / "mix" if mix["kept"] else chosen
                print(f"blend {1 - cfg.adv_mix:g} denoiser + {cfg.adv_mix:g} adversarial: "
                      f"{'kept' if mix['kept'] else 'not kept'} (quick accuracy {mix['accuracy']:.4f} vs "
                      f"{mix['denoise']['accuracy']:.4f}, FID {mix['fid']:.3f} / floor {mix['floor']:.3f}, "
                      f"diversity {mix['diversity']:.3f})")  # fmt: skip
        (out / "adversarial_result.json").write_text(json.dumps(best, indent=2))
    save_weights(load_weights("improved", chosen), out / "model", extra={"from": chosen.name})
    print(f"wrote {out / 'model'} (from {chosen.name})")
    return out / "model"
