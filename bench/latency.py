"""Latency helpers shared by the benchmark scripts: time a call per item, report p50/p95."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any


def time_each(fn: Callable[[Any], Any], items: Iterable[Any]) -> list[float]:
    """Seconds of ``fn(item)`` for each item, in order."""
    times = []
    for item in items:
        t = time.perf_counter()
        fn(item)
        times.append(time.perf_counter() - t)
    return times


def p95(times: list[float]) -> float:
    """95th percentile (nearest rank below) of ``times``."""
    return sorted(times)[min(len(times) - 1, int(len(times) * 0.95))]


def describe(times: list[float]) -> str:
    """'p50 x ms, p95 y ms'."""
    p50 = sorted(times)[len(times) // 2]
    return f"p50 {p50 * 1000:.1f} ms, p95 {p95(times) * 1000:.1f} ms"
