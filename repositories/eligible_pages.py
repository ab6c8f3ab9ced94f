"""GET /subscription/eligible's pages: which of three read paths serves a page (the
current-status cache alone, the cache with the marked rows of the page's range computed
live, or the plain rule over the history), the statements of each, and the request's own
small absorption (docs/eligible-cache.md). The subscription repository's `eligible_ids`
delegates here; imported on first use, so the functions that never list eligible ids do
not build these statements at cold start."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from math import ceil, sqrt
from operator import itemgetter

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    DateTime,
    Integer,
    String,
    Text,
    and_,
    any_,
    bindparam,
    cast,
    func,
    literal,
    literal_column,
    or_,
    select,
    text,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Executable, Select

from common.observability import logger
from domain.model import SubscriptionStatus
from repositories import club_writes
from repositories.status_rule import (
    CURRENT_STATUS,
    DIRTY,
    SUBSCRIPTIONS,
    cached_status_holds,
    cached_status_stale,
    current_club_status,
    current_subscription_status,
)
from repositories.tables import Subscription as SubscriptionRow


def eligible_ids(
    connection: Connection,
    at: datetime,
    club_statuses: Iterable[int],
    after: str | None,
    limit: int | None,
) -> list[str]:
    """Ids of subscriptions ACTIVE at `at` in a club whose status is one of `club_statuses`,
    by id, after `after`, at most `limit` (GET /subscription/eligible; docs/eligible-cache.md)."""
    # Statements on one snapshot. The clubs are few: their statuses come first, live, so
    # the big query sees them as constants the planner can estimate (as a subquery they
    # are misjudged, and it then sorts every eligible id to return the first 10,000).
    # psycopg2 sends the level with BEGIN: no round trip of its own.
    if after is None:
        _absorb(connection)
    statuses = tuple(sorted(int(s) for s in club_statuses))
    ids = _cache_alone(connection, statuses, at, after, limit)
    if ids is not None:
        return ids
    # Set between transactions: before the first statement, or after the absorber's.
    conn = connection.execution_options(isolation_level="REPEATABLE READ")
    # The shipping clubs come back as an array's text and go back as it: a literal the
    # server reads at once (a Python list would be sent as ARRAY[...] of a thousand terms).
    shipping, backlog, outside, cache_rows, database, snapshot, next_change = conn.execute(
        _SHIPPING_AND_BACKLOG, {"at": at, "statuses": list(statuses), "cap": MIX_CAP}
    ).one()
    path = eligible_path(backlog, outside, cache_rows)
    if path == "cache":
        seen = club_writes.Seen(database, snapshot, at, next_change)
        _GUESSES.keep(connection, statuses, shipping, seen)
    else:
        _GUESSES.forget(connection, statuses)
    if shipping == "{}":
        return []
    params = {"at": at, "shipping": shipping, "after": after, "limit": limit}
    if path == "cache":
        # Nothing is marked or outside its interval in this snapshot: every cache row holds.
        return (_FRESH if after is None else _FRESH_AFTER).fetch(conn, params)
    if path == "rule":
        # A large backlog (a bulk write the scheduled absorber has not folded in yet):
        # the plain rule over the history, page by page, costs what the rule costs.
        return _rule_page(conn, params)
    cached_ids = (_CACHED if after is None else _CACHED_AFTER).fetch(conn, params)
    # Only the marked rows up to the cached page's last id can belong to this page.
    upper = cached_ids[-1] if limit is not None and len(cached_ids) == limit else None
    live_ids = (_LIVE if outside else _LIVE_MARKS).fetch(conn, params | {"upper": upper})
    if not live_ids:
        return cached_ids
    # The two parts are disjoint; PostgreSQL merges them, so the order stays the database
    # collation's.
    return _MERGE.fetch(conn, {"ids": cached_ids + live_ids, "limit": limit})


def _absorb(connection: Connection) -> None:
    """Fold a small backlog of writes into the cache, before the first page.

    Its own short READ COMMITTED transaction on the unit of work's connection (a Lambda
    holds one), committed before the page's snapshot is taken. A backlog above
    REQUEST_ABSORB_BACKLOG marks is left to the scheduled absorber
    (scripts/absorb_status.py): no request pays for a bulk write. Only for speed: the
    reads below are exact either way, so a failure is only logged.
    """
    try:
        with connection.begin():
            connection.execute(
                _ABSORB,
                {"batch": REQUEST_ABSORB_BATCH, "backlog_limit": REQUEST_ABSORB_BACKLOG},
            )
    except DBAPIError:
        logger.warning("current-status cache not refreshed", exc_info=True)


# A request absorbs at most this many marks (and rows whose scheduled change fell due),
# and only when no more than this many wait: a few milliseconds.
REQUEST_ABSORB_BATCH = 1_000
REQUEST_ABSORB_BACKLOG = 1_000
# Up to this share of the cache marked or outside its interval (and at least MIX_FLOOR
# rows), a page reads the cache and computes the marked rows of its own id range live
# (about 9 us each at a million subscriptions, right after the write that marked them);
# above it, the plain rule over the history (about 1.1 us per subscription, all of them).
# At a million subscriptions the two cost the same near 10% marked (docs/eligible-cache.md).
# Rows outside their interval are counted up to MIX_CAP.
MIX_SHARE = 0.1
MIX_FLOOR = 5_000
MIX_CAP = 200_000


# Per database and club statuses asked, the shipping clubs (an array's text) of this
# container's last page that read the cache alone, and the reading of the clubs it was read
# in (repositories/club_writes.py): the next page's guess (`_cache_alone`).
_GUESSES: club_writes.Kept[str] = club_writes.Kept()


def _cache_alone(
    connection: Connection,
    statuses: tuple[int, ...],
    at: datetime,
    after: str | None,
    limit: int | None,
) -> list[str] | None:
    """The page in one statement when it is read from the cache alone, as the last page
    this container served was, with the same shipping clubs; else None.

    The clubs that ship are the guess's while no scheduled club change has fallen due since
    it (checked here) and no transaction its snapshot could not see has written the clubs
    since (repositories/club_writes.py: one probe of club_write). The
    statement checks that, and that nothing is marked and no cache row lies outside its
    interval, then reads the page, all on its one snapshot: no transaction, one round trip
    instead of three (the clubs and backlog, the page, the ROLLBACK), and no club statuses
    recomputed. The clubs stay a literal, so the page's plan is the one `_FRESH` gets. A
    page it does not answer (the guess no longer holds, the page is empty, or ids hold a
    newline) goes the usual way, which renews the guess.
    """
    guess = _GUESSES.get(connection, statuses, at)
    if guess is None:
        return None
    shipping, seen = guess
    conn = connection.execution_options(isolation_level="AUTOCOMMIT")
    params = {"at": at, "shipping": shipping} | seen.params()
    try:
        count, joined = conn.execute(
            _CACHE_ALONE if after is None else _CACHE_ALONE_AFTER,
            params | {"after": after, "limit": limit},
        ).one()
    finally:
        conn.rollback()  # (nothing to end but SQLAlchemy's own; the level can change again)
    # No row: the guess failed, or the listing is over (the usual way says which).
    return _split(count, joined) if count else None


def eligible_path(backlog: int | None, outside: int, cache_rows: float | None) -> str:
    """Which statements serve a page: "cache", "mixed" or "rule".

    `backlog`: the marks waiting (None: everything is marked); `outside`: cache rows whose
    interval does not hold at the instant asked; `cache_rows`: the planner's estimate of
    the cache's size (-1 before its first ANALYZE).
    """
    if backlog is None:
        return "rule"
    if backlog == 0 and outside == 0:
        return "cache"
    limit = max(MIX_FLOOR, MIX_SHARE * (cache_rows or 0))
    return "mixed" if backlog + outside <= limit else "rule"


def _rule_page(conn: Connection, params: dict) -> list[str]:
    """A page of the plain rule: the ACTIVE ids from the history alone, minus the members
    of clubs that do not ship (and of no club), found through subscription (club_id, id)
    within the ids the history gave (revision 0014).

    Reading every subscription's club instead (a merge with subscription's index) visits
    subscription's heap once per subscription until a VACUUM has built its visibility map,
    as right after a bulk load: 1.4 times the plain DISTINCT ON at a million.

    The first round asks for as many more ids as the share of clubs that do not ship
    suggests (each round is a statement; an id read beyond the page is read again by the
    next one). A shortfall is asked for again from the last id read, a little more than
    the share left out so far suggests; the page is cut to its limit.
    """
    shipping = params["shipping"]
    elsewhere = conn.execute(_RULE_START, {"shipping": shipping}).one()[-1]
    # Both arrays' text, "{}" when empty: a club's share of the members is taken as even.
    not_shipping = elsewhere.count(",") + 1 if elsewhere != "{}" else 0
    clubs = not_shipping + shipping.count(",") + 1
    limit, after = params["limit"], params["after"]
    kept: list[str] = []
    read = 0
    while True:
        want = None
        if limit is not None:
            missing = limit - len(kept)
            if read:
                want = ceil(missing * read / max(len(kept), 1) * 1.1) + 16
            else:
                want = _first_round(limit, not_shipping / clubs)
        found, left_out = (_RULE_ROUND if after is None else _RULE_ROUND_AFTER).fetch(
            conn, params | {"after": after, "limit": want, "elsewhere": elsewhere}
        )
        kept += [i for i in found if i not in left_out] if left_out else found
        read += len(found)
        if want is None or len(found) < want or len(kept) >= limit:
            return kept if limit is None else kept[:limit]
        after = found[-1]


def _first_round(limit: int, share: float) -> int:
    """Ids to ask the history for a page of `limit` when about `share` of the members are
    left out: the expected count and three standard deviations, at most ten pages."""
    if share <= 0:
        return limit
    if share >= 0.9:
        return 10 * limit
    expected = limit / (1 - share)
    return ceil(expected + 3 * sqrt(expected * share * (1 - share)))


class _RuleRound:
    """One round of a rule page in one statement: the ACTIVE ids the history gives after
    `after` (their count and the ids joined, as _IdList does) and, as an array, the members
    to leave out within the ids they span (up to the greatest, `agg.last`)."""

    def __init__(self, found: Select, left_out: CompoundSelect) -> None:
        self.found = _IdList(found, "found")
        agg = select(
            self.found.count.label("n"),
            self.found.ids.label("ids"),
            func.max(self.found.column).label("last"),
        ).subquery("agg")
        out = left_out.subquery("left_out")
        self.statement = select(
            agg.c.n, agg.c.ids, select(func.array_agg(out.c[0])).scalar_subquery()
        )

    def fetch(self, conn: Connection, params: dict) -> tuple[list[str], set[str]]:
        count, joined, left_out = conn.execute(self.statement, params).one()
        return self.found.split(conn, params, count, joined), set(left_out or ())


def _ids(conn: Connection, stmt: Executable, params: dict) -> list[str]:
    # Straight from the driver's tuples: building a Row per id costs more than the query.
    result = conn.execute(stmt, params)
    try:
        return list(map(itemgetter(0), result.cursor.fetchall()))
    finally:
        result.close()


SEPARATOR = "\n"


class _IdList:
    """A statement listing ids, fetched as one row: the count and the ids joined by a newline.

    Ten thousand rows cost the server a message each and the driver a tuple and a string
    each, more than the index scan that finds them; one string splits at once. Ids are
    free text, so a page whose split does not give the count (an id holding a newline) is
    fetched again row by row. PostgreSQL 16 sees the page already in the aggregate's order
    and does not sort it again.
    """

    def __init__(self, rows: Select, name: str = "page") -> None:
        self.rows = rows
        self.column = rows.subquery(name).c[0]
        self.count = func.count()
        self.ids = func.string_agg(self.column, aggregate_order_by(literal(SEPARATOR), self.column))
        self.joined = select(self.count, self.ids)

    def fetch(self, conn: Connection, params: dict) -> list[str]:
        count, joined = conn.execute(self.joined, params).one()
        return self.split(conn, params, count, joined)

    def split(self, conn: Connection, params: dict, count: int, joined: str | None) -> list[str]:
        """The ids of (count, joined), or of the rows fetched again when they do not split."""
        ids = _split(count, joined)
        return ids if ids is not None else _ids(conn, self.rows, params)


def _split(count: int, joined: str | None) -> list[str] | None:
    """The `count` ids joined by SEPARATOR, or None when they do not split into as many
    (an id holding a newline)."""
    ids = joined.split(SEPARATOR) if joined is not None else []
    return ids if len(ids) == count else None


def _eligible_statements():
    """GET /subscription/eligible's statements, built once per container (they are hot)."""
    at = bindparam("at", type_=DateTime)
    clubs = current_club_status(at).subquery("club_now")
    cache = CURRENT_STATUS.c
    cap = bindparam("cap", type_=Integer)

    def capped_count(condition) -> ColumnElement:
        rows = select(literal(1)).where(condition).limit(cap).subquery()
        return select(func.count()).select_from(rows).scalar_subquery()

    shipping_now = cast(
        func.array(
            select(clubs.c.entity_id)
            .where(clubs.c.status_id.in_(bindparam("statuses", expanding=True)))
            .scalar_subquery()
        ),
        Text,
    )
    shipping_and_backlog = select(
        shipping_now,
        func.subscription_current_status_backlog(),
        # Index scans, bounded: rows whose interval does not hold at `at`.
        capped_count(cache.valid_until <= at) + capped_count(cache.valid_from > at),
        select(text("reltuples"))
        .select_from(text("pg_class"))
        .where(text("oid = 'subscription_current_status'::regclass"))
        .scalar_subquery(),
        # For the next page's guess: the reading of the clubs (database, snapshot, next
        # scheduled club change).
        *club_writes.reading(at),
    )
    shipping = any_(cast(bindparam("shipping", type_=Text), ARRAY(Integer)))
    # `club_id + 0`, not the bare column: the planner then does not estimate the selectivity
    # of each of the thousand clubs against the column's statistics (about 1 ms a page, more
    # than the plan is worth: the ordered index scan is the only sensible one). PostgreSQL
    # still tests the constant list through a hash table.
    cache_club = cache.club_id + literal_column("0")
    limit = bindparam("limit", type_=Integer)
    after = bindparam("after", type_=String)
    upper = bindparam("upper", type_=String)
    active = int(SubscriptionStatus.ACTIVE)
    # Cache rows whose interval holds at `at`, in id order from the ACTIVE-only index ...
    fresh = (
        select(cache.subscription_id)
        .where(cache.status_id == active, cache_club == shipping)
        .order_by(cache.subscription_id)
        .limit(limit)
    )
    cached = fresh.where(cached_status_holds(at))
    cached_after = fresh.where(cache.subscription_id > after, cached_status_holds(at, after))
    # ... and the rule applied live to the few whose interval does not hold or that are
    # marked, within the page's id range (after, upper] (psycopg2 sends the values inline,
    # so the planner drops the tests of an absent bound).
    # One probe of the history's covering index per marked id (a correlated LIMIT 1): as a
    # DISTINCT ON joined to the marked ids, the planner walked the whole history instead.
    # The probe takes the mark's id, so it filters the marks before subscription is probed
    # for their club: after a bulk write that paused or cancelled (the usual kind), most
    # marked rows are not ACTIVE and need no second probe (a listing right after a write to
    # 10%: 0.68 to 0.97 of the reference instead of 0.87 to 1.07).
    # Nothing is everything-marked on this path (that is the rule's), and when no cache row
    # lies outside its interval the marks alone are read (`_LIVE_MARKS`).
    row = SubscriptionRow.__table__.c

    def live(stale_rows) -> Select:
        stale = stale_rows.subquery("stale")
        return (
            select(row.id)
            .join(stale, stale.c.subscription_id == row.id)
            .where(SUBSCRIPTIONS.status_of(stale.c.subscription_id, at) == active)
            .where(row.club_id == shipping)
            .order_by(row.id)
            .limit(limit)
        )

    # The plain rule, a page at a time (`_rule_page`): the ACTIVE ids from the history's
    # covering index in id order (the bound on the DISTINCT ON key reaches its index scan) ...
    rule_status = current_subscription_status(at).subquery("rule_status")
    rule = (
        select(rule_status.c.entity_id)
        .where(rule_status.c.status_id == active)
        .order_by(rule_status.c.entity_id)
        .limit(limit)
    )
    rule_after = rule.where(rule_status.c.entity_id > after)

    # ... and, within the ids they span, the members of the clubs that do not ship or of no
    # club: one descent of subscription (club_id, id) per such club (revision 0014).
    # Asked in that index's order, which the page's settings (no sort) make the only plan:
    # subscription (club_id, customer_store_id) would read the heap for every member.
    # `last`: the greatest id of the round's page (`_RuleRound`).
    def left_out(last) -> CompoundSelect:
        span = and_(or_(after.is_(None), row.id > after), row.id <= last)
        clubs = cast(bindparam("elsewhere", type_=Text), ARRAY(Integer))
        return union_all(
            select(row.id).where(row.club_id == any_(clubs), span).order_by(row.club_id, row.id),
            select(row.id).where(row.club_id.is_(None), span).order_by(row.club_id, row.id),
        )

    # `_cache_alone`: no mark, no cache row outside its interval, and nothing written to the
    # clubs that the guess's snapshot did not see (each an index probe), a one-time filter on
    # the page. The page is then exactly `_FRESH`'s.
    still_cache_alone = select(
        and_(
            ~select(literal(1)).select_from(DIRTY).exists(),
            ~select(literal(1)).where(cache.valid_until <= at).exists(),
            ~select(literal(1)).where(cache.valid_from > at).exists(),
            club_writes.still_holds(),
        )
    ).scalar_subquery()

    def guessed(page: Select) -> Select:
        listed = _IdList(page.where(still_cache_alone))
        return select(listed.count.label("cache_alone"), listed.ids)

    merged = select(func.unnest(bindparam("ids", type_=ARRAY(String)))).subquery("merged")
    merge = select(merged.c[0]).order_by(merged.c[0]).limit(limit)
    return (
        shipping_and_backlog,
        _IdList(fresh),
        _IdList(fresh.where(cache.subscription_id > after)),
        _IdList(cached),
        _IdList(cached_after),
        _IdList(live(cached_status_stale(at, after, upper, everything=False))),
        _IdList(live(cached_status_stale(at, after, upper, outside=False, everything=False))),
        _RuleRound(rule, left_out(literal_column("agg.last"))),
        _RuleRound(rule_after, left_out(literal_column("agg.last"))),
        _IdList(merge),
        guessed(fresh),
        guessed(fresh.where(cache.subscription_id > after)),
    )


(
    _SHIPPING_AND_BACKLOG,
    _FRESH,
    _FRESH_AFTER,
    _CACHED,
    _CACHED_AFTER,
    _LIVE,
    _LIVE_MARKS,
    _RULE_ROUND,
    _RULE_ROUND_AFTER,
    _MERGE,
    _CACHE_ALONE,
    _CACHE_ALONE_AFTER,
) = _eligible_statements()


# The plain rule's page has one good plan: the history's covering index walked in id order,
# then a descent of subscription (club_id, id) per club that does not ship, no worker.
# Right after a bulk load the tables have no statistics yet, and the planner then chose
# parallel hash joins over the whole history for each page (0.7 s instead of 50 ms at a
# million subscriptions), or read members through subscription (club_id,
# customer_store_id) and the heap. For the page's transaction only; the statement also
# gives the clubs that do not ship (an array's text).
_RULE_START = text(
    "SELECT set_config('max_parallel_workers_per_gather', '0', true),"
    " set_config('enable_hashjoin', 'off', true), set_config('enable_nestloop', 'off', true),"
    " set_config('enable_sort', 'off', true), set_config('enable_seqscan', 'off', true),"
    " CAST(ARRAY(SELECT id FROM club WHERE id <> ALL(CAST(:shipping AS integer[]))) AS text)"
)

_ABSORB = text("SELECT subscription_current_status_absorb_bounded(:batch, :backlog_limit)")
