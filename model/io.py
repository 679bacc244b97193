"""Saving and loading weights: `model.safetensors` + `config.json` (the Hugging Face layout)."""

from __future__ import annotations

import inspect
import json
import os
import shutil
import tempfile
from pathlib import Path

from .errors import CheckpointError
from .improved import ImprovedChain
from .original import OriginalChains

KINDS = {"original": OriginalChains, "improved": ImprovedChain}
FILES = ("config.json", "model.safetensors")
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


def build(cls, config: dict, path: Path):
    """The model a config describes, with the weights at `path` loaded strictly."""
    from safetensors.torch import load_model

    params = inspect.signature(cls.__init__).parameters
    model = cls(**{k: v for k, v in config.items() if k in params and k != "self"})
    model._hub_mixin_config = {k: v for k, v in config.items() if k in params}
    load_model(model, str(path), strict=True)
    return model


def load_weights(kind: str, source: str | Path, revision: str | None = None, **hub_kwargs):
    """Load a chain of `kind` from a local directory or a Hub repo id (config.json + model.safetensors).

    Raises CheckpointError naming the file and what is wrong (missing, corrupt, mismatched).
    """
    if kind not in KINDS:
        raise CheckpointError(f"Unknown chain {kind!r}; choose one of {', '.join(KINDS)}.")
    local = Path(source).expanduser()
    text = str(source)
    if not local.is_dir():
        if local.is_absolute() or text.startswith((".", "~")) or text.count("/") > 1:
            raise CheckpointError(f"{local}: no such weights directory (expected config.json + model.safetensors).")
        local = download(text, revision, **hub_kwargs)
    config = read_config(local)
    found = config.get("kind", kind)
    if found != kind:
        raise CheckpointError(f"{local / 'config.json'}: holds a {found!r} chain, not {kind!r}.")
    where = local / "model.safetensors"
    if not where.exists():
        raise CheckpointError(f"{where}: no such file.")
    try:
        model = build(KINDS[kind], config, where)
    except Exception as e:  # safetensors and torch errors all become one clear message
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{where}: cannot load the {kind} chain: {msg}") from e
    if kind == "improved":
        try:
            model.check_ladder(str(where))
        except ValueError as e:
            raise CheckpointError(str(e)) from None
    return model.eval()


def download(repo_id: str, revision: str | None = None, **hub_kwargs) -> Path:
    """Fetch (or find in the Hub cache) a repo's config.json and model.safetensors; return their folder."""
    from huggingface_hub import hf_hub_download

    try:
        paths = [hf_hub_download(repo_id, f, revision=revision, **hub_kwargs) for f in FILES]
    except Exception as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{repo_id} (Hub): cannot fetch the weights: {msg}") from e
    return Path(paths[-1]).parent


def bundled(kind: str) -> Path:
    """The directory of the weights shipped in assets/."""
    return ASSETS / kind
