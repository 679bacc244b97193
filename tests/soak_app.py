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
            if i % 100 == 0:
                marks[i] = rss_mb(proc.pid)
                print(f"after {i:>4} calls: RSS {marks[i]:.0f} MB")
            if i < args.calls:
                client.predict("0123456789", chain="both" if i % 2 else "improved", seed=str(i), api_name="/generate")
        print(f"RSS growth from call 100 to {args.calls}: {marks[args.calls] - marks[100]:+.0f} MB")
        return 0 if answered == 20 else 1
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    sys.exit(main())
