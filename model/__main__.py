"""Command line: python -m model sample --chain improved --prompt 2024 --repeat 4 --out rows.png"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sample", help="draw a prompt; write .npz (images, labels), .png rows or .gif steps")
    s.add_argument("--chain", default="improved", help="improved (default) or original")
    s.add_argument("--source", default=None, help="weights directory or Hub repo id (default: bundled)")
    s.add_argument("--prompt", required=True, help='digits or words, e.g. 2024 or "two zero"')
    s.add_argument("--repeat", type=int, default=1, help="how many times to draw the prompt")
    s.add_argument("--seed", type=int, default=None, help="seed for reproducible output (default: random)")
    s.add_argument("--steps", type=int, default=None, help="improved: steps of the chain (1 ... K)")
    s.add_argument("--guidance", type=float, default=None, help="improved: classifier-free guidance weight")
    s.add_argument("--eta", type=float, default=None, help="improved: noise per step, 1 = fresh, 0 = deterministic")
    s.add_argument("--order", type=int, default=None, help="improved: solver order, 1 or 2 (default: the weights')")
    s.add_argument("--same-hand", action="store_true", help="one starting noise for all digits of a row")
    s.add_argument("--out", default="samples.npz", help=".npz, .png (rows) or .gif (steps of the first row)")
    args = p.parse_args(argv)

    from .api import load_chain
    from .errors import CheckpointError, InputError
    from .render import save_gif, save_png

    try:
        if args.repeat < 1:
            raise InputError(f"--repeat must be at least 1, got {args.repeat}.")
        out = Path(args.out)
        if out.suffix not in (".npz", ".png", ".gif"):
            raise InputError(f"--out must end in .npz, .png or .gif, got {out.name!r}.")
        chain = load_chain(args.chain, source=args.source)
        if args.eta is not None or args.order is not None:
            if chain.name != "improved":
                raise InputError("--eta and --order apply to the improved chain only.")
            chain.configure(args.eta, args.order)
        kw = dict(seed=args.seed, steps=args.steps, guidance=args.guidance, same_hand=args.same_hand)
        if out.suffix == ".npz":
            from .prompt import parse_prompt

            digits = parse_prompt(args.prompt)
            labels = np.array([d for d in digits for _ in range(args.repeat)])
            images = chain.sample(labels.tolist(), **kw)
            out.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(out, images=images, labels=labels)
            print(f"wrote {out}: {len(labels)} images of {args.prompt!r} ({chain.name} chain)")
            return 0
        base = chain.generate(args.prompt, **kw)
        gens = [base] + [chain.generate(args.prompt, **{**kw, "seed": base.seed + i}) for i in range(1, args.repeat)]
        if out.suffix == ".png":
            save_png(np.concatenate([g.row for g in gens]), out, factor=2)
        else:
            save_gif(base.steps, out)
        print(f"wrote {out} ({chain.name} chain, seed {base.seed})")
        return 0
    except (InputError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
