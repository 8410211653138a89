"""What every benchmark in tools/ shares: a report that moves to stderr under --json (so stdout stays one
JSON object), and medians of timed repeats after a warm-up."""

from __future__ import annotations

import gc
import sys
import time

import numpy as np

_REPORT = {"stream": sys.stdout}


def report_to_stderr() -> None:
    """Send `say` lines to stderr, for --json runs."""
    _REPORT["stream"] = sys.stderr


def say(text: str = "") -> None:
    """A line of the human-readable report."""
    print(text, file=_REPORT["stream"], flush=True)


def median_seconds(fn, repeats: int) -> float:
    """Median wall time of `fn` over `repeats` calls, after one warm-up call."""
    return alternating_medians([fn], repeats)[0]


def alternating_medians(fns: list, repeats: int) -> list[float]:
    """Median wall time of each of `fns`, called in turn `repeats` times after one warm-up round (taking
    turns, so that a change in the machine's load hits every measure alike). Each call starts after a full
    garbage collection, so that no call pays for the garbage another left (a 0.5 MB JSON parse once took
    0.15 s, collecting what the build before it had made)."""
    times = [[] for _ in fns]
    for round_ in range(repeats + 1):
        for fn, spent in zip(fns, times):
            gc.collect()
            start = time.perf_counter()
            fn()
            if round_:
                spent.append(time.perf_counter() - start)
    return [float(np.median(spent)) for spent in times]
