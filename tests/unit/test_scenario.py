"""Scenario files of `ops simulate` (ops/scenario.py): what they may say, and the examples."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from ops.scenario import Scenario

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "ops" / "scenarios").glob("*.json"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_scenario_loads_and_moves_members_between_clubs(path):
    # When an example shipped in ops/scenarios is read
    scenario = Scenario.load(path)
    # Then it scripts members' club changes, with dates
    assert scenario.club_changes
    assert all(isinstance(move["day"], date) for move in scenario.club_changes)


def test_a_club_change_names_its_target_club_and_when():
    # When a scenario moves members to club 2 at the next period and by name "now"
    scenario = Scenario.from_dict(
        {
            "club_changes": [
                {"day": "2027-01-12", "count": 3, "to_club": 2},
                {"day": "2027-01-13", "to_club": "Simulated club 1", "when": "now"},
            ],
            "releases": ["2027-01-04"],
        }
    )
    # Then the days are dates
    assert [move["day"] for move in scenario.club_changes] == [date(2027, 1, 12), date(2027, 1, 13)]
    assert scenario.releases == [date(2027, 1, 4)]


@pytest.mark.parametrize(
    "move",
    [
        # The shape club status changes had before they were called club_statuses.
        {"day": "2027-01-10", "club_id": 1, "status": "closed"},
        {"day": "2027-01-10", "count": 3},
        {"day": "2027-01-10", "to_club": 2, "when": "tomorrow"},
        {"day": "2027-01-10", "to_club": 2.5},
    ],
)
def test_a_club_change_without_a_usable_target_or_when_is_refused(move):
    # When a scenario's club change says no target, a bad one, or an unknown when
    # Then it is refused before anything runs, saying what a club change is
    with pytest.raises(ValueError, match="club"):
        Scenario.from_dict({"club_changes": [move]})
