"""Denoiser Chain web app: type digits and watch a chain of denoisers draw them, step by step."""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no calls home

import argparse
import atexit
import logging
import shutil
import sys
import tempfile
import threading
import time
import uuid
import weakref
from pathlib import Path

import gradio as gr
import torch

from model import Chain, Generation, InputError
from model.api import check_seed
from model.hub import load_chains
from model.render import save_gif, save_png, upscale

SCALE, THUMB = 8, 4  # screen pixels per MNIST pixel for the row and the gallery / GIF (nearest neighbour)
EXAMPLES = ["2024", "0123456789", "three one four one five", "8 6 7 5 3 0 9"]
CSS = "#row img, #row-b img {image-rendering: pixelated;}"  # the browser's own rescaling stays crisp too
ABOUT = """### What is a denoiser chain?
Each digit starts as pure noise; a chain of denoisers removes a little of it per step until a handwritten digit is left.

- **The original's flaw:** every net was trained with MSE to a fixed, deterministic target, so each learns the
  *conditional mean*; with no fresh noise along the way, the chain collapses to blurry class averages.
- **The improved chain:** one class-conditional denoiser shared by all steps, with fresh noise injected at every step,
  so each step *samples* its posterior instead of averaging it. Digits come out crisp, and every seed writes them
  differently.
- **In the gallery**, each pair is what a step sees and the clean digits the denoiser guesses from it."""


def parse_seed(value) -> int:
    """Blank -> a fresh random seed; otherwise the whole number typed (raises InputError)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):  # a number sent through the API
        return check_seed(value)
    text = "" if value is None else str(value).strip()
    if not text:
        return check_seed(None)
    try:
        seed = int(text)
    except ValueError:
        raise InputError(f"The seed must be a whole number, got {text!r}.") from None
    return check_seed(seed)


def gallery(g: Generation) -> list[tuple]:
    """Every step; for the improved chain each input beside the denoiser's clean-digit guess from it."""
    if g.guesses is None:
        return [(upscale(s, THUMB), "noise" if i == 0 else f"after block {i}") for i, s in enumerate(g.steps)]
    pairs = [((upscale(s, THUMB), f"step {i + 1} sees"), (upscale(q, THUMB), f"step {i + 1} guesses"))
             for i, (s, q) in enumerate(zip(g.steps, g.guesses))]  # fmt: skip
    return [item for pair in pairs for item in pair] + [(upscale(g.row, THUMB), "final")]


def downloads(g: Generation, root: Path, max_age: float = 3600) -> list[str]:
    """The final row as PNG and the run as an animated GIF, in a fresh folder (old ones are pruned)."""
    for old in root.iterdir():  # downloads are copied into gradio's cache when returned; keep them as long
        if old.stat().st_mtime < time.time() - max_age:
            shutil.rmtree(old, ignore_errors=True)
    folder = root / uuid.uuid4().hex
    stem = f"{g.chain}-{''.join(map(str, g.digits))[:32]}-seed{g.seed}"
    return [str(save_png(g.row, folder / f"{stem}.png", SCALE)), str(save_gif(g.steps, folder / f"{stem}.gif", THUMB))]


def sweep_cache(demo: gr.Blocks, max_age: float | None) -> int:
    """Delete the files Gradio cached for `demo` that are older than max_age seconds (None: all) and forget them.

    Gradio keeps the path of every file it serves in sets on the Blocks; its own `delete_cache` sweeper walks those
    live sets (a request adding a path mid-walk kills it: "Set changed size during iteration") and never forgets a
    path whose file is already gone. This walks copies and drops both, so the sets stay as small as the cache.
    """
    keep = set().union(*(getattr(b, "keep_in_cache", set()) for b in demo.blocks.values()))
    root = os.path.abspath(demo.GRADIO_CACHE)
    removed = 0
    for paths in demo.temp_file_sets:
        for path in paths.copy():  # set.copy() is atomic: requests may add paths meanwhile
            if path in keep:
                continue
            try:
                if max_age is not None and time.time() - os.lstat(path).st_ctime <= max_age:
                    continue
                os.remove(path)
                removed += 1
                if os.path.dirname(os.path.abspath(path)) != root:
                    os.rmdir(os.path.dirname(path))  # gradio gives each file a folder of its own
            except OSError:  # already gone, or the folder is not empty
                pass
            if not os.path.lexists(path):
                paths.discard(path)
    return removed


def start_cache_sweeper(demo: gr.Blocks, every: float, max_age: float) -> threading.Thread:
    """Sweep `demo`'s cache every `every` seconds in a daemon thread, and all of it at exit (or when demo is gone)."""
    ref = weakref.ref(demo)
    log = logging.getLogger("app")

    def loop():
        while (d := ref()) is not None:
            try:
                sweep_cache(d, max_age)
            except Exception:  # never let one bad sweep stop the next
                log.exception("cache sweep failed")
            del d
            time.sleep(every)

    atexit.register(lambda: (d := ref()) is not None and sweep_cache(d, None))
    thread = threading.Thread(target=loop, name="cache-sweeper", daemon=True)
    thread.start()
    return thread


def build_demo(chains: dict[str, Chain], status: dict[str, str], cache_age: float = 3600) -> gr.Blocks:
    """The UI over the loaded chains (one or both); `status` says which weights each uses.

    Images and downloads Gradio serves stay in its cache for `cache_age` seconds (swept every minute)."""
    order = [k for k in ("improved", "original") if k in chains]
    choices = order + (["both"] if len(order) == 2 else [])
    imp = chains.get("improved")
    root = Path(tempfile.mkdtemp(prefix="denoiser-chain-"))

    def generate(prompt: str, chain: str = choices[0], seed: str = "", steps=None, guidance=None, same_hand=False):
        try:
            if chain not in choices:
                raise InputError(f"The chain must be one of {', '.join(choices)}, got {chain!r}.")
            names, used = (order if chain == "both" else [chain]), parse_seed(seed)
            live = {k: chains[k].stream(prompt, used, *((steps, guidance) if k == "improved" else (None, None)),
                                        same_hand=bool(same_hand)) for k in names}  # fmt: skip
            gens: dict[str, Generation] = {}
            # The last run's results go once this one starts. Every frame gives a value to each output the last
            # frame fills: one left out is a prop update, and gradio 6 then keeps the component copy it made for
            # that in the session under a fresh id, one more every run (memory that grew with every call).
            clear = {scrub: gr.Slider(visible=False), info_md: "*Drawing…*", gallery_a: None, gallery_b: None,
                     files_a: None, files_b: None}  # fmt: skip
            while live:  # advance the chains in lockstep, one frame per step
                for k, it in list(live.items()):
                    gens[k] = next(it)
                    if gens[k].done:
                        del live[k]
                if live:
                    b = gens.get("original") if chain == "both" else None
                    yield {img_a: upscale(gens[names[0]].row, SCALE), img_b: b and upscale(b.row, SCALE), **clear}
        except ValueError as e:  # InputError, or a digit these weights have no chain for: say so, keep serving
            raise gr.Error(str(e), title="Check the input", print_exception=False) from None
        a, b = gens[names[0]], gens.get("original") if chain == "both" else None
        n = max(len(g.steps) for g in gens.values())
        nfe = chains["improved"].network_evals(steps, guidance) if "improved" in gens else None
        info = " · ".join(f"**{k}** chain, {len(g.steps) - 1} steps"
                          + (f" ({nfe} network passes per digit)" if k == "improved" else "")
                          for k, g in gens.items())  # fmt: skip
        yield {
            img_a: upscale(a.row, SCALE), img_b: b and upscale(b.row, SCALE),
            info_md: f"{info} · seed `{used}` (type it in Seed, same settings: same picture)",
            scrub: gr.Slider(0, n - 1, value=n - 1, step=1, visible=True),
            gallery_a: gallery(a), gallery_b: b and gallery(b), files_a: downloads(a, root, cache_age),
            files_b: b and downloads(b, root, cache_age), frames: {k: g.steps for k, g in gens.items()},
        }  # fmt: skip

    def show_step(i, state):
        if not state:
            return gr.skip(), gr.skip()

        def at(k):  # chains of different lengths scrub in proportion
            f = state[k]
            return upscale(f[round(i * (len(f) - 1) / max(1, n - 1))], SCALE)

        n = max(len(f) for f in state.values())
        ks = list(state)
        return at(ks[0]), at(ks[1]) if len(ks) > 1 else gr.skip()

    def on_chain(choice):
        tune, both = gr.update(visible=choice != "original"), gr.update(visible=choice == "both")
        return tune, tune, both, both, gr.Image(label="improved chain" if choice == "both" else f"{choice} chain")

    with gr.Blocks(title="Denoiser Chain") as demo:
        gr.Markdown("# Denoiser Chain\nType digits (`2024`, `two 0 2 four`) and watch a chain of denoisers draw them.")
        with gr.Row(equal_height=True):
            prompt = gr.Textbox(label="Prompt", placeholder="2024 or two 0 2 four", scale=4, elem_id="prompt")
            go = gr.Button("Generate", variant="primary", scale=1, elem_id="generate")
        gr.Examples(EXAMPLES, inputs=prompt)
        with gr.Row():
            chain_in = gr.Radio(choices, value=choices[0], label="Chain", visible=len(choices) > 1)
            seed_in = gr.Textbox(value="", label="Seed", placeholder="blank = random", elem_id="seed")
            tune = imp is not None  # steps and guidance exist for the improved chain only
            steps_in = gr.Slider(1, imp.max_steps if tune else 2, value=imp.default_steps if tune else 1, step=1,
                                 precision=0, label="Steps", visible=tune)  # fmt: skip
            gi = imp.guidance_interval if tune else None
            guide_in = gr.Slider(0, 5, value=imp.model.default_guidance if tune else 1.0, step=0.1, visible=tune,
                                 label="Guidance" + (f" (at noise σ {gi[0]:g}–{gi[1]:g})" if gi else ""))  # fmt: skip
            same_in = gr.Checkbox(value=False, label="Same hand (one noise for every digit)")
        with gr.Row():
            with gr.Column():
                img_a = gr.Image(type="pil", format="png", label=f"{choices[0]} chain",
                                 interactive=False, elem_id="row")  # fmt: skip
            with gr.Column(visible=False) as col_b:
                img_b = gr.Image(type="pil", format="png", label="original chain", interactive=False, elem_id="row-b")
        info_md = gr.Markdown(label="Run", elem_id="info")
        scrub = gr.Slider(0, 1, value=0, step=1, label="Scrub through the steps", visible=False, elem_id="scrub")
        tiles = dict(columns=4, format="png", object_fit="contain", height="auto")  # two (sees, guesses) pairs a line
        with gr.Row():
            with gr.Column():
                gallery_a = gr.Gallery(label="Every step", **tiles)
                files_a = gr.File(label="Downloads: PNG and animated GIF", file_count="multiple")
            with gr.Column(visible=False) as col_b2:
                gallery_b = gr.Gallery(label="Every step (original)", **tiles)
                files_b = gr.File(label="Downloads (original)", file_count="multiple")
        frames = gr.State(None)
        gr.Markdown(ABOUT)
        gr.Markdown("**Weights in use:** " + "; ".join(f"{k}: {v}" for k, v in status.items()), elem_id="status")

        # preprocess=False: raw values reach the chain, whose checks word every bad input as one sentence.
        gr.on([go.click, prompt.submit], generate, [prompt, chain_in, seed_in, steps_in, guide_in, same_in],
              [img_a, img_b, info_md, scrub, gallery_a, gallery_b, files_a, files_b, frames],
              api_name="generate", preprocess=False)  # fmt: skip
        scrub.input(show_step, [scrub, frames], [img_a, img_b], api_visibility="private", show_progress="hidden")
        chain_in.change(on_chain, chain_in, [steps_in, guide_in, col_b, col_b2, img_a], api_visibility="private")
    # Gradio copies every image and download it serves into its cache: without a sweep the cache and its lists grow
    start_cache_sweeper(demo, every=min(60.0, max(1.0, cache_age / 2)), max_age=cache_age)
    return demo.queue(default_concurrency_limit=2, max_size=64)


def main(argv: list[str] | None = None) -> None:
    """Parse options, load the chains (Hub or bundled), serve the app."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model-repo", default=os.environ.get("MODEL_REPO"), help="improved weights: Hub id or directory")
    p.add_argument("--revision", default=os.environ.get("MODEL_REVISION"), help="revision of --model-repo")
    p.add_argument("--original-repo", default=os.environ.get("ORIGINAL_MODEL_REPO"), help="original weights")
    p.add_argument("--host", default=None, help="default: 0.0.0.0 on Spaces, else 127.0.0.1")
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--cache-age", type=float, default=float(os.environ.get("CACHE_AGE", 3600)),
                   help="seconds a served image or download stays in the cache (default 3600)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not every request gradio makes to itself
    chains, status = load_chains({"improved": (args.model_repo, args.revision), "original": (args.original_repo, None)})
    for name, text in status.items():
        logging.getLogger("app").info("%s chain: %s", name, text)
    if not chains:
        sys.exit("No chain can be served: " + "; ".join(f"{k}: {v}" for k, v in status.items()))
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))  # two requests at once share the cores
    host = args.host or ("0.0.0.0" if os.environ.get("SPACE_ID") else "127.0.0.1")
    build_demo(chains, status, args.cache_age).launch(server_name=host, server_port=args.port, ssr_mode=False, css=CSS)


if __name__ == "__main__":
    main()
