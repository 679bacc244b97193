"""Loading weights from a directory, an offline Hub cache, an unreachable Hub; corrupt weights; the push folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub import constants
from PIL import Image

import model.io
from model import CheckpointError, load_chain
from model.hub import load_chains, load_with_fallback
from model.improved import ImprovedChain
from model.io import save_weights
from model.original import OriginalChains
from model.render import row_width
from train.push import prepare_push_folder, push

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"


def tiny(kind: str, folder: Path, **kw) -> Path:
    """Save tiny untrained weights of `kind` to folder (CPU-cheap stand-ins for the trained ones)."""
    if kind == "improved":
        return save_weights(ImprovedChain(**{"ch": 8, "emb_dim": 32, "levels": 4, "default_steps": 2, **kw}), folder)
    return save_weights(OriginalChains(**{"width": 0.0625, "digits": list(range(10)), **kw}), folder)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("weights")
    tiny("improved", root / "improved")
    tiny("original", root / "original")
    return root


@pytest.fixture
def bundled(weights, tmp_path, monkeypatch) -> Path:
    """Point the bundled weights (assets/) at a copy of the tiny weights."""
    assets = tmp_path / "assets"
    shutil.copytree(weights, assets)
    monkeypatch.setattr(model.io, "ASSETS", assets)
    return assets


def test_local_directory(weights):
    chain, status = load_with_fallback("improved", str(weights / "improved"))
    assert chain.name == "improved" and chain.source == str(weights / "improved")
    assert status == f"weights from directory {weights / 'improved'}"
    assert chain.generate("12", seed=0).row.shape == (28, row_width(2))


def test_none_means_bundled(bundled):
    chain, status = load_with_fallback("original")
    assert (chain.name, chain.source, status) == ("original", "bundled", "bundled weights")


def test_offline_hub_cache(weights, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    repo = cache / "models--user--tiny-chain"
    shutil.copytree(weights / "improved", repo / "snapshots" / SNAPSHOT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(SNAPSHOT)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # read once at import: patch the live value too
    chain, status = load_with_fallback("improved", "user/tiny-chain", cache_dir=str(cache))
    assert status == "weights from Hub repo user/tiny-chain" and chain.source == "user/tiny-chain"
    assert chain.max_steps == 4 and chain.default_steps == 2


# Run in a child process: a Hub download that missed its deadline goes on in a daemon thread (retrying with
# back-off), and must never outlive the 127.0.0.1 endpoint it was given; the child's exit ends it.
UNREACHABLE = r"""
import json, socket, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
import model.io
from model.hub import load_with_fallback

model.io.ASSETS = Path(sys.argv[1])
out = {}


class NotFound(BaseHTTPRequestHandler):  # a Hub that answers at once: no such repo
    def do_HEAD(self):
        self.send_response(404)
        self.send_header("X-Error-Code", "RepoNotFound")
        self.end_headers()

    do_GET = do_HEAD

    def log_message(self, *args):
        pass


case = sys.argv[3]  # one case per process: a download abandoned at its deadline must not touch the next case
if case == "missing":
    http = ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    t = time.monotonic()
    chain, status = load_with_fallback("improved", "user/missing", endpoint=f"http://127.0.0.1:{http.server_port}",
                                       cache_dir=sys.argv[2])
    out["missing"] = {"seconds": time.monotonic() - t, "source": chain.source, "status": status}
else:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    endpoint = f"http://127.0.0.1:{server.getsockname()[1]}"
    if case == "silent":
        server.listen(8)  # accepts connections (kernel backlog) and never answers
    else:
        server.close()  # nothing listens there
    t = time.monotonic()
    kw = {"endpoint": endpoint, "cache_dir": sys.argv[2]}
    chain, status = load_with_fallback("improved", f"user/{case}", revision="v1", **kw)
    out[case] = {"seconds": time.monotonic() - t, "source": chain.source, "status": status}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def unreachable(weights, tmp_path_factory) -> dict:
    """Loading from 127.0.0.1: a Hub that says 404, a closed port, a server that never answers."""
    home = tmp_path_factory.mktemp("hf-home")
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_DISABLE_TELEMETRY": "1", "PYTHONPATH": str(ROOT)}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", OMP_NUM_THREADS="1")  # the default endpoint too: only 127.0.0.1
    env.pop("HF_HUB_OFFLINE", None)
    out = {}
    for case in ("missing", "closed", "silent"):
        cmd = [sys.executable, "-c", UNREACHABLE, str(weights), str(home / "cache"), case]
        done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        out.update(json.loads(done.stdout.strip().splitlines()[-1]))
    return out


def test_closed_port_falls_back_in_time(unreachable):
    r = unreachable["closed"]
    assert r["seconds"] < 3.5 and r["source"] == "bundled"
    assert r["status"].startswith("bundled weights (Hub repo user/closed@v1 ")


def test_missing_repo_falls_back_at_once(unreachable):
    r = unreachable["missing"]
    assert r["seconds"] < 2 and r["source"] == "bundled"
    assert r["status"].startswith("bundled weights (Hub repo user/missing unusable: "), r["status"]


def test_silent_hub_hits_the_deadline(unreachable):
    r = unreachable["silent"]
    assert 2.9 < r["seconds"] < 3.5 and r["source"] == "bundled"
    assert r["status"] == "bundled weights (Hub repo user/silent@v1 unreachable: no answer within 3 s)"


@pytest.mark.parametrize("kind", ["improved", "original"])
def test_corrupt_weights(kind, weights, bundled, tmp_path):
    bad = shutil.copytree(weights / kind, tmp_path / "bad")
    (bad / "model.safetensors").write_bytes(b"\x00garbage, not a safetensors file" * 8)
    with pytest.raises(CheckpointError, match=str(bad / "model.safetensors")):
        load_chain(kind, source=bad)
    chain, status = load_with_fallback(kind, str(bad))
    assert chain.source == "bundled" and status.startswith(f"bundled weights (directory {bad} unusable: ")


@pytest.mark.parametrize("kind, wider", [("improved", {"ch": 16}), ("original", {"width": 0.125})])
def test_mismatched_weights(kind, wider, weights, bundled, tmp_path):
    other = tiny(kind, tmp_path / "other", **wider)
    bad = shutil.copytree(weights / kind, tmp_path / "bad")
    shutil.copyfile(other / "model.safetensors", bad / "model.safetensors")  # config says narrower
    with pytest.raises(CheckpointError, match=str(bad / "model.safetensors")):
        load_chain(kind, source=bad)
    chain, status = load_with_fallback(kind, str(bad))
    assert chain.source == "bundled" and "unusable" in status


def test_load_chains_serves_what_loads(bundled, tmp_path):
    shutil.rmtree(bundled / "original")
    chains, status = load_chains({"improved": (None, None), "original": (str(tmp_path / "nowhere"), None)})
    assert list(chains) == ["improved"] and status["improved"] == "bundled weights"
    assert status["original"].startswith("not available (") and "no bundled weights either" in status["original"]


def test_prepare_push_folder(weights, tmp_path):
    src = shutil.copytree(weights / "improved", tmp_path / "src")
    (src / "metrics.json").write_text(json.dumps({"chain": "improved", "steps": 2, "guidance": None,
                                                  "accuracy": 0.9712, "fid": 1.5, "floor": 0.4, "diversity": 0.93,
                                                  "n": 5000}))  # fmt: skip
    evals = tmp_path / "eval"
    evals.mkdir()
    (evals / "improved-steps4.json").write_text(json.dumps({"chain": "improved", "steps": 4, "accuracy": 0.98,
                                                           "source": "bundled"}))  # fmt: skip
    (evals / "original.json").write_text(json.dumps({"chain": "original", "steps": 12, "accuracy": 0.5}))
    out = prepare_push_folder("improved", str(src), tmp_path / "out", repo_id="user/tiny", eval_dir=evals)
    assert {p.name for p in out.iterdir()} == {"model.safetensors", "config.json", "README.md", "sample.png"}
    assert (out / "model.safetensors").read_bytes() == (src / "model.safetensors").read_bytes()
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: denoiser-chain\n") and "](sample.png)" in card
    assert "| 2 | default | 97.12 % | 1.500 | 0.400 | 0.930 | 5000 | these |" in card
    assert "| 4 | default | 98.00 % | - | - | - | - | bundled |" in card and "50.00 %" not in card  # only this chain
    assert 'load_chain("improved", source="user/tiny")' in card and "conditional mean" not in card
    assert Image.open(out / "sample.png").size == (row_width(10) * 4, 28 * 4)
    assert load_chain("improved", source=out).default_steps == 2  # the folder is loadable as uploaded


def test_card_says_what_the_adversarial_stage_left_in_the_weights():
    from model.improved import ImprovedChain
    from train.push import provenance

    m = ImprovedChain(ch=8, emb_dim=32, latent_dim=4, levels=4, default_steps=2)
    assert "no adversarial fine-tune" in provenance(m)
    m.adversarial = True
    assert "fine-tuned adversarially" in provenance(m)
    m.adversarial, m.adversarial_mix = False, 0.25
    assert "blend the denoiser's (0.75)" in provenance(m) and "(0.25)" in provenance(m)


def test_prepare_push_folder_refuses_bad_weights(tmp_path):
    with pytest.raises(CheckpointError, match="config.json"):
        prepare_push_folder("original", str(tmp_path), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_push_uploads_the_folder(weights, tmp_path, monkeypatch):
    calls = []

    class FakeApi:  # records what push asks of the Hub; no network
        def create_repo(self, repo_id, **kw):
            calls.append(("create_repo", repo_id, kw))
            return f"https://hub.invalid/{repo_id}"

        def upload_folder(self, repo_id, folder_path, **kw):
            calls.append(("upload_folder", repo_id, sorted(p.name for p in Path(folder_path).iterdir())))

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    url = push("original", str(weights / "original"), "user/orig", private=True)
    assert url == "https://hub.invalid/user/orig"
    assert calls == [
        ("create_repo", "user/orig", {"private": True, "exist_ok": True, "repo_type": "model"}),
        ("upload_folder", "user/orig", ["README.md", "config.json", "model.safetensors", "sample.png"]),
    ]
