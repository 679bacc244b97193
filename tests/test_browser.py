"""The app in headless Chromium: type a prompt, click Generate (or press Enter), see the row drawn.

Screenshots go to $ARTIFACTS_DIR (default tests/artifacts/). For the README's picture, with the bundled
(or $MODEL_REPO) weights: python tests/test_browser.py --docs [PATH]   (default PATH: docs/app.png)
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(os.environ.get("ARTIFACTS_DIR") or ROOT / "tests" / "artifacts")
# Done when the run's line names its seed and the row image has loaded (naturalWidth > 0).
ROW_READY = """seed => { const i = document.querySelector('#row img'), info = document.querySelector('#info');
    return info.innerText.includes(`seed ${seed} `) && i !== null && i.complete && i.naturalWidth > 0; }"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(chains: dict, status: dict):
    """Serve the app like `python app.py` does, on a free 127.0.0.1 port; return (demo, url)."""
    import app

    demo = app.build_demo(chains, status)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True,
                            ssr_mode=False, css=app.CSS)  # fmt: skip
    return demo, url


def draw(page, prompt: str, seed: str, enter: bool = False) -> int:
    """Type the prompt and seed, submit them, wait for the drawn row; return the row image's natural width."""
    page.locator("#seed textarea, #seed input").first.fill(seed)
    page.locator("#prompt textarea, #prompt input").first.fill(prompt)
    if enter:
        page.locator("#prompt textarea, #prompt input").first.press("Enter")
    else:
        page.locator("#generate").click()
    page.wait_for_function(ROW_READY, arg=seed, timeout=90_000)
    return page.locator("#row img").evaluate("i => i.naturalWidth")


def browse(url: str):
    """(playwright, browser, page) on `url`, headless Chromium from the system."""
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(url)
    page.locator("#generate").wait_for()
    return pw, browser, page


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (CI installs Debian's: apt install chromium)")
def test_type_generate_and_see_the_row(tmp_path):
    from model import load_chain
    from model.improved import ImprovedChain
    from model.io import save_weights
    from model.render import row_width

    save_weights(ImprovedChain(ch=8, emb_dim=32, levels=4, default_steps=2), tmp_path / "improved")
    import app

    demo, url = launch({"improved": load_chain("improved", source=tmp_path / "improved")}, {"improved": "tiny test"})
    pw, browser, page = browse(url)
    try:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        assert draw(page, "2024", seed="1") == row_width(4) * app.SCALE
        page.screenshot(path=ARTIFACTS / "app-2024.png", full_page=True)
        final = page.locator("#row img").get_attribute("src")
        page.locator("#scrub input[type=range]").fill("0")  # scrub back to the starting noise
        page.wait_for_function("src => document.querySelector('#row img').src !== src", arg=final, timeout=60_000)
        assert draw(page, "three one four one five", seed="2", enter=True) == row_width(5) * app.SCALE
        assert page.locator("#status").inner_text().endswith("improved: tiny test")
        page.locator("#prompt textarea, #prompt input").first.fill("abc")
        page.locator("#generate").click()
        page.get_by_text("Cannot draw 'abc'").first.wait_for(timeout=60_000)  # shown, and the app keeps serving
        page.screenshot(path=ARTIFACTS / "app-error.png")
        assert draw(page, "7", seed="3") == 28 * app.SCALE
    finally:
        browser.close()
        pw.stop()
        demo.close()


def docs_screenshot(out: Path = ROOT / "docs" / "app.png") -> Path:
    """Screenshot of the app drawing "2024" with the weights `python app.py` would use."""
    from model.hub import load_chains

    env = os.environ.get
    chains, status = load_chains({"improved": (env("MODEL_REPO"), env("MODEL_REVISION")),
                                  "original": (env("ORIGINAL_MODEL_REPO"), None)})  # fmt: skip
    if not chains:
        raise SystemExit(f"no weights to show: {status}")
    demo, url = launch(chains, status)
    pw, browser, page = browse(url)
    try:
        draw(page, "2024", seed="2024")
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=out, full_page=True)  # the whole page: the steps gallery is the point
    finally:
        browser.close()
        pw.stop()
        demo.close()
    return out


if __name__ == "__main__":
    if sys.argv[1:2] != ["--docs"] or len(sys.argv) > 3:
        raise SystemExit(__doc__)
    sys.path.insert(0, str(ROOT))  # run as a script from anywhere
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    print(f"wrote {docs_screenshot(*map(Path, sys.argv[2:]))}")
