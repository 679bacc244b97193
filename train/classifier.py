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
    """(B, 1, 28, 28) in [0, 1] -> logits (B, 10); `features` gives the (B, feat) penultimate layer.

    Two conv-BN-ReLU pairs at 28x28 and at 14x14, each pair followed by a 2x2 max-pool, then a linear layer.
    """

    kind = "classifier"

    def __init__(self, ch: int = 32, feat: int = 128):
        super().__init__()

        def pair(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                    nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]  # fmt: skip

        layers = [*pair(1, ch), *pair(ch, 2 * ch), nn.Flatten(), nn.Linear(2 * ch * 49, feat), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(feat, 10))

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.body(x))


def random_affine(x: torch.Tensor, degrees=12.0, scale=0.1, shift=2.0, generator=None) -> torch.Tensor:
    """Each image of (B, 1, H, W) rotated, scaled and shifted by its own random amounts (up to `degrees`,
    +-`scale`, +-`shift` pixels): handwriting's usual wobble, so the classifier reads imperfect digits."""
    b, _, h, w = x.shape
    u = torch.rand(b, 4, generator=generator) * 2 - 1
    angle, s = u[:, 0] * degrees * torch.pi / 180, 1 + u[:, 1] * scale
    cos, sin = angle.cos() / s, angle.sin() / s
    theta = torch.stack([torch.stack([cos, -sin, u[:, 2] * shift * 2 / w], 1),
                         torch.stack([sin, cos, u[:, 3] * shift * 2 / h], 1)], 1)  # fmt: skip
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


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


def train_classifier(data_root, epochs: int = 10, out=None, seed: int = 0) -> Path:
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
            xb = random_affine(xb)
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
