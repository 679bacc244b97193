"""Loading a chain from a local directory or the Hub, falling back to the bundled weights in time."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from .api import Chain, load_chain
from .errors import CheckpointError
from .io import download

log = logging.getLogger(__name__)


def _first_line(e: BaseException) -> str:
    """The first line of an error's message, or its type when it has none."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def call_with_deadline(fn, timeout: float):
    """Run fn() in a daemon thread; return its result, re-raise its error, or raise TimeoutError."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as e:  # handed to the caller's thread
            box["error"] = e

    # A daemon thread, not an executor: a stalled download must neither block the caller nor process exit.
    thread = threading.Thread(target=target, name="hub-load", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"no answer within {timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def load_with_fallback(
    name: str, repo_id: str | None = None, revision: str | None = None, timeout: float = 3.0, **hub_kwargs
) -> tuple[Chain, str]:
    """Load chain `name` from repo_id (a local directory or a Hub repo id), else the bundled weights; say which."""
    if not repo_id:
        return load_chain(name), "bundled weights"
    if Path(repo_id).expanduser().is_dir():
        where = f"directory {repo_id}"
        try:
            return load_chain(name, source=repo_id), f"weights from {where}"
        except Exception as e:
            reason = f"unusable: {_first_line(e)}"
    else:
        label = repo_id + (f"@{revision}" if revision else "")
        where = f"Hub repo {label}"
        hub_kwargs.setdefault("etag_timeout", timeout)  # a download that missed the deadline gives up sooner
        try:
            # Only the download runs in the deadline thread; loading stays here, so nothing is left half-done.
            folder = call_with_deadline(lambda: download(repo_id, revision, **hub_kwargs), timeout)
            chain = load_chain(name, source=folder)
            chain.source = label
            return chain, f"weights from {where}"
        except TimeoutError as e:
            reason = f"unreachable: {e}"
        except Exception as e:
            reason = f"unusable: {_first_line(e)}"
    log.warning("%s chain: cannot use %s (%s); falling back to the bundled weights.", name, where, reason)
    try:
        chain = load_chain(name)
    except CheckpointError as e:
        raise CheckpointError(f"{where} {reason}, and no bundled weights either: {e}") from e
    return chain, f"bundled weights ({where} {reason})"


def load_chains(
    sources: dict[str, tuple[str | None, str | None]], timeout: float = 3.0
) -> tuple[dict[str, Chain], dict[str, str]]:
    """Load each named chain from its (repo_id, revision), in parallel; unloadable ones only get a status."""
    results: dict[str, tuple[Chain | None, str]] = {}

    def one(name: str, repo_id: str | None, revision: str | None) -> None:
        try:
            results[name] = load_with_fallback(name, repo_id, revision, timeout)
        except Exception as e:  # this chain is out; the app serves the others
            log.warning("%s chain not available: %s", name, _first_line(e))
            results[name] = None, f"not available ({_first_line(e)})"

    threads = [threading.Thread(target=one, args=(k, *v), daemon=True) for k, v in sources.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()  # each returns within its deadline plus a local load
    chains = {k: c for k, (c, _) in results.items() if c is not None}
    return chains, {k: results[k][1] for k in sources}
