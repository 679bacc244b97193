"""Loss curves and per-epoch sample GIFs, the pictures people look at while a model trains."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from model.render import save_gif


def plot_losses(groups: dict[str, dict[str, list[float]]], path: Path, title: str = "") -> Path:
    """One panel per group (e.g. a stage); per-batch losses faint, a running mean on top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = {g: c for g, c in groups.items() if any(c.values())}
    fig, axes = plt.subplots(1, max(1, len(groups)), figsize=(4.5 * max(1, len(groups)), 3.4), squeeze=False)
    for ax, (group, curves) in zip(axes[0], groups.items()):
        offset = 0
        for i, (name, losses) in enumerate(curves.items()):
            y = np.asarray(losses, dtype=float)
            x = np.arange(offset, offset + len(y))
            color = f"C{i % 10}"
            ax.plot(x, y, color=color, alpha=0.25, lw=0.7)
            k = max(1, len(y) // 20)
            if len(y) >= k:
                smooth = np.convolve(y, np.ones(k) / k, mode="valid")
                ax.plot(x[k - 1 :], smooth, color=color, lw=1.4, label=name if len(curves) <= 6 else None)
            if group.startswith("chain"):
                offset += len(y)  # chain stages follow each other on one axis
        ax.set_yscale("log")
        ax.set_title(group)
        ax.set_xlabel("batch")
        ax.set_ylabel("loss")
        if len(curves) <= 6:
            ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def add_frame(frames_dir: Path, index: int, img: np.ndarray, gif: Path, label: str | None = None) -> Path:
    """Store one sample-grid frame as PNG (so frames survive a resume), then rebuild the GIF."""
    frames_dir.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(frames_dir / f"{index:05d}.png")
    frames = [np.asarray(Image.open(p)) for p in sorted(frames_dir.glob("*.png"))]
    return save_gif(frames, gif, factor=3, ms=300)
