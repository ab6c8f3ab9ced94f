"""The promo benchmark's report states each goal from the numbers (no timing here)."""

from __future__ import annotations

from bench import promos


def result(p50=3.0, p99=12.0, customers=60_000, seconds=0.2, one_created=1, many_held=1000):
    def run(requests, units, created, held):
        return {
            "requests": requests,
            "units": units,
            "threads": 50,
            "seconds": 1.0,
            "created": created,
            "refused_409": requests - created,
            "server_errors": 0,
            "other": 0,
            "units_held": held,
            "reservations": created,
            "p50_ms": 50.0,
            "p99_ms": 300.0,
            "points": [],
        }

    return {
        "profiles": 1_000_000,
        "stores": 200,
        "promos": 1000,
        "built_seconds": None,
        "eligible": {
            "calls": 1000,
            "p50_ms": p50,
            "p99_ms": p99,
            "query_p50_ms": p50,
            "query_p99_ms": p99,
            "promos_per_customer": 1.0,
        },
        "audience": {
            "customers": customers,
            "seconds": seconds,
            "per_second": customers / seconds,
            "full_scan_customers": customers,
            "full_scan_seconds": 1.0,
        },
        "one_unit": run(500, 1, one_created, one_created),
        "thousand_units": run(2000, 1000, many_held, many_held),
    }


def test_every_goal_passes_on_good_numbers():
    text, goals = promos.markdown(result())
    assert all(goals.values())
    assert "60,000 customers in 200 ms = 300,000/s" in "\n".join(text)


def test_each_goal_fails_on_its_own_bad_number():
    assert not promos.markdown(result(p50=10.5))[1][
        "17. promos: eligible p50 <= 10 ms at 1M profiles"
    ]
    assert not promos.markdown(result(p99=51))[1][
        "17. promos: eligible p99 <= 50 ms at 1M profiles"
    ]
    audience = "17. promos: 5 km audience >= 50,000 customers at >= 200,000/s"
    assert not promos.markdown(result(seconds=0.4))[1][audience]
    assert not promos.markdown(result(customers=49_000, seconds=0.1))[1][audience]
    one = "17. promos: one unit, 500 requests: 1 hold, 499 409s, no 5xx"
    assert not promos.markdown(result(one_created=2))[1][one]
    many = "17. promos: 1,000 units, 2,000 customers: exactly 1,000 holds, no 5xx"
    assert not promos.markdown(result(many_held=1001))[1][many]


def test_below_a_million_profiles_the_speed_goals_are_not_judged():
    small = {**result(p50=50), "profiles": 10_000}
    goals = promos.markdown(small)[1]
    assert goals["17. promos: eligible p50 <= 10 ms at 1M profiles"] is None
