"""The cache-state benchmark's verdicts (bench/cache_states.py): a missed goal fails the
run. No timing is asserted here."""

from __future__ import annotations

from bench import cache_states, report


def state(name: str, pages: float, first: float, settings: str = "tuned") -> dict:
    reference = 2.0
    return {
        "state": name,
        "settings": settings,
        "rounds": 5,
        "pages_s": pages,
        "first_page_s": first,
        "reference_s": reference,
        "pages_ratio": pages / reference,
        "first_ratio": first / reference,
        "correct": True,
        "backlog": None if name == "loaded" else 0,
    }


def result(**changes) -> dict:
    listing = {
        "since_write_s": 1.0,
        "pages_s": 1.0,
        "first_page_s": 0.05,
        "reference_s": 2.0,
        "correct": True,
    }
    base = {
        "size": 1_000_000,
        "cloned_s": 10.0,
        "bulk_rows": 100_000,
        "loaded_to_steady_s": 40.0,
        "states": [
            state("loaded", 2.2, 0.05),
            state("steady", 0.5, 0.02),
            state("bulk", 2.0, 0.06),
            state("partly", 1.5, 0.05),
            state("steady after the bulk write", 0.6, 0.02),
        ],
        "series": {"rows": 100_000, "steady_after_s": 30.0, "listings": [listing] * 3},
        "triggers": {
            "rows": 1_000_000,
            "with_s": 10.5,
            "without_s": 10.0,
            "overhead": 0.05,
            "all": {"with_s": [10.5], "without_s": [10.0]},
        },
    }
    return base | changes


def test_every_goal_passes_when_every_state_meets_it():
    text, goals = cache_states.markdown(result(), report.verdict)
    assert goals
    assert all(goals.values())
    assert "| loaded | tuned | 5 |" in text
    assert "back to steady 30.0 s after the write's commit" in text


def test_each_missed_goal_fails_the_run():
    slow_loaded = result()
    slow_loaded["states"][0] = state("loaded", 2.4, 0.05)  # 1.2 x the reference
    slow_first = result()
    slow_first["states"][2] = state("bulk", 2.0, 0.11)  # first page 0.055
    unsteady = result()
    unsteady["states"][1] = state("steady", 0.7, 0.02)  # 0.35 of the reference
    late = result(series={"rows": 1, "steady_after_s": 61.0, "listings": []})
    never = result(series={"rows": 1, "steady_after_s": None, "listings": []})
    costly = result()
    costly["triggers"] = costly["triggers"] | {"overhead": 0.3}
    wrong = result()
    wrong["states"][3] = wrong["states"][3] | {"correct": False}
    for case in (slow_loaded, slow_first, unsteady, late, never, costly, wrong):
        _, goals = cache_states.markdown(case, report.verdict)
        assert [goal for goal, passed in goals.items() if not passed], case


def test_the_loaded_data_set_is_kept_from_autovacuum_and_its_copies_are_not(database_url):
    # (A data set reused from an earlier run would otherwise have been vacuumed since, and
    # `loaded` would measure tables no longer as just loaded.)
    def options() -> dict[str, list | None]:
        rows = cache_states._execute(
            database_url,
            "SELECT relname, reloptions FROM pg_class"
            " WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace",
        )
        return dict(rows)

    try:
        cache_states._autovacuum(database_url, enabled=False)
        off = options()
        assert {"subscription", "subscription_status_history", "club"} <= off.keys()
        assert all(o is not None and "autovacuum_enabled=false" in o for o in off.values()), off
    finally:
        cache_states._autovacuum(database_url, enabled=True)
    # Other storage parameters are kept
    assert all(o is None or "autovacuum_enabled=false" not in o for o in options().values())
    assert "autovacuum_analyze_threshold=1000" in options()["subscription_status_dirty"]


def test_the_trigger_cost_is_measured_on_a_vacuumed_history_and_leaves_nothing(
    database_url, clean_db
):
    from tests import builders

    club = builders.club(clean_db)
    for _ in range(3):
        builders.subscription(clean_db, club)
    count = "SELECT count(*) FROM subscription_status_history"
    before = cache_states._execute(database_url, count)
    vacuums = (
        "SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'subscription_status_history'"
    )
    vacuumed = cache_states._execute(database_url, vacuums)[0][0]
    # When the two statements are measured (each after an untimed VACUUM)
    result = cache_states.trigger_overhead(database_url)
    # Then each wrote a row per subscription and was rolled back, the trigger back on
    assert result["rows"] == 3
    assert result["with_s"] > 0
    assert result["without_s"] > 0
    assert cache_states._execute(database_url, count) == before
    enabled = cache_states._execute(
        database_url,
        "SELECT tgenabled FROM pg_trigger"
        " WHERE tgname = 'trg_subscription_status_history_current_status_insert'",
    )
    assert enabled == [("O",)]
    assert cache_states._execute(database_url, vacuums)[0][0] == vacuumed + 2
