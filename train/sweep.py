"""Sampler sweep: many sampling settings of one set of improved weights, scored like `evaluate` (no timing).

Each setting is a JSON object; every key is optional:
  steps (default: the weights'), eta (one number, or a list: one per step, noisiest first), order,
  g (guidance weight), interval ([sigma_lo, sigma_hi] or "all"),
  levels (custom sub-ladder: level indices, noisiest first, ending at 0; len == steps + 1),
  auto_g + auto_int (autoguidance, Karras et al. 2024: guide away from a weaker net `--guide` at those
  noise levels instead of away from the unconditional prediction; CFG then applies on `interval` only).
One line per setting goes to stdout and to `--out` (JSON lines). Exploratory: what the shipped defaults
were chosen from; the chosen ones are then measured with `python -m train evaluate`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from model.api import ImprovedChainAPI
from model.io import bundled, load_weights
from model.sampler import in_interval

from .classifier import load_classifier
from .evaluate import Reference, features, generate_set, score_features


class SweepChain(ImprovedChainAPI):
    """The improved chain with two knobs the product does not expose: a hand-picked sub-ladder for one step
    count (`levels`) and autoguidance (`auto`: weak net, weight, sigma interval) in place of CFG there."""

    def __init__(self, model, source, weak=None):
        super().__init__(model, source)
        self.weak, self.auto, self.base_ladders = weak, None, dict(self._ladders)

    def set_levels(self, steps: int, levels: list[int] | None) -> None:
        self._ladders = dict(self.base_ladders)
        if levels is not None:
            if len(levels) != steps + 1 or levels[-1] != 0 or sorted(levels, reverse=True) != levels:
                raise SystemExit(f"levels {levels} must be {steps + 1} decreasing level indices ending at 0")
            self._ladders[steps] = self.model.alpha_bars[levels]

    def _denoiser(self, labels, guidance):
        cfg = super()._denoiser(labels, guidance)
        if self.auto is None:
            return cfg
        weight, where = self.auto

        def denoise(x, ab, z):  # weak + weight * (net - weak) inside `where`, CFG elsewhere
            if not in_interval(ab[0], where):
                return cfg(x, ab, z)
            w = self.weak(x, ab, labels, z)
            return w + weight * (self.model(x, ab, labels, z) - w)

        return denoise


def passes(ladder, setting) -> int:
    """Network passes per digit: 2 at each step that any guidance touches."""
    g, interval = setting.get("g", 1.0), setting.get("interval")
    auto = setting.get("auto_int") if "auto_g" in setting else None
    return sum(
        2 if (g != 1.0 and in_interval(ab, interval)) or (auto and in_interval(ab, auto)) else 1 for ab in ladder[:-1]
    )


def sweep(settings: list[dict], source=None, guide=None, per_digit=200, seed=0, data_root="data", out=None):
    clf = load_classifier()
    ref = Reference(clf, data_root)
    weak = load_weights("improved", guide).eval() if guide else None
    chain = SweepChain(load_weights("improved", source or bundled("improved")), str(source or "bundled"), weak)
    rows, base_eta = [], chain.eta
    for s in settings:
        interval, eta = s.get("interval", "all"), s.get("eta", base_eta)
        chain.configure(eta if isinstance(eta, (int, float)) else None, s.get("order", chain.order), None,
                        "all" if interval in (None, "all") else interval)  # fmt: skip
        steps = s.get("steps", chain.default_steps)
        chain.set_levels(steps, s.get("levels"))
        if isinstance(eta, list):  # one eta per step, noisiest first (a knob the product does not expose)
            if len(eta) != steps or not all(isinstance(e, (int, float)) and 0 <= e <= 1 for e in eta):
                raise SystemExit(f"eta {eta}: give one number from 0 to 1 per step ({steps})")
            chain.eta = [float(e) for e in eta]
        if "auto_g" in s and weak is None:
            raise SystemExit("auto_g needs --guide (the weaker net's weights)")
        chain.auto = (float(s["auto_g"]), tuple(s["auto_int"])) if "auto_g" in s else None
        images, labels = generate_set(chain, per_digit, seed, steps, s.get("g", 1.0))
        feats, preds = features(clf, torch.as_tensor(images))
        r = score_features(clf, ref, feats, preds, labels)
        per = {int(d): float((preds[labels == d] == d).mean()) for d in range(10)}
        row = {**s, "nfe": passes(chain._ladders[steps], s), "accuracy": r["accuracy"], "fid": r["fid"],
               "floor": r["floor"], "diversity": r["diversity"], "per_digit": per_digit,
               "seed": seed, "source": str(source or "bundled"), "worst": sorted(per, key=per.get)[:3]}  # fmt: skip
        rows.append(row)
        print(f"{json.dumps(s)}  passes {row['nfe']}  acc {r['accuracy'] * 100:.2f} %  FID {r['fid']:.2f} "
              f"(floor {r['floor']:.2f})  diversity {r['diversity']:.3f}  worst digits {row['worst']}",
              flush=True)  # fmt: skip
        if out:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            with open(out, "a") as f:
                f.write(json.dumps(row) + "\n")
    return rows


def sweep_cli(args) -> int:
    settings = json.loads(Path(args.settings).read_text())
    if not isinstance(settings, list) or not all(isinstance(s, dict) for s in settings):
        raise SystemExit(f"{args.settings}: expected a JSON list of settings (objects)")
    sweep(settings, args.source, args.guide, args.per_digit, args.seed, args.data_root, args.out)
    return 0

