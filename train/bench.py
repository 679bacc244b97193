"""CPU latency of drawing "0123456789" with every step returned: median and p95 over repeats."""

from __future__ import annotations

import time

import numpy as np
import torch


def time_generate(chain, prompt: str, repeat: int, **kw) -> tuple[float, float]:
    """(median ms, p95 ms) of chain.generate(prompt, ...), after two warm-up calls."""
    for _ in range(2):
        chain.generate(prompt, seed=0, **kw)
    times = []
    for i in range(repeat):
        t = time.perf_counter()
        chain.generate(prompt, seed=i, **kw)
        times.append((time.perf_counter() - t) * 1000)
    return float(np.median(times)), float(np.percentile(times, 95))


def bench_widths(widths: list[int], steps_list: list[int] | None, repeat: int, fp32: bool = False) -> list[dict]:
    """Latency of freshly initialised improved chains of each width (speed does not depend on training)."""
    from model.api import ImprovedChainAPI
    from model.improved import ImprovedChain

    rows = []
    for ch in widths:
        chain = ImprovedChainAPI(ImprovedChain(ch=ch).eval(), f"untrained ch={ch}", bf16=False if fp32 else None)
        n = sum(p.numel() for p in chain.model.parameters())
        for steps in steps_list or [2, 4, 8]:
            med, p95 = time_generate(chain, "0123456789", repeat, steps=steps)
            rows.append({"ch": ch, "params": n, "steps": steps, "median_ms": med, "p95_ms": p95})
            print(f"  ch {ch:>3} ({n / 1e6:.2f} M params), steps {steps:>2}: median {med:7.1f} ms   p95 {p95:7.1f} ms")
    return rows


def bench(
    name: str, steps_list: list[int] | None, repeat: int = 50, source=None, widths=None, fp32: bool = False
) -> list[dict]:
    from model import load_chain

    if widths:
        return bench_widths(widths, steps_list, repeat, fp32)
    chain = load_chain(name, source=source)
    if fp32 and chain.name == "improved":
        chain.configure(bf16=False)
    precision = "bf16" if getattr(chain, "bf16", False) else "fp32"
    threads = torch.get_num_threads()
    print(f"{chain.name} chain ({chain.source}), torch {torch.__version__}, {threads} threads, {precision}")
    steps_list = steps_list or (
        [chain.default_steps] if chain.name == "original" else sorted({1, 2, 4, chain.default_steps, chain.max_steps})
    )
    rows = []
    for steps in steps_list:
        kw = {} if chain.name == "original" else {"steps": steps}
        med, p95 = time_generate(chain, "0123456789", repeat, **kw)
        rows.append({"steps": steps, "median_ms": med, "p95_ms": p95})
        print(f"  steps {steps:>2}: median {med:7.1f} ms   p95 {p95:7.1f} ms   ({repeat} runs, prompt 0123456789)")
    return rows
