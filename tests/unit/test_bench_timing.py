"""bench/timing.py: measurements take turns with their baselines."""

from __future__ import annotations

from types import SimpleNamespace

from bench.timing import interleaved_medians, median_seconds


def test_calls_take_turns_after_the_warmup_and_keep_each_last_result():
    calls = []

    def make(name):
        def fn():
            calls.append(name)
            return f"{name}{len(calls)}"

        return fn

    medians = interleaved_medians({"a": make("a"), "b": make("b")}, repeat=3, warmup=1)
    assert calls == ["a", "b"] * 4
    assert medians["a"][1] == "a7"
    assert medians["b"][1] == "b8"
    assert all(seconds >= 0 for seconds, _ in medians.values())


def test_the_median_is_of_the_timed_runs_only(monkeypatch):
    ticks = iter([0.0, 10.0, 11.0, 11.0, 13.0, 13.0, 16.0])
    monkeypatch.setattr("bench.timing.time", SimpleNamespace(perf_counter=lambda: next(ticks)))
    calls = []
    seconds, result = median_seconds(lambda: calls.append(1) or len(calls), repeat=3, warmup=1)
    # The warm-up call is not timed: the three timed runs took 1, 2 and 3 seconds
    assert seconds == 2.0
    assert result == 4
