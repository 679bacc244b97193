"""The training loop shared by every stage: tqdm, metrics.jsonl, atomic resumable state, Ctrl-C.

A fit visits a fixed permutation per epoch (seeded by seed + epoch), so a run stopped mid-epoch
resumes at the very batch it stopped at. State is written atomically at every epoch end, every
`save_every_s` seconds, and on Ctrl-C; a finished fit keeps only its weights.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from model.precision import cpu_has_bf16


class ResumeError(RuntimeError):
    """A run directory that cannot be resumed as asked; the message says what to do."""


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda was asked for, but PyTorch sees no CUDA GPU here.")
    if name not in ("cpu", "cuda"):
        raise SystemExit(f"Unknown --device {name!r}; choose auto, cpu or cuda.")
    return torch.device(name)


def autocast(device: torch.device, cpu: bool = False):
    """bf16 autocast on CUDA (safe for these convnets: no loss scaling needed).

    On the CPU only when `cpu` is asked for and the CPU has native bf16; otherwise fp32.
    """
    kind = torch.device(device).type
    enabled = kind == "cuda" or (kind == "cpu" and cpu and cpu_has_bf16())
    return torch.autocast(kind, dtype=torch.bfloat16, enabled=enabled)


def atomic_save(obj, path: Path) -> None:
    """torch.save to a temporary file, then rename: a crash or full disk never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_state(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ResumeError(f"{path}: the training state is corrupt ({e}); delete it to redo that part.") from None


def log_metrics(path: Path, **row) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps({"time": round(time.time(), 3), **row}) + "\n")


@dataclass
class Fit:
    """One optimisation run of `modules` under `opt`, resumable from `state_path`."""

    name: str  # shown in the bar and written in metrics.jsonl
    modules: dict[str, torch.nn.Module]  # everything whose weights the state must hold
    opt: torch.optim.Optimizer
    n_items: int
    epochs: int
    batch_size: int
    state_path: Path
    metrics_path: Path
    seed: int = 0
    save_every_s: float = 120.0
    history: list[float] = field(default_factory=list)  # per-batch losses, this run and resumed

    def run(
        self,
        step: Callable[[torch.Tensor], torch.Tensor],
        on_epoch_end: Callable[[int], dict | None] | None = None,
        progress: bool = True,
    ) -> list[float]:
        """step(indices) -> scalar loss (the fit does backward and the optimiser step)."""
        state = load_state(self.state_path)
        epoch, batch = 0, 0
        if state is not None:
            for k, m in self.modules.items():
                m.load_state_dict(state["modules"][k])
            if state.get("done"):
                self.history = state.get("history", [])
                return self.history
            self.opt.load_state_dict(state["opt"])
            epoch, batch, self.history = state["epoch"], state["batch"], state["history"]
        n_batches = math.ceil(self.n_items / self.batch_size)
        total = self.epochs * n_batches
        bar = tqdm(total=total, initial=epoch * n_batches + batch, desc=self.name, disable=not progress, leave=False)
        last_save = time.monotonic()
        try:
            while epoch < self.epochs:
                g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
                perm = torch.randperm(self.n_items, generator=g)
                for b in range(batch, n_batches):
                    loss = step(perm[b * self.batch_size : (b + 1) * self.batch_size])
                    self.opt.zero_grad(set_to_none=True)
                    loss.backward()
                    self.opt.step()
                    self.history.append(loss.item())
                    batch = b + 1
                    bar.update(1)
                    bar.set_postfix(loss=f"{self.history[-1]:.4f}")
                    if time.monotonic() - last_save > self.save_every_s:
                        self._save(epoch, batch)
                        last_save = time.monotonic()
                epoch_loss = sum(self.history[-n_batches:]) / n_batches
                epoch, batch = epoch + 1, 0
                extra = on_epoch_end(epoch) if on_epoch_end else None
                log_metrics(self.metrics_path, fit=self.name, epoch=epoch, loss=epoch_loss, **(extra or {}))
                self._save(epoch, 0, done=epoch >= self.epochs)
        except KeyboardInterrupt:
            self._save(epoch, batch)
            bar.close()
            raise
        bar.close()
        return self.history

    def _save(self, epoch: int, batch: int, done: bool = False) -> None:
        state = {
            "modules": {k: m.state_dict() for k, m in self.modules.items()},
            "epoch": epoch,
            "batch": batch,
            "history": self.history,
            "done": done,
        }
        if not done:  # a finished fit needs no optimiser state: keep the file small
            state["opt"] = self.opt.state_dict()
        atomic_save(state, self.state_path)
