"""The scheduled absorber: folds the marks of bulk writes into the current-status cache.

Requests absorb only small backlogs (revision 0008); this runs every minute in the cloud
(handlers/absorb_status.py) and in a loop under `make run` (scripts/absorb_status.py),
and keeps working for up to `budget` seconds: it takes the marks in slices of `slice_`
subscriptions, each its own short transaction (readers see the backlog shrink and move
from the plain rule back to the cache), or rebuilds the whole cache when most of it is
marked. Each slice is followed at once by a VACUUM of the cache, so that its pages are
all-visible again and the eligible pages stay index-only scans while the backlog is being
absorbed, not only once it is gone: a slice's rows lie on pages all over the cache, and
without it half a backlog absorbed left pages that visited the heap for every row (1.2 to
1.5 times the plain rule at a million). It waits `poll` seconds when there is nothing to do.

Writers never wait for it: it locks only the absorber's own row (skipping when another
absorber holds it) and writes only the cache tables; VACUUM takes no lock a writer needs.
Only for speed: readers are exact whatever state it leaves, so failures are logged.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from common.observability import logger

SLICE = 20_000  # subscriptions per transaction: about half a second at a million
# Above this share of the cache marked (or after a TRUNCATE), one rebuild is cheaper than
# slices (a rebuild at a million subscriptions: about 20 s; slices: about 25 us a mark).
REBUILD_SHARE = 0.4
# VACUUM (ANALYZE) once this many cache rows were rewritten since the last one (by us, or
# dead tuples left by anyone else, such as an operator's rebuild): rewritten pages are not
# all-visible, and index-only scans then visit the heap for each of their rows. A slice's
# own VACUUM (no ANALYZE) follows it at once: about 0.02 s after a few rows, 0.3 s after
# 20,000 at a million.
VACUUM_AFTER = 10_000
STATS_LAG = 10.0
# club_write is emptied (leaving one row) when it holds more rows than this.
CLUB_WRITES_KEPT = 1_000
# Rebuilds and slices can outlast the API's statement timeout.
STATEMENT_TIMEOUT = "10min"


@dataclass
class Summary:
    absorbed: int = 0
    slices: int = 0
    rebuilds: int = 0
    vacuums: int = 0
    busy: int = 0
    errors: int = 0
    seconds: float = 0.0
    last_backlog: int | None = field(default=0)

    def as_dict(self) -> dict:
        return self.__dict__.copy()


class Absorber:
    def __init__(
        self,
        engine: Engine,
        *,
        slice_: int = SLICE,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.engine = engine
        self.slice = slice_
        self.monotonic = monotonic
        self.sleep = sleep
        self.written_since_vacuum = 0
        self.vacuumed_at = float("-inf")

    def state(self) -> tuple[int | None, int, int]:
        """(marks waiting or None for everything, cache rows, dead cache rows)."""
        count_up_to = int(self.slice / REBUILD_SHARE) + 1
        with self.engine.connect() as conn:
            backlog, rows, dead = conn.execute(_STATE, {"count_up_to": count_up_to}).one()
            if backlog is not None and backlog > self.slice and rows == count_up_to:
                count_up_to = int(backlog / REBUILD_SHARE) + 1
                rows = conn.execute(_STATE, {"count_up_to": count_up_to}).one()[1]
        return backlog, int(rows or 0), int(dead or 0)

    def step(self) -> tuple[str, int]:
        """One unit of work: ("rebuild"|"slice"|"vacuum"|"idle"|"busy", rows written)."""
        backlog, rows, dead = self.state()
        if backlog is None or (backlog > self.slice and backlog > REBUILD_SHARE * rows):
            written = self._write("SELECT subscription_current_status_rebuild_skip_locked()")
            if written < 0:
                return "busy", 0
            self.written_since_vacuum += written + max(rows, 0)
            self._analyze_history()
            return "rebuild", written
        written = self._write("SELECT subscription_current_status_absorb(:batch)")
        if written < 0:
            return "busy", 0
        if written > 0:
            self.written_since_vacuum += written
            try:
                # Its statistics wait for the VACUUM (ANALYZE) once the backlog is gone.
                self._vacuum("VACUUM subscription_current_status")
            except DBAPIError:  # the slice is written; the idle step's VACUUM comes later
                logger.warning("could not vacuum the cache after a slice", exc_info=True)
            return "slice", written
        # The statistics' dead rows lag up to a second behind the writers that left them.
        recent = self.monotonic() - self.vacuumed_at < STATS_LAG
        if self.written_since_vacuum >= VACUUM_AFTER or (dead >= VACUUM_AFTER and not recent):
            self.vacuum()
            return "vacuum", 0
        self._prune_club_writes()
        return "idle", 0

    def _write(self, sql: str) -> int:
        with self.engine.begin() as conn:
            conn.execute(text(f"SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT}'"))
            return int(conn.scalar(text(sql), {"batch": self.slice}))

    def _prune_club_writes(self) -> None:
        """Empty club_write once it holds more than CLUB_WRITES_KEPT rows (revision 0015; one
        per statement that wrote club or club_status_history). What every container read of
        the clubs (eligible's guess, GET /clubs' list) is read again once after it."""
        with self.engine.begin() as conn:
            pruned = conn.scalar(_PRUNE_CLUB_WRITES, {"keep": CLUB_WRITES_KEPT})
        if pruned:
            logger.info("club writes pruned", rows=pruned)

    def _analyze_history(self) -> None:
        """After a rebuild (a bulk load, a TRUNCATE): the tables the plain rule reads get
        their statistics and visibility map, which autovacuum may not have built yet
        (without them, its index-only scans visit the heap for every history row)."""
        try:
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.execute(text(f"SET statement_timeout = '{STATEMENT_TIMEOUT}'"))
                c.execute(text("VACUUM (ANALYZE) subscription, subscription_status_history"))
        except DBAPIError:
            logger.warning("could not analyze the history after a rebuild", exc_info=True)

    def vacuum(self) -> None:
        self._vacuum("VACUUM (ANALYZE) subscription_current_status")
        self.written_since_vacuum = 0
        self.vacuumed_at = self.monotonic()

    def _vacuum(self, cache: str) -> None:
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f"SET statement_timeout = '{STATEMENT_TIMEOUT}'"))
            conn.execute(text(cache))
            conn.execute(text("VACUUM subscription_status_dirty"))

    def run(self, budget: float, poll: float = 2.0) -> Summary:
        """Work for up to `budget` seconds (a step under way finishes), idling `poll` s."""
        started = self.monotonic()
        summary = Summary()
        while True:
            try:
                kind, written = self.step()
            except DBAPIError:
                logger.warning("current-status absorber step failed", exc_info=True)
                summary.errors += 1
                kind, written = "error", 0
            summary.absorbed += written
            summary.slices += kind == "slice"
            summary.rebuilds += kind == "rebuild"
            summary.vacuums += kind == "vacuum"
            summary.busy += kind == "busy"
            if kind in ("rebuild", "vacuum"):
                logger.info("current-status cache " + kind, written=written)
            left = budget - (self.monotonic() - started)
            if kind in ("slice", "rebuild", "vacuum") and left > 0:
                continue
            if left <= poll:
                break
            self.sleep(poll)
        summary.seconds = self.monotonic() - started
        summary.last_backlog = self.state()[0]
        return summary


_STATE = text(
    "SELECT subscription_current_status_backlog(),"
    # The cache's rows, counted only as far as the rebuild decision needs.
    " (SELECT count(*) FROM (SELECT 1 FROM subscription_current_status"
    "  LIMIT :count_up_to) counted),"
    " (SELECT n_dead_tup FROM pg_stat_user_tables"
    "  WHERE relid = 'subscription_current_status'::regclass)"
)
_PRUNE_CLUB_WRITES = text("SELECT club_write_prune(:keep)")
