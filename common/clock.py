"""The clock: the only source of "now" (naive UTC, as the approved columns store it)."""

from collections.abc import Callable
from datetime import UTC, datetime


def _system_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


_source: Callable[[], datetime] = _system_now


def now() -> datetime:
    return _source()


def set_source(source: Callable[[], datetime] | None) -> None:
    """Tests pin the clock here instead of sleeping; None restores the system clock."""
    global _source
    _source = source or _system_now
