"""The original five-stage recipe (ORIGINAL_METHOD.md section 4), per digit or unconditional.

Stage 1 trains each denoiser on its pair of ladder levels; stage 2 each connection between its
two frozen neighbours; stage 3 assembles the chain; stage 4 trains it end to end with the
denoisers frozen; stage 5 with everything trainable. Checkpoints after stages 3, 4 and 5 (the
author's "1", "2", "3") go to digit_<d>/stage<k>/; the chain of every digit goes to model/.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from model.io import load_weights, save_weights
from model.ladder import uniform_ladder
from model.networks import Connection, Denoiser
from model.original import OriginalChains, assembly_indices
from model.render import grid, to_uint8

from .config import OriginalConfig
from .data import digit_subsets, load_mnist, to_unit
from .loop import Fit, ResumeError, autocast, load_state
from .plots import add_frame, plot_losses

STAGES = (1, 2, 3, 4, 5)
# config fields a resumed run may change: it trains longer, or its result is sampled differently by default
EXTENDABLE = {"iters", "adv_iters", "default_steps", "default_eta", "default_order", "default_guidance",
              "guidance_interval", "adv_mix"}


def freeze(modules, frozen: bool) -> None:
    """Frozen = no gradients and inference mode (BatchNorm statistics fixed, as Keras does)."""
    for m in modules:
        m.requires_grad_(not frozen)
        m.train(not frozen)


class DigitRun:
    """Everything one digit's chain needs: its ladder, its pieces, its run directory."""

    def __init__(self, key: str, images: torch.Tensor, cfg: OriginalConfig, out: Path, device, progress: bool):
        self.key, self.cfg, self.dir, self.device, self.progress = key, cfg, out / f"digit_{key}", device, progress
        self.metrics = out / "metrics.jsonl"
        g = torch.Generator().manual_seed(cfg.seed * 101 + (11 if key == "all" else int(key)))
        # (steps + 1, N, 1, 28, 28): fixed aligned pairs, as the original precomputed them
        self.levels = uniform_ladder(to_unit(images), cfg.steps, cfg.a, generator=g).to(device)
        self.n = images.shape[0]
        self.den = nn.ModuleList([Denoiser(cfg.width) for _ in range(cfg.steps)]).to(device)
        self.con = nn.ModuleList([Connection(cfg.width) for _ in range(cfg.steps - 1)]).to(device)
        self.order = assembly_indices(cfg.assembly, cfg.steps)
        self.blocks = nn.Sequential(*[self.den[i] if k == "denoiser" else self.con[i] for k, i in self.order])
        self.fixed_noise = torch.randn((cfg.grid**2, 1, 28, 28), generator=g).to(device)
        self.histories: dict[str, dict[str, list[float]]] = {}

    # -- one resumable fit ------------------------------------------------------------------
    def fit(self, name, modules, trainable, epochs, loss_fn, group, only_load=False, on_epoch_end=None):
        state_path = self.dir / "state" / f"{name}.pt"
        if only_load:  # a later stage asked alone: this part must be finished already
            state = load_state(state_path)
            if state is None or not state.get("done"):
                raise ResumeError(
                    f"Digit {self.key}: {name} is not trained yet ({state_path} missing or unfinished); "
                    "run the earlier stages first (--stage all, or the stage it belongs to)."
                )
        params = [p for m in trainable for p in m.parameters()]
        opt = torch.optim.Adam(params, lr=self.cfg.lr)
        fit = Fit(
            f"{self.key}/{name}", {str(k): m for k, m in enumerate(modules)}, opt,
            self.n, epochs, self.cfg.batch_size, state_path, self.metrics, seed=self.cfg.seed,
        )  # fmt: skip

        def step(idx):
            idx = idx.to(self.device)
            with autocast(self.device):
                pred, target = loss_fn(idx)
                return F.mse_loss(pred.float(), target.float())

        self.histories.setdefault(group, {})[name] = fit.run(step, on_epoch_end, self.progress)

    # -- the five stages ----------------------------------------------------------------------
    def stage1(self, only_load=False):
        L, s = self.levels, self.cfg.steps
        for i in range(s):  # denoiser i: level s - i -> level s - 1 - i
            freeze([self.den[i]], False)
            self.fit(f"stage1_denoiser{i:02d}", [self.den[i]], [self.den[i]], self.cfg.epochs1,
                     lambda idx, i=i: (self.den[i](L[s - i][idx]), L[s - 1 - i][idx]), "stage 1: denoisers",
                     only_load)  # fmt: skip

    def stage2(self, only_load=False):
        L, s = self.levels, self.cfg.steps
        for i in range(1, s):  # connection i-1 between frozen denoisers i-1 and i
            d0, c, d1 = self.den[i - 1], self.con[i - 1], self.den[i]
            freeze([d0, d1], True)
            freeze([c], False)
            if self.cfg.stage2_target == "natural":
                src, dst = s + 1 - i, s - 1 - i  # two steps down: 12-(i-1) -> 11-i
            elif self.cfg.stage2_target == "original":
                src, dst = s - i, s + 1 - i  # the notebook's off-by-one: 12-i -> 13-i
            else:
                raise SystemExit(f"Unknown stage2_target {self.cfg.stage2_target!r}; use natural or original.")
            self.fit(f"stage2_connection{i - 1:02d}", [d0, c, d1], [c], self.cfg.epochs2,
                     lambda idx, d0=d0, c=c, d1=d1, a=src, b=dst: (d1(c(d0(L[a][idx]))), L[b][idx]),
                     "stage 2: connections", only_load)  # fmt: skip

    def chain_stage(self, stage: int, only_load=False):
        L, s = self.levels, self.cfg.steps
        freeze(self.den, stage == 4)  # stage 4: denoisers frozen, stage 5: everything trains
        freeze(self.con, False)
        trainable = list(self.con) if stage == 4 else list(self.den) + list(self.con)
        epochs = self.cfg.epochs4 if stage == 4 else self.cfg.epochs5
        self.fit(f"stage{stage}_chain", [self.den, self.con], trainable, epochs,
                 lambda idx: (self.blocks(L[s][idx]), L[0][idx]), "chain: stages 4-5",
                 only_load, on_epoch_end=lambda e: self.snapshot(f"stage{stage}", e))  # fmt: skip

    # -- outputs ---------------------------------------------------------------------------------
    def to_model(self) -> OriginalChains:
        c = self.cfg
        digits = None if self.key == "all" else [int(self.key)]
        model = OriginalChains(c.width, c.steps, c.a, c.assembly, digits)
        for j, block in enumerate(self.blocks):
            model.chains[self.key][j].load_state_dict(block.state_dict())
        return model.eval()

    @torch.no_grad()
    def snapshot(self, stage: str, epoch: int) -> dict:
        """A fixed-noise sample grid as a GIF frame; returns figures for metrics.jsonl."""
        modes = [m.training for m in self.blocks]
        self.blocks.eval()
        x = self.blocks(self.fixed_noise)
        for m, mode in zip(self.blocks, modes):
            m.train(mode)
        imgs = to_uint8(x)
        index = {"stage3": 0, "stage4": 1000, "stage5": 2000}[stage] + epoch
        add_frame(self.dir / "frames", index, grid(imgs, nrow=self.cfg.grid), self.dir / "samples.gif")
        return {"sample_std": float(x.std(0).mean())}  # ~0 when every sample is the same digit

    def checkpoint(self, stage: int) -> None:
        save_weights(self.to_model(), self.dir / f"stage{stage}", extra={"stage": stage})
        plot_losses(self.histories, self.dir / "loss.png", title=f"original chain, digit {self.key}")

    def run(self, stage: str) -> None:
        want = STAGES if stage == "all" else (int(stage),)
        last = max(want)
        self.stage1(only_load=1 not in want)
        if last >= 2:
            self.stage2(only_load=2 not in want)
        if last >= 3 and 3 in want:
            self.snapshot("stage3", 0)
            self.checkpoint(3)
        for k in (4, 5):
            if last >= k:
                self.chain_stage(k, only_load=k not in want)
                if k in want:
                    self.checkpoint(k)


def check_run_dir(out: Path, cfg: OriginalConfig | dict, resume: bool, recipe: str) -> None:
    """Refuse to overwrite a run unless resuming it, and to resume with a different config."""
    path = out / "train_config.json"
    new = asdict(cfg) if not isinstance(cfg, dict) else cfg
    new = {"recipe": recipe, **new}
    if path.exists():
        old = json.loads(path.read_text())
        if not resume:
            raise ResumeError(
                f"{out} already holds a training run; pass --resume to continue it or pick another --out."
            )
        diff = {k: (old.get(k), v) for k, v in new.items() if old.get(k) != v}
        longer = {k: d for k, d in diff.items() if k in EXTENDABLE}
        if longer:  # lengthening a schedule is how a finished or running run is extended
            print(f"note: resuming with changed schedule length or sampling defaults: {longer} (saved vs now)")
        diff = {k: d for k, d in diff.items() if k not in EXTENDABLE}
        if diff:
            raise ResumeError(f"Cannot resume {out} with a different config: {diff} (saved vs now).")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(new, indent=2))


def train_original(cfg: OriginalConfig, digits: list[int] | None, data_root, out, stage="all",
                   resume=False, device=torch.device("cpu"), download=True, progress=True) -> Path:  # fmt: skip
    """Run `stage` (1-5 or "all") for every digit chain; returns the directory of the full model."""
    out = Path(out)
    check_run_dir(out, {**asdict(cfg), "digits": digits}, resume, "original")
    print(json.dumps({"recipe": "original", "digits": digits, **asdict(cfg)}, indent=1))
    images, labels = load_mnist(data_root, train=True, download=download)
    if digits is None:
        n = cfg.per_digit * 10 if cfg.per_digit else None
        subsets = {"all": images[:n]}
    else:
        per = digit_subsets(images, labels, cfg.equalise, cfg.per_digit)
        subsets = {str(d): per[d] for d in digits}
    for key, imgs in subsets.items():
        print(f"chain {key}: {len(imgs)} images, stage {stage}")
        DigitRun(key, imgs, cfg, out, device, progress).run(stage)
    return assemble(out, list(subsets), cfg)


def assemble(out: Path, keys: list[str], cfg: OriginalConfig) -> Path:
    """Merge every chain's latest checkpoint into one model (out/model), the shipped layout."""
    digits = None if keys == ["all"] else sorted(int(k) for k in keys)
    model = OriginalChains(cfg.width, cfg.steps, cfg.a, cfg.assembly, digits)
    done = []
    for key in keys:
        latest = next(
            (out / f"digit_{key}" / f"stage{k}" for k in (5, 4, 3) if (out / f"digit_{key}" / f"stage{k}").exists()),
            None,
        )
        if latest is None:
            return out / "model"  # nothing assembled yet (only stages 1-2 ran)
        part = load_weights("original", latest)
        model.chains[key].load_state_dict(part.chains[key].state_dict())
        done.append(latest.name)
    save_weights(model, out / "model", extra={"stages": dict(zip(keys, done))})
    print(f"wrote {out / 'model'} ({', '.join(sorted(set(done)))})")
    return out / "model"
