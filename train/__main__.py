"""Command line: python -m train {original,improved,evaluate,classifier,bench,push} ..."""

from __future__ import annotations

import argparse
import sys


def parse_digits(text: str) -> list[int] | None:
    if text.lower() == "none":
        return None
    if not text or not text.isdigit() or len(set(text)) != len(text):
        raise SystemExit(f"--digits must be distinct digits like 0123456789, or none; got {text!r}.")
    return [int(c) for c in text]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp, default_out):
        sp.add_argument("--preset", default="cpu", help="faithful (GPU), cpu, or smoke")
        sp.add_argument("--data-root", default="data", help="folder holding MNIST/raw (downloaded there if missing)")
        sp.add_argument("--out", default=default_out, help="run directory")
        sp.add_argument("--resume", action="store_true", help="continue the run in --out")
        sp.add_argument("--device", default="auto", help="auto, cpu or cuda")
        sp.add_argument("--no-download", action="store_true", help="never try to download MNIST")
        sp.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config fields")

    o = sub.add_parser("original", help="the author's five-stage recipe")
    common(o, "runs/original")
    o.add_argument(
        "--digits", default="0123456789", help="digits to train chains for, or none (one unconditional chain)"
    )
    o.add_argument("--stage", default="all", choices=["1", "2", "3", "4", "5", "all"])

    im = sub.add_parser("improved", help="the improved chain (denoising + adversarial stage)")
    common(im, "runs/improved")
    im.add_argument("--stage", default="all", choices=["denoise", "adversarial", "all"])

    ev = sub.add_parser("evaluate", help="accuracy, FID (with its floor) and diversity of a chain")
    ev.add_argument("--chain", default="improved", help="improved or original")
    ev.add_argument("--source", default=None, help="weights directory or Hub id (default: bundled)")
    ev.add_argument("--per-digit", type=int, default=500)
    ev.add_argument("--steps", type=int, default=None)
    ev.add_argument("--guidance", type=float, default=None)
    ev.add_argument("--eta", type=float, default=None, help="improved: 1 = fresh noise each step, 0 = deterministic")
    ev.add_argument("--order", type=int, default=None, help="improved: 1 = DDPM/DDIM steps, 2 = DPM-Solver++(2M)")
    ev.add_argument("--guidance-interval", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                    help="improved: guide only at noise levels sigma in [LO, HI]")
    ev.add_argument("--fp32", action="store_true", help="improved: no bf16 network passes even where the CPU has them")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--data-root", default="data")
    ev.add_argument("--no-timing", action="store_true", help="skip timing generate('0123456789')")
    ev.add_argument("--out", default=None, help="JSON path (default: docs/eval/<chain>[-stepsK].json)")

    sw = sub.add_parser("sweep", help="score many sampler settings of one set of improved weights (no timing)")
    sw.add_argument("settings", help="JSON list of settings, e.g. docs/eval/sweep/settings.json")
    sw.add_argument("--source", default=None, help="improved weights (default: bundled)")
    sw.add_argument("--guide", default=None, help="a weaker net's weights, for autoguidance settings (auto_g)")
    sw.add_argument("--per-digit", type=int, default=200)
    sw.add_argument("--seed", type=int, default=0)
    sw.add_argument("--data-root", default="data")
    sw.add_argument("--out", default=None, help="append one JSON line per setting here")

    rp = sub.add_parser("report", help="print the results table from evaluation JSON files")
    rp.add_argument("--dir", default="docs/eval")

    cl = sub.add_parser("classifier", help="train the evaluation classifier (assets/classifier)")
    cl.add_argument("--data-root", default="data")
    cl.add_argument("--epochs", type=int, default=10)
    cl.add_argument("--out", default=None)

    be = sub.add_parser("bench", help="CPU latency of generate('0123456789'), median and p95")
    be.add_argument("--chain", default="improved")
    be.add_argument("--steps", type=int, nargs="*", default=None)
    be.add_argument("--repeat", type=int, default=50)
    be.add_argument("--source", default=None)
    be.add_argument("--fp32", action="store_true", help="improved: no bf16 network passes")
    be.add_argument("--widths", type=int, nargs="*", default=None, help="time untrained improved nets of these widths")

    pu = sub.add_parser("push", help="publish trained weights to the Hugging Face Hub with a model card")
    pu.add_argument("--chain", default="improved")
    pu.add_argument("--source", default=None, help="weights directory (default: bundled)")
    pu.add_argument("--repo-id", required=True)
    pu.add_argument("--private", action="store_true")

    args = p.parse_args(argv)
    _interrupt_on_signals()
    try:
        return run(args)
    except KeyboardInterrupt:
        print("\nInterrupted: progress is saved; rerun the same command with --resume to continue.", file=sys.stderr)
        return 130
    except Exception as e:
        from model.errors import CheckpointError, InputError

        from .data import DataError
        from .loop import ResumeError

        if isinstance(e, (DataError, ResumeError, CheckpointError, InputError)):
            print(f"error: {e}", file=sys.stderr)
            return 2
        if isinstance(e, OSError) and e.errno == 28:
            print(f"error: the disk is full ({e}); free space and rerun with --resume.", file=sys.stderr)
            return 2
        raise


def _interrupt_on_signals() -> None:
    """Ctrl-C and `kill` (SIGTERM) both stop training the same way: save state, then exit."""
    import signal

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in the background
    signal.signal(signal.SIGTERM, stop)


def run(args) -> int:
    if args.cmd == "original":
        from .config import make_config
        from .loop import pick_device
        from .original import train_original

        cfg = make_config("original", args.preset, args.set)
        train_original(cfg, parse_digits(args.digits), args.data_root, args.out, args.stage, args.resume,
                       pick_device(args.device), download=not args.no_download)  # fmt: skip
    elif args.cmd == "improved":
        from .config import make_config
        from .improved import train_improved
        from .loop import pick_device

        cfg = make_config("improved", args.preset, args.set)
        train_improved(cfg, args.data_root, args.out, args.stage, args.resume, pick_device(args.device),
                       download=not args.no_download)  # fmt: skip
    elif args.cmd == "evaluate":
        from .evaluate import evaluate_cli

        evaluate_cli(args)
    elif args.cmd == "sweep":
        from .sweep import sweep_cli

        return sweep_cli(args)
    elif args.cmd == "report":
        from .evaluate import report

        report(args.dir)
    elif args.cmd == "classifier":
        from .classifier import train_classifier

        train_classifier(args.data_root, args.epochs, args.out)
    elif args.cmd == "bench":
        from .bench import bench

        bench(args.chain, args.steps, args.repeat, args.source, args.widths, fp32=args.fp32)
    elif args.cmd == "push":
        from .push import push

        push(args.chain, args.source, args.repo_id, args.private)
    return 0


if __name__ == "__main__":
    sys.exit(main())
