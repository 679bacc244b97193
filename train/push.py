"""Publishing trained weights to the Hugging Face Hub, with a model card, a sample and the measured metrics."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from model.api import ADAPTERS
from model.io import bundled, load_weights
from model.render import save_png

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_PROMPT, SAMPLE_SEED = "0123456789", 0

HOW = {
    "improved": (
        "One class-conditional U-Net denoiser shared by every step of a {levels}-level variance-preserving Gaussian "
        "ladder (base width {ch}, embedding {emb_dim}, latent {latent_dim}). It was trained to denoise MNIST digits at "
        "every level, with label dropout so classifier-free guidance works; sampling injects fresh noise at each step, "
        "i.e. it samples each step's posterior instead of collapsing to the class mean. {adversarial} "
        "It draws in {default_steps} steps by default (any of 1 ... {levels})."
    ),
    "original": (
        "The original author's recipe: for each digit ({digits}) a chain of {blocks} blocks (denoisers and the smaller "
        "connection layers, assembly `{assembly}`, width x{width}) trained stage by stage with MSE on a {steps}-step "
        "uniform noise ladder (amplitude {a}). Trained to deterministic targets, every net learns the conditional "
        "mean, so with no fresh noise the chain tends towards blurry class averages: kept as the baseline."
    ),
}
ADVERSARIAL = {
    True: "The denoiser was then fine-tuned adversarially, as in Denoising Diffusion GANs (Xiao et al., 2022).",
    False: "These are the denoiser's weights, with no adversarial fine-tune in them "
    "(the stage keeps its result only if it measurably helps).",
    "mix": "These weights blend the denoiser's ({keep:g}) with those of its adversarial fine-tune, as in Denoising "
    "Diffusion GANs (Xiao et al., 2022), ({m:g}), parameter by parameter (weight-space ensembling, Wortsman et al., "
    "2022): the fine-tune alone lost variety, the blend reads more accurately than the denoiser and keeps its variety.",
}


def provenance(model) -> str:
    """The model card's sentence on the adversarial stage: not in these weights, all of them, or a blend."""
    m = float(getattr(model, "adversarial_mix", 0.0) or 0.0)
    if m > 0:
        return ADVERSARIAL["mix"].format(keep=1 - m, m=m)
    return ADVERSARIAL[bool(getattr(model, "adversarial", False))]


def read_metrics(chain: str, paths: list[Path]) -> list[dict]:
    """Evaluation results (train/evaluate.py JSON: one dict, a list, or a dict of dicts) for this chain."""
    rows = []
    for path in paths:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):  # a missing or half-written file just adds no rows
            continue
        if isinstance(data, dict) and "accuracy" not in data:
            data = list(data.values())
        for row in data if isinstance(data, list) else [data]:
            if isinstance(row, dict) and "accuracy" in row and row.get("chain", chain) == chain:
                rows.append(row)
    return rows


def metrics_table(rows: list[dict]) -> str:
    """A Markdown table of the metrics, or a line saying none were measured."""
    if not rows:
        return "No metrics were measured for these weights yet (`python -m train evaluate`)."

    def num(row, key, fmt):
        return format(row[key], fmt) if isinstance(row.get(key), (int, float)) else "-"

    lines = [
        "| steps | guidance | accuracy | FID | FID floor (real digits) | diversity | samples | weights evaluated |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        acc = f"{r['accuracy'] * 100:.2f} %" if isinstance(r.get("accuracy"), (int, float)) else "-"
        lines.append(
            f"| {r.get('steps', '-')} | {r.get('guidance') if r.get('guidance') is not None else 'default'} | {acc} "
            f"| {num(r, 'fid', '.3f')} | {num(r, 'floor', '.3f')} | {num(r, 'diversity', '.3f')} | {r.get('n', '-')} "
            f"| {r.get('source', 'these')} |"
        )
    return "\n".join(lines)


def model_card(chain: str, model, metrics: list[dict], repo_id: str | None) -> str:
    """The README.md shown on the Hub: what the weights are, how they were trained, how well they draw."""
    cfg = dict(model._hub_mixin_config or {})
    if chain == "improved":
        how = HOW[chain].format(**{**cfg, "levels": model.levels, "default_steps": model.default_steps,
                                   "adversarial": provenance(model)})  # fmt: skip
    else:
        digits = "all digits, one unconditional chain" if model.digits is None else ", ".join(map(str, model.digits))
        how = HOW[chain].format(digits=digits, blocks=model.n_blocks, assembly=model.assembly, width=model.width,
                                steps=model.steps, a=model.a)  # fmt: skip
    params = sum(p.numel() for p in model.parameters())
    repo = repo_id or "<user>/<repo>"
    tags = "".join(f"- {t}\n" for t in ["mnist", "denoiser-chain", "image-generation", chain])
    return f"""---
library_name: denoiser-chain
license: mit
datasets:
- mnist
tags:
{tags}---

# Denoiser Chain: the {chain} chain

Type digits, and a chain of denoisers draws them as handwritten MNIST digits, one denoising step at a time.
These are the weights of the **{chain}** chain ({params:,} parameters), in the Hugging Face layout
(`model.safetensors` + `config.json`).

![{SAMPLE_PROMPT}, seed {SAMPLE_SEED}](sample.png)

*`{SAMPLE_PROMPT}` drawn with seed {SAMPLE_SEED}, generated from these weights when they were pushed.*

## How it was trained

{how}

## Metrics

Measured with `python -m train evaluate`: accuracy of the project's MNIST classifier on the drawn digits,
FID against MNIST test on that classifier's features (read it against the floor, the FID of as many real
training digits), and diversity (within-digit feature spread; 1.0 is as varied as real test digits).

{metrics_table(metrics)}

## Use

```python
from model import load_chain  # the denoiser-chain project

chain = load_chain("{chain}", source="{repo}")
gen = chain.generate("2024", seed=0)  # gen.row: (28, W) uint8; gen.steps: the row after every step
```
"""


EVAL_DIR = ROOT / "docs" / "eval"


def prepare_push_folder(
    chain: str, source: str | None, folder: str | Path, repo_id: str | None = None, eval_dir: Path = EVAL_DIR
) -> Path:
    """Fill `folder` with the checked weights, config, model card README.md and sample.png, ready to upload."""
    src = Path(source).expanduser() if source else bundled(chain)
    model = load_weights(chain, src)  # raises CheckpointError naming the file before anything is written
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("model.safetensors", "config.json"):  # the exact files that loaded, byte for byte
        shutil.copyfile(src / name, folder / name)
    gen = ADAPTERS[chain](model, str(src)).generate(SAMPLE_PROMPT, seed=SAMPLE_SEED)
    save_png(gen.row, folder / "sample.png", factor=4)
    metrics = read_metrics(chain, [src / "metrics.json", *sorted(Path(eval_dir).glob("*.json"))])
    (folder / "README.md").write_text(model_card(chain, model, metrics, repo_id))
    return folder


def push(chain: str, source: str | None, repo_id: str, private: bool) -> str:
    """Upload the chain's weights with a model card to the Hub repo `repo_id`; return the repo URL."""
    from huggingface_hub import HfApi

    with tempfile.TemporaryDirectory(prefix="denoiser-chain-push-") as tmp:
        folder = prepare_push_folder(chain, source, Path(tmp) / "repo", repo_id=repo_id)
        api = HfApi()
        try:
            url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=f"Upload the {chain} chain")
        except Exception as e:  # no token, no network, no rights: say so in one line, not a traceback
            hint = "log in with `hf auth login` or set HF_TOKEN"
            raise SystemExit(f"error: cannot push to {repo_id}: {e} ({hint}).") from e
    print(f"pushed the {chain} chain to {url}")
    return str(url)
