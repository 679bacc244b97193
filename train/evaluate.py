"""Evaluation: accuracy, FID against MNIST test (with the real-data floor), and diversity.

All three use the project's classifier (assets/classifier): FID and diversity on its
penultimate features. `floor` is the FID of as many *real train* digits, so every FID is read
against what real handwriting scores; diversity 1.0 is as varied as real test digits.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy import linalg

from model.render import grid, save_png

from .classifier import load_classifier
from .data import load_mnist, to_unit


@torch.no_grad()
def features(clf, images: torch.Tensor, batch: int = 1000):
    """uint8 (N, 28, 28) -> (features (N, F) float64 numpy, predicted labels (N,))."""
    feats, preds = [], []
    for i in range(0, len(images), batch):
        x = to_unit(torch.as_tensor(images[i : i + batch]))
        f = clf.features(x)
        feats.append(f.double().numpy())
        preds.append(clf.head(f).argmax(1).numpy())
    return np.concatenate(feats), np.concatenate(preds)


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature sets a and b (Heusel et al. 2017)."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2)
    covmean = covmean.real if np.iscomplexobj(covmean) else covmean
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def spread(feats: np.ndarray, labels: np.ndarray) -> float:
    """Mean within-class pairwise feature distance, averaged over the classes present."""
    out = []
    for d in np.unique(labels):
        f = torch.from_numpy(feats[labels == d])
        if len(f) > 1:
            dist = torch.cdist(f, f)
            out.append(float(dist.sum() / (len(f) * (len(f) - 1))))
    return float(np.mean(out))


class Reference:
    """Real-data features, computed once per process: MNIST test, and a class-balanced train set."""

    def __init__(self, clf, data_root, download: bool = True):
        xt, yt = load_mnist(data_root, train=False, download=download)
        xr, yr = load_mnist(data_root, train=True, download=download)
        self.test_feats, _ = features(clf, xt)
        self.test_labels = yt.numpy()
        self.train_images, self.train_labels = xr, yr

    def real_sample(self, per_digit: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        idx = [torch.nonzero(self.train_labels == d)[:, 0] for d in range(10)]
        idx = torch.cat([i[torch.randperm(len(i), generator=g)[:per_digit]] for i in idx])
        return self.train_images[idx], self.train_labels[idx]


def score(clf, ref: Reference, images: np.ndarray, labels: np.ndarray) -> dict:
    """The three numbers for generated (images, labels), plus the FID floor of real train digits."""
    return score_features(clf, ref, *features(clf, torch.as_tensor(images)), labels)


def score_features(clf, ref: Reference, feats: np.ndarray, preds: np.ndarray, labels: np.ndarray) -> dict:
    """`score` from the classifier's features and predictions of the generated digits."""
    per_digit = int(np.bincount(labels, minlength=10).max())
    real_imgs, real_labels = ref.real_sample(per_digit)
    real_feats, _ = features(clf, real_imgs)
    test_spread = spread(ref.test_feats, ref.test_labels)
    return {
        "accuracy": float((preds == labels).mean()),
        "fid": frechet(feats, ref.test_feats),
        "floor": frechet(real_feats, ref.test_feats),
        "diversity": spread(feats, labels) / test_spread,
        "n": int(len(labels)),
    }


def generate_set(chain, per_digit: int, seed: int = 0, steps=None, guidance=None, batch: int = 500):
    """per_digit samples of every digit the chain has -> (uint8 (N, 28, 28), labels (N,))."""
    labels = np.repeat(np.arange(10), per_digit)
    out = []
    for i in range(0, len(labels), batch):
        out.append(chain.sample(labels[i : i + batch].tolist(), seed=seed + i, steps=steps, guidance=guidance))
    return np.concatenate(out), labels


def evaluate_chain(
    chain, per_digit=500, seed=0, steps=None, guidance=None, data_root="data", ref=None, clf=None, timing=True
):
    clf = clf or load_classifier()
    ref = ref or Reference(clf, data_root)
    t = time.time()
    images, labels = generate_set(chain, per_digit, seed, steps, guidance)
    result = score(clf, ref, images, labels)
    result.update(chain=chain.name, steps=steps or chain.default_steps, guidance=guidance,
                  per_digit=per_digit, seed=seed, sample_seconds=round(time.time() - t, 2))  # fmt: skip
    if timing:  # the latency users feel: generate("0123456789") with every step returned
        from .bench import time_generate

        kw = {} if chain.name == "original" else {"steps": steps, "guidance": guidance}
        result["cpu_ms"], result["cpu_ms_p95"] = time_generate(chain, "0123456789", 30, **kw)
    return result, images, labels


def evaluate_cli(args) -> dict:
    from model import load_chain

    chain = load_chain(args.chain, source=args.source)
    if chain.name == "improved":
        interval = args.guidance_interval
        chain.configure(args.eta, args.order, False if args.fp32 else None, interval and tuple(interval))
    result, images, labels = evaluate_chain(
        chain, args.per_digit, args.seed, args.steps, args.guidance, args.data_root, timing=not args.no_timing
    )
    name = (
        chain.name + (f"-steps{args.steps}" if args.steps else "") + (f"-g{args.guidance:g}" if args.guidance else "")
    )
    out = Path(args.out or f"docs/eval/{name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    pick = np.concatenate([np.nonzero(labels == d)[0][:10] for d in range(10)])
    result["grid"] = str(save_png(grid(images[pick], nrow=10), out.with_suffix(".png"), factor=2))
    result["source"] = chain.source
    result["eta"], result["order"] = getattr(chain, "eta", None), getattr(chain, "order", None)
    result["bf16"] = getattr(chain, "bf16", False)
    if chain.name == "improved":
        result["nfe"] = chain.network_evals(args.steps, args.guidance)
        result["guidance"] = chain.model.default_guidance if args.guidance is None else args.guidance
        result["guidance_interval"] = chain.guidance_interval
    out.write_text(json.dumps(result, indent=2))
    rows = [("accuracy", f"{result['accuracy'] * 100:.2f} %"), ("FID", f"{result['fid']:.3f}"),
            ("FID floor (real)", f"{result['floor']:.3f}"), ("diversity", f"{result['diversity']:.3f}"),
            ("CPU ms 0123456789", f"{result.get('cpu_ms', float('nan')):.1f}")]  # fmt: skip
    print(f"{chain.name} chain, {result['steps']} steps, {args.per_digit} per digit, seed {args.seed}")
    for k, v in rows:
        print(f"  {k:<18}{v:>12}")
    print(f"wrote {out} and {result['grid']}")
    return result


def report(eval_dir: str | Path = "docs/eval") -> str:
    """The README's results table, one row per evaluation JSON in `eval_dir`."""
    rows = []
    for path in sorted(Path(eval_dir).glob("*.json")):
        r = json.loads(path.read_text())
        if "accuracy" not in r:
            continue
        nfe = r.get("nfe") or r["steps"] * (2 if r.get("guidance") not in (None, 1.0) else 1)
        gi = r.get("guidance_interval")
        guidance = f"{r.get('guidance') or 1.0:g}" + (f" (σ {gi[0]:g}–{gi[1]:g})" if gi else "")
        ms = r.get("cpu_ms")
        solver = "-" if r["chain"] == "original" else ("DPM++2M" if r.get("order") == 2 else "DDPM/DDIM")
        eta = "" if r.get("eta") is None else f" η={r['eta']:g}"
        rows.append(
            f"| {path.stem} | {r['source']} | {solver}{eta} | {r['steps']} | {guidance} | {nfe} "
            f"| {r['accuracy'] * 100:.2f} % | {r['fid']:.2f} | {r['floor']:.2f} | {r['fid'] / r['floor']:.1f}× "
            f"| {r['diversity']:.3f} | {'-' if ms is None else f'{ms:.0f}'} |"
        )
    head = (
        "| run | weights | sampler | steps | guidance | network evals / digit | accuracy | FID | floor | FID / floor "
        "| diversity | CPU ms `0123456789` |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    table = "\n".join([head, *rows])
    print(table)
    return table
