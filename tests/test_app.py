"""The web app through its API, as gradio_client sees it: in-process, offline, tiny weights."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from PIL import Image

import app
import model.io
from model import load_chain
from model.improved import ImprovedChain
from model.io import save_weights
from model.original import OriginalChains
from model.render import row_width

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("weights")
    save_weights(ImprovedChain(ch=8, emb_dim=32, levels=4, default_steps=2), root / "improved")
    save_weights(OriginalChains(width=0.0625, digits=list(range(10))), root / "original")
    return root


def connect(url: str, downloads: Path | bool = False) -> Client:
    """A client that sends no analytics and saves the files it gets to `downloads` (False: only their URLs)."""
    return Client(url, verbose=False, analytics_enabled=False, download_files=downloads and str(downloads))


def serve(chains: dict, downloads: Path):
    """Launch the app on a free 127.0.0.1 port; return (demo, client)."""
    demo = app.build_demo(chains, {k: f"test weights ({k})" for k in chains})
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True)
    return demo, connect(url, downloads)


@pytest.fixture(scope="module")
def client(weights, tmp_path_factory):
    chains = {k: load_chain(k, source=weights / k) for k in ("improved", "original")}
    demo, client = serve(chains, tmp_path_factory.mktemp("downloads"))
    yield client
    client.close()
    demo.close()


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_api_takes_the_prompt_first_and_defaults_the_rest(client):
    params = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/generate"]["parameters"]
    assert [p["parameter_name"] for p in params] == ["prompt", "chain", "seed", "steps", "guidance", "same_hand"]
    assert [p["parameter_has_default"] for p in params] == [False] + [True] * 5
    assert [p["parameter_default"] for p in params[1:]] == ["improved", "", 2, 1.0, False]


def test_generate_returns_the_row_first(client):
    out = client.predict("2024", api_name="/generate")
    assert Image.open(out[0]).size == (row_width(4) * app.SCALE, 28 * app.SCALE)
    assert out[1] is None  # the second image is for "both"
    assert "**improved** chain, 2 steps" in out[2] and "seed `" in out[2]


def test_seed_reproduces_and_options_apply(client):
    a = client.predict("two 0 2 four", seed="7", api_name="/generate")
    b = client.predict("2024", "improved", "7", 2, 1.0, False, api_name="/generate")
    assert "seed `7`" in a[2] and (pixels(a[0]) == pixels(b[0])).all()
    assert "seed `7`" in client.predict("2024", seed=7.0, api_name="/generate")[2]  # a number is fine too
    c = client.predict("2024", seed=" 8 ", steps=4, guidance=0, same_hand=True, api_name="/generate")
    assert "4 steps" in c[2] and "seed `8`" in c[2] and not (pixels(c[0]) == pixels(a[0])).all()


def test_frames_stream_while_the_chain_runs(client):
    job = client.submit("0123456789", seed="3", steps=4, api_name="/generate")
    final = job.result(timeout=60)
    frames = [o[0] for o in job.outputs()]
    assert len(frames) == 4 + 1 + 1  # starting noise, one per step, then the finished result
    sizes = {Image.open(f).size for f in frames}
    assert sizes == {(row_width(10) * app.SCALE, 28 * app.SCALE)}
    assert not (pixels(frames[0]) == pixels(frames[-1])).all()  # noise first, the drawing last
    assert (pixels(frames[-2]) == pixels(final[0])).all()


def test_after_the_run_gallery_scrub_and_downloads(client):
    out = client.predict("12", chain="both", seed="5", steps=3, api_name="/generate")
    img_a, img_b, info, scrub, gallery_a, gallery_b, files_a, files_b = out
    assert Image.open(img_b).size == Image.open(img_a).size and "**original** chain, 12 steps" in info
    assert scrub["visible"] and scrub["maximum"] == 12 and scrub["value"] == 12
    captions = [g["caption"] for g in gallery_a]
    assert captions == ["step 1 sees", "step 1 guesses", "step 2 sees", "step 2 guesses", "step 3 sees",
                        "step 3 guesses", "final"]  # fmt: skip
    assert [g["caption"] for g in gallery_b] == ["noise"] + [f"after block {i}" for i in range(1, 13)]
    png, gif = sorted(files_a, key=lambda f: f.endswith(".gif"))
    assert Path(png).name == "improved-12-seed5.png" and (pixels(png) == pixels(img_a)).all()
    assert Image.open(gif).n_frames == 3 + 1
    assert Image.open(next(f for f in files_b if f.endswith(".gif"))).n_frames == 13


@pytest.mark.parametrize(
    "args, message",
    [
        (("",), "The prompt is empty"),
        (("abc",), "Cannot draw 'abc'"),
        (("12#",), "Cannot draw '12#'"),
        (("1" * 65,), "at most 64 can be drawn"),
        (("12", "improved", "x"), "The seed must be a whole number, got 'x'."),
        (("12", "improved", "-1"), "The seed must be between 0 and"),
        (("12", "improved", "", 99), "steps must be a whole number from 1 to 4, got 99."),
        (("12", "improved", "", 0), "steps must be a whole number from 1 to 4, got 0."),
        (("12", "improved", "", 2, 50), "guidance must be a number from 0 to 20, got 50."),
        (("12", "nope"), "The chain must be one of improved, original, both, got 'nope'."),
    ],
)
def test_bad_input_is_one_clear_error(client, args, message):
    with pytest.raises(AppError, match=message.replace("(", r"\(").replace(".", r"\.")):
        client.predict(*args, api_name="/generate")


def test_twenty_requests_at_once(client):
    light = connect(client.src)  # fetches no files: this is about the queue answering everyone
    try:
        jobs = [light.submit(str(i), seed=str(i), api_name="/generate") for i in range(20)]
        results = [job.result(timeout=120) for job in jobs]
    finally:
        light.close()
    assert [r[2].split("seed `")[1].split("`")[0] for r in results] == [str(i) for i in range(20)]
    assert all(r[0] for r in results)
    assert Image.open(client.predict("9", api_name="/generate")[0]).size[0] == 28 * app.SCALE  # still serving


def test_one_chain_only(tmp_path):
    save_weights(OriginalChains(width=0.0625, digits=[2, 4]), tmp_path / "original")  # trained for 2 and 4 only
    demo, client = serve({"original": load_chain("original", source=tmp_path / "original")}, tmp_path)
    try:
        params = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/generate"]["parameters"]
        assert params[1]["parameter_default"] == "original"
        out = client.predict("42", api_name="/generate")
        assert Image.open(out[0]).size == (row_width(2) * app.SCALE, 28 * app.SCALE)
        with pytest.raises(AppError, match="The chain must be one of original, got 'improved'."):
            client.predict("42", "improved", api_name="/generate")
        with pytest.raises(AppError, match=r"no chain for digit 7 \(it has \[2, 4\]\)"):
            client.predict("472", api_name="/generate")
    finally:
        client.close()
        demo.close()


def test_the_cache_is_swept_and_forgotten(tmp_path, weights):
    demo, client = serve({"original": load_chain("original", source=weights / "original")}, tmp_path)
    try:
        client.predict("42", api_name="/generate")
        cached = set().union(*demo.temp_file_sets)
        assert cached and all(Path(p).exists() for p in cached)  # what the call served
        gone = str(tmp_path / "gone.png")  # a path whose file something else already deleted
        demo.temp_file_sets[0].add(gone)
        assert app.sweep_cache(demo, max_age=3600) == 0 and gone not in set().union(*demo.temp_file_sets)
        time.sleep(0.05)
        assert app.sweep_cache(demo, max_age=0.01) == len(cached)
        assert not set().union(*demo.temp_file_sets) and not any(Path(p).exists() for p in cached)
        assert not any(Path(p).parent.exists() for p in cached)  # nor their folders
        assert Image.open(client.predict("24", api_name="/generate")[0]).size[1] == 28 * app.SCALE  # still serving
    finally:
        client.close()
        demo.close()


def test_the_sweeper_thread_keeps_sweeping(tmp_path):
    class Demo:  # what the sweeper reads of a gr.Blocks
        blocks, GRADIO_CACHE = {}, str(tmp_path)

    demo = Demo()
    demo.temp_file_sets = [set()]
    app.start_cache_sweeper(demo, every=0.02, max_age=0.05)
    for i in range(2):  # a file served after the first sweeps goes too: the thread keeps running
        path = tmp_path / f"h{i}" / "row.png"
        path.parent.mkdir()
        path.write_bytes(b"png")
        demo.temp_file_sets[0].add(str(path))
        deadline = time.monotonic() + 10
        while str(path) in demo.temp_file_sets[0] and time.monotonic() < deadline:  # forgotten last
            time.sleep(0.02)
        assert not path.exists() and not path.parent.exists()
    assert demo.temp_file_sets == [set()] and tmp_path.exists()


def test_no_weights_at_all_exits_clearly(tmp_path, monkeypatch):
    monkeypatch.setattr(model.io, "ASSETS", tmp_path)
    with pytest.raises(SystemExit, match="No chain can be served: improved: not available"):
        app.main([])


def test_the_script_starts_fast_and_small(weights, tmp_path):
    port = free_port()
    env = {**os.environ, "MODEL_REPO": str(weights / "improved"), "ORIGINAL_MODEL_REPO": str(weights / "original"),
           "GRADIO_TEMP_DIR": str(tmp_path), "HF_HUB_OFFLINE": "1"}  # fmt: skip
    t = time.monotonic()
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        while True:
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() - t < 30, "no answer within 30 s"  # 15 s when the machine is idle
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).read().decode()
                break
            except OSError:
                time.sleep(0.25)
        rss_kb = int(next(line for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
                          if line.startswith("VmRSS")).split()[1])  # fmt: skip
        assert rss_kb < 2 * 1024 * 1024
        assert "Denoiser Chain" in page
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert "weights from directory" in proc.stdout.read()
