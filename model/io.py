"""Saving and loading weights: `model.safetensors` + `config.json` (the Hugging Face layout)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

from .errors import CheckpointError
from .improved import ImprovedChain
from .original import OriginalChains

KINDS = {"original": OriginalChains, "improved": ImprovedChain}
ASSETS = Path(__file__).resolve().parent.parent / "assets"


def save_weights(model, directory: str | Path, extra: dict | None = None) -> Path:
    """Write weights + config (with its "kind") atomically: readers see the old or the new, never half."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    config = {**dict(model._hub_mixin_config or {}), "kind": model.kind, **(extra or {})}
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        model.save_pretrained(tmp, config=config)
        old = directory.with_name(directory.name + ".old")
        if directory.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(directory, old)
        os.replace(tmp, directory)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def read_config(directory: str | Path) -> dict:
    path = Path(directory) / "config.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file; is this a saved chain directory?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e}).") from None


def load_weights(kind: str, source: str | Path, revision: str | None = None, **hub_kwargs):
    """Load a chain of `kind` from a local directory or a Hub repo id, strictly.

    Raises CheckpointError naming the file and what is wrong (missing, corrupt, mismatched).
    """
    if kind not in KINDS:
        raise CheckpointError(f"Unknown chain {kind!r}; choose one of {', '.join(KINDS)}.")
    cls = KINDS[kind]
    local = Path(source).expanduser()
    text = str(source)
    if not local.is_dir() and (local.is_absolute() or text.startswith((".", "~")) or text.count("/") > 1):
        raise CheckpointError(f"{local}: no such weights directory (expected config.json + model.safetensors).")
    where = str(local / "model.safetensors") if local.is_dir() else f"{source} (Hub)"
    if local.is_dir():
        found = read_config(local).get("kind", kind)
        if found != kind:
            raise CheckpointError(f"{local / 'config.json'}: holds a {found!r} chain, not {kind!r}.")
        source = str(local)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the mixin prints where it loads from
            model = cls.from_pretrained(source, revision=revision, strict=True, **hub_kwargs)
    except CheckpointError:
        raise
    except Exception as e:  # safetensors, torch and hub errors all become one clear message
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{where}: cannot load the {kind} chain: {msg}") from e
    if kind == "improved":
        try:
            model.check_ladder(where)
        except ValueError as e:
            raise CheckpointError(str(e)) from None
    return model.eval()


def bundled(kind: str) -> Path:
    """The directory of the weights shipped in assets/."""
    return ASSETS / kind
