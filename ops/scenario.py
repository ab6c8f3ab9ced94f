"""What happens around the billing in a simulation, read from a JSON or YAML file."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any


@dataclass
class Scenario:
    """What happens around the billing, read from a JSON or YAML file (all optional)."""

    seed: int = 1
    # A new sandbox gets these before the first day (a copy of an empty database has none).
    clubs: int = 0
    subscriptions: int = 0
    decline_rate: float = 0.0  # each attempt refused by the platform (HTTP 422)
    payment_failure_rate: float = 0.0  # order accepted, its payment-outcome says failure
    outage_days: list[date] = field(default_factory=list)  # HTTP 500 all day
    late_webhook_rate: float = 0.0
    late_webhook_days: int = 2
    duplicate_webhook_rate: float = 0.0
    card_reports: list[dict[str, Any]] = field(default_factory=list)  # day, count, reason
    pauses: list[dict[str, Any]] = field(default_factory=list)  # day, count, days
    # A club's own status: day, club_id (an id or a name), status (active, closed, inactive).
    club_statuses: list[dict[str, Any]] = field(default_factory=list)
    # Members moving to another club: day, count, to_club, from_club (default any club;
    # ids or names), when (next_period, the default, or now).
    club_changes: list[dict[str, Any]] = field(default_factory=list)
    # Days an operator releases the cancellations the breaker holds.
    releases: list[date] = field(default_factory=list)

    @classmethod
    def load(cls, path: str | Path | None) -> Scenario:
        if path is None:
            return cls()
        raw = Path(path).read_text()
        if str(path).endswith((".yml", ".yaml")):
            import yaml

            data = yaml.safe_load(raw) or {}
        else:
            data = json.loads(raw)
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scenario:
        data = dict(data)
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown scenario field(s): {', '.join(unknown)}")
        for name in ("outage_days", "releases"):
            data[name] = [_day(d) for d in data.get(name, [])]
        for name in ("card_reports", "pauses", "club_statuses", "club_changes"):
            data[name] = [{**item, "day": _day(item["day"])} for item in data.get(name, [])]
        for move in data["club_changes"]:
            _check_move(move)
        for name in ("decline_rate", "payment_failure_rate", "late_webhook_rate"):
            value = data.get(name, 0.0)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        return cls(**data)


def _check_move(move: dict[str, Any]) -> None:
    if "status" in move or "club_id" in move:
        raise ValueError(
            "club_changes move members to another club ({day, count, to_club, from_club,"
            " when}); a club's own status change is club_statuses ({day, club_id, status})"
        )
    for name in ("to_club", "from_club"):
        value = move.get(name)
        if (value is not None or name == "to_club") and not isinstance(value, int | str):
            raise ValueError(f"a club change's {name} is a club id or name: {move}")
    if move.get("when", "next_period") not in ("next_period", "now"):
        raise ValueError(f"a club change's when is next_period or now: {move}")


def _day(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))
