"""The evaluation classifier: a small MNIST CNN whose penultimate features drive FID and diversity.

Weights ship in assets/classifier (model.safetensors + config.json); `python -m train classifier
--data-root DIR` retrains them.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import nn
from tqdm.auto import tqdm

from model.io import ASSETS, save_weights

from .data import load_mnist, to_unit


class Classifier(nn.Module, PyTorchModelHubMixin, library_name="denoiser-chain", tags=["mnist"]):
    """(B, 1, 28, 28) in [0, 1] -> logits (B, 10); `features` gives the (B, feat) penultimate layer."""

    kind = "classifier"

    def __init__(self, ch: int = 32, feat: int = 128):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, ch, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, ch, 14, 14)
            nn.Conv2d(ch, 2 * ch, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 2ch, 7, 7)
            nn.Flatten(), nn.Linear(2 * ch * 49, feat), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(feat, 10))

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.body(x))


def load_classifier(path: str | Path | None = None) -> Classifier:
    from model.errors import CheckpointError

    path = Path(path or ASSETS / "classifier")
    from model.io import build, read_config

    try:
        return build(Classifier, read_config(path), path / "model.safetensors").eval()
    except Exception as e:
        raise CheckpointError(
            f"{path / 'model.safetensors'}: cannot load the evaluation classifier ({e}); "
            "retrain it with: python -m train classifier --data-root DIR"
        ) from None


@torch.no_grad()
def accuracy(model: Classifier, images: torch.Tensor, labels: torch.Tensor, batch: int = 1000) -> float:
    """images uint8 (N, 28, 28)."""
    model.eval()
    hits = 0
    for i in range(0, len(images), batch):
        hits += (model(to_unit(images[i : i + batch])).argmax(1) == labels[i : i + batch]).sum().item()
    return hits / len(images)


def train_classifier(data_root, epochs: int = 3, out=None, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    x, y = load_mnist(data_root, train=True)
    xt, yt = load_mnist(data_root, train=False)
    model = Classifier()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=epochs * (len(x) // 128 + 1))
    t0 = time.time()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x))
        bar = tqdm(range(0, len(x), 128), desc=f"classifier epoch {epoch + 1}/{epochs}")
        for i in bar:
            idx = perm[i : i + 128]
            xb = to_unit(x[idx])
            # small random shifts (+-2 px) so the classifier reads imperfect digits robustly
            dx, dy = torch.randint(-2, 3, (2,)).tolist()
            xb = torch.roll(xb, (dy, dx), dims=(2, 3))
            loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            bar.set_postfix(loss=f"{loss.item():.4f}")
        acc = accuracy(model, xt, yt)
        print(f"epoch {epoch + 1}: MNIST test accuracy {acc:.4f} ({time.time() - t0:.0f} s)")
    if acc < 0.99:
        print(f"warning: test accuracy {acc:.4f} is below the 0.99 the evaluation assumes")
    out = Path(out or ASSETS / "classifier")
    save_weights(model, out, extra={"test_accuracy": round(acc, 5)})
    print(f"wrote {out}")
    return out
