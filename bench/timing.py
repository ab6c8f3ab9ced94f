"""Medians of repeated runs, each measurement next to its baseline."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any


def median_seconds(fn: Callable[[], Any], repeat: int, warmup: int = 1) -> tuple[float, Any]:
    """Median wall time of `repeat` calls after `warmup` untimed ones; and the last result."""
    medians = interleaved_medians({"fn": fn}, repeat, warmup)
    return medians["fn"]


def interleaved_medians(
    fns: Mapping[str, Callable[[], Any]], repeat: int, warmup: int = 1
) -> dict[str, tuple[float, Any]]:
    """Per name: the median wall time of `repeat` calls and the last result.

    The calls take turns (a, b, c, a, b, c, ...) after `warmup` untimed rounds, so a busy
    moment on a shared machine slows a measurement and its baseline alike.
    """
    results: dict[str, Any] = {}
    times: dict[str, list[float]] = {name: [] for name in fns}
    for round_ in range(warmup + repeat):
        for name, fn in fns.items():
            started = time.perf_counter()
            results[name] = fn()
            if round_ >= warmup:
                times[name].append(time.perf_counter() - started)
    return {name: (statistics.median(times[name]), results[name]) for name in fns}
