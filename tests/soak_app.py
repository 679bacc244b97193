"""Load check of the real app (not a pytest test): start-up time, 20 parallel calls, memory over N calls.

    python tests/soak_app.py [--calls 500]

Launches app.py as a user would (bundled weights, 127.0.0.1, a free port), then talks to it with
gradio_client. Prints figures; exits non-zero if a call failed or went unanswered.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    import numpy as np

    x, y = np.array(points, dtype=float).T
    return float(np.polyfit(x, y, 1)[0])


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--calls", type=int, default=500)
    args = p.parse_args()
    from gradio_client import Client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        client = None
        while client is None and time.monotonic() - t0 < 120:
            try:
                url = f"http://127.0.0.1:{port}/"
                client = Client(url, verbose=False, analytics_enabled=False, download_files=False)
            except Exception:
                time.sleep(0.2)
        print(f"start-up to first answer: {time.monotonic() - t0:.1f} s, RSS {rss_mb(proc.pid):.0f} MB")
        client.predict("2024", api_name="/generate")

        with ThreadPoolExecutor(20) as pool:
            t = time.monotonic()
            futures = [pool.submit(client.predict, str(i) * 4, api_name="/generate") for i in range(20)]
            answered = sum(1 for f in futures if f.result(timeout=120) is not None)
        print(f"20 parallel calls: {answered}/20 answered in {time.monotonic() - t:.1f} s")

        marks = {}
        for i in range(args.calls + 1):
            if i % 50 == 0:
                marks[i] = rss_mb(proc.pid)
                print(f"after {i:>4} calls: RSS {marks[i]:.0f} MB", flush=True)
            if i < args.calls:
                client.predict("0123456789", chain="both" if i % 2 else "improved", seed=str(i), api_name="/generate")
        start = min(100, args.calls)
        print(f"RSS growth from call {start} to {args.calls}: {marks[args.calls] - marks[start]:+.0f} MB")
        tail = [(i, m) for i, m in marks.items() if i >= args.calls - 400 and i >= start]  # past the warm-up
        if len(tail) > 2:
            print(f"RSS trend over calls {tail[0][0]}-{args.calls}: {100 * slope(tail):+.1f} MB per 100 calls")
        return 0 if answered == 20 else 1
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    sys.exit(main())
