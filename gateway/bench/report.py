"""What every benchmark reports besides its own numbers: the headline over interleaved
rounds, the context the numbers were taken in, and progress lines while it runs.

Theory of operation
-------------------
A benchmark compares the gateway with a bare baseline doing the same job on the same load, in
one run, measured interleaved (baseline, ours, baseline, ours...) so that machine noise hits
both sides alike; the headline is the median of the per-round ratios (ours / baseline).
"""

import os
import platform
import sqlite3
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from gateway.bench.child import usable_cpus


def rate(done: int, seconds: float) -> float:
    return round(done / seconds, 1) if seconds > 0 else 0.0


def summarise(rounds: Sequence[Mapping[str, Any]], *, cpu_key: str) -> dict[str, Any]:
    """The headline numbers over all rounds.

    ``ratio`` is the median of the per-round rate ratios (ours / baseline). ``cpu_ratio`` is
    the median of baseline CPU per item / ours (``cpu_key``): the rate ratio the two would
    reach if each had a CPU to itself, which other load on the machine barely moves.
    """
    # CPU times tick in 10 ms steps: a tiny run may show none at all.
    cpu_ratios = [r["baseline"][cpu_key] / r["ours"][cpu_key] for r in rounds if r["ours"][cpu_key]]
    out: dict[str, Any] = {
        "ratio": round(statistics.median(r["ratio"] for r in rounds), 3),
        "cpu_ratio": round(statistics.median(cpu_ratios), 3) if cpu_ratios else None,
    }
    for side in ("ours", "baseline"):
        out[side] = {
            "rate_per_s": round(statistics.median(r[side]["rate_per_s"] for r in rounds), 1),
            cpu_key: round(statistics.median(r[side][cpu_key] for r in rounds), 3),
            "peak_rss_mb": max(r[side]["peak_rss_mb"] for r in rounds),
            "seconds": [r[side]["seconds"] for r in rounds],
        }
    return out


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages: other work on the machine skews every number."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else []


def context(
    *, database: str, pinning: Mapping[str, int | None], load_at_start: Sequence[float]
) -> dict[str, Any]:
    """Where the numbers come from: interpreter, machine, libraries, database, CPU pinning,
    and how busy the machine was."""
    return {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(usable_cpus()),
        "cpu_pinning": dict(pinning),
        "aiohttp": aiohttp.__version__,
        "sqlite": sqlite3.sqlite_version,
        "database": database,
        "load_average_at_start": list(load_at_start),
        "load_average_at_end": load_average(),
    }


class Progress:
    """Progress lines on stderr, only when asked for: stdout carries the JSON alone."""

    def __init__(self, enabled: bool, name: str) -> None:
        self._enabled = enabled
        self._name = name
        self._t0 = time.perf_counter()

    def __call__(self, message: str) -> None:
        if self._enabled:
            elapsed = time.perf_counter() - self._t0
            sys.stderr.write(f"[{self._name} {elapsed:6.1f}s] {message}\n")
            sys.stderr.flush()


__all__ = ["Progress", "context", "load_average", "rate", "summarise"]
