"""Members' club changes in a forecast (docs/club-changes.md).

A change is two history rows at its instant (CANCELLED on the subscription left, ACTIVE
on the one joined), so the run's plan at a later instant already holds its money: the
target subscription is eligible and its first period planned like any other, the old
one is not eligible and planned nothing. The forecast adds no decision of its own; it
names what the plan does because of a change:

- the target's line for its first period says `club change from club N (...)`, and the
  summary counts it under `club change: joins` for the target club and SKU; when the
  plan has no line for that period (already charged, say, for a reactivated member) a
  `club change: joins` line says why nothing is charged;
- the old subscription gets a `club change: leaves` line, for the period its club does
  not charge, naming the unpaid periods the run's sweep will abandon (cancelling nobody).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from domain.charges import ChargeState
from domain.forecast_model import FROM_CLUB, JOINS, LEAVES, ClubChangeTaking, Line


def label(line: Line, change: ClubChangeTaking) -> Line:
    """The target subscription's line: its first period charged because of the change."""
    if line.period != change.first_period() or line.subscription_id != (
        change.target_subscription_id
    ):
        return line
    how = "reactivated" if change.reactivated else "new"
    reason = (
        f"{FROM_CLUB}{change.club_id} ({how} subscription, club change {change.id}"
        f" at {change.effective_at:%Y-%m-%d %H:%M})"
    )
    return replace(line, reason=reason)


def _not_charged(settled: ChargeState | str | None) -> str:
    if settled == ChargeState.SUCCEEDED:
        return "its first period is already charged"
    if settled == "in flight":
        return "a charge of its first period is in flight"
    if settled is None:
        return "the run does not charge it (not eligible at the instant)"
    return f"its first period is {settled}"


def lines(
    changes: Iterable[ClubChangeTaking],
    planned: set[tuple[str, str]],
    settled: dict[str, ChargeState | str | None],
) -> list[Line]:
    """The lines a forecast adds for members' club changes, beside the plan's own.

    `planned`: the (subscription, period) the plan has a line for; `settled`: for target
    subscriptions the plan looked at without a message, how their period stands."""
    added: list[Line] = []
    for change in changes:
        first = change.first_period()
        target = change.target_subscription_id
        if (target, first) not in planned:
            why = _not_charged(settled.get(target))
            added.append(
                Line(
                    target,
                    change.target_club_id,
                    change.target_sku,
                    first,
                    JOINS,
                    reason=f"from club {change.club_id} (club change {change.id}): {why}",
                )
            )
        left = change.left_period()
        if (change.subscription_id, left) in planned:
            continue  # the plan still acts on it: its own line says what
        reason = (
            f"to club {change.target_club_id} (subscription {target}) at"
            f" {change.effective_at:%Y-%m-%d %H:%M}: {left} not charged here"
        )
        if change.unrecorded and change.unpaid:
            reason += f"; unpaid {', '.join(change.unpaid)} abandoned, nobody cancelled"
        added.append(
            Line(change.subscription_id, change.club_id, change.sku, left, LEAVES, reason=reason)
        )
    return added
