"""GET /subscription/eligible at one data size, and its baselines on the same data.

- project: every id through the handler in keyset pages of 10,000, and of 100,000 (the
  largest page); the first page of 10,000 alone;
  the whole list without `limit` (200 when it fits, else 413: its time is still the work).
- baseline `distinct_on`: the DISTINCT ON over the history in the rule's order, served by
  the covering index, every row fetched with psycopg2 (the issue's reference query).
- baseline `rule_join`: the plain rule joined to subscriptions and clubs (what the endpoint
  ran before the cache), nested loops ruled out so it cannot take the planner's trap.
- baseline `orm_python`: eligibility computed in Python over ORM objects (small sizes only).
The answer through the handler is checked against `rule_join` (the rule, no cache).
"""

from __future__ import annotations

import os
from collections import defaultdict
from datetime import UTC, datetime
from functools import cache

import orjson

from bench import data
from bench.timing import interleaved_medians, median_seconds

PAGE = 10_000
LARGE_PAGE = 100_000  # the largest page the endpoint serves (about 4 MB)

DISTINCT_ON = """
SELECT DISTINCT ON (subscription_id) subscription_id, status_id
FROM subscription_status_history
WHERE subscription_id IS NOT NULL AND effect_date <= %(at)s
ORDER BY subscription_id, effect_date DESC, create_date DESC NULLS LAST, id DESC
"""

RULE_JOIN = """
WITH sub_now AS (
    SELECT DISTINCT ON (subscription_id) subscription_id, status_id
    FROM subscription_status_history
    WHERE subscription_id IS NOT NULL AND effect_date <= %(at)s
    ORDER BY subscription_id, effect_date DESC, create_date DESC NULLS LAST, id DESC
), club_now AS (
    SELECT DISTINCT ON (club_id) club_id, club_status_id
    FROM club_status_history
    WHERE club_id IS NOT NULL AND effect_date <= %(at)s
    ORDER BY club_id, effect_date DESC, create_date DESC NULLS LAST, id DESC
)
SELECT s.id FROM subscription s
JOIN sub_now ON sub_now.subscription_id = s.id
JOIN club_now ON club_now.club_id = s.club_id
WHERE sub_now.status_id = 1 AND club_now.club_status_id IN (1, 2)
ORDER BY s.id
"""


def use_database(url: str) -> None:
    """Point the project's settings and engine at `url` (as a fresh container would be)."""
    from common import settings
    from repositories import database

    os.environ["DATABASE_URL"] = url
    settings.get.cache_clear()
    database.reset()


def invoke(query: dict[str, str] | None) -> dict:
    from handlers import eligible
    from tests.events import LambdaContext, api_event

    return eligible.lambda_handler(
        api_event("GET", "/subscription/eligible", query=query), LambdaContext()
    )


def all_pages(size: int = PAGE) -> list[str]:
    ids: list[str] = []
    after = None
    while True:
        answer = invoke({"limit": str(size)} | ({"after": after} if after else {}))
        page = orjson.loads(answer["body"])
        ids += page
        after = answer["headers"].get("X-Next-After")
        if after is None:
            return ids


def first_page() -> list[str]:
    return orjson.loads(invoke({"limit": str(PAGE)})["body"])


def whole() -> int:
    return invoke(None)["statusCode"]


def fetch_all(url: str, sql: str, at: datetime, nestloop: bool = True) -> list:
    conn = data.connect(url)
    try:
        with conn.cursor() as cur:
            if not nestloop:
                cur.execute("SET LOCAL enable_nestloop = off")
            cur.execute(sql, {"at": at})
            return cur.fetchall()
    finally:
        conn.rollback()
        conn.close()


def orm_python(at: datetime) -> list[str]:
    """Eligibility as naive code computes it: every row as an ORM object, the rule in Python."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from repositories import database

    Subscription, SubscriptionStatusHistory, ClubStatusHistory = _orm_classes()

    def current(rows, key, status):
        best: dict = {}
        for row in rows:
            owner = getattr(row, key)
            if owner is None or row.effect_date is None or row.effect_date > at:
                continue
            rank = (row.effect_date, row.create_date or datetime.min, row.id)
            if owner not in best or rank > best[owner][0]:
                best[owner] = (rank, getattr(row, status))
        return defaultdict(lambda: None, {k: v[1] for k, v in best.items()})

    with Session(database.engine()) as session:
        subs = session.scalars(select(Subscription)).all()
        history = session.scalars(select(SubscriptionStatusHistory)).all()
        clubs = session.scalars(select(ClubStatusHistory)).all()
        sub_now = current(history, "subscription_id", "status_id")
        club_now = current(clubs, "club_id", "club_status_id")
        return sorted(s.id for s in subs if sub_now[s.id] == 1 and club_now[s.club_id] in (1, 2))


@cache
def _orm_classes() -> tuple[type, type, type]:
    """ORM classes mapped onto the project's Core tables, for the naive baseline only."""
    from sqlalchemy.orm import registry

    from repositories import tables

    mapper = registry()
    classes = []
    for table in (tables.Subscription, tables.SubscriptionStatusHistory, tables.ClubStatusHistory):
        cls = type(table.__table__.name.title().replace("_", ""), (), {})
        mapper.map_imperatively(cls, table.__table__)
        classes.append(cls)
    return tuple(classes)


def measure(dataset: data.DataSet, repeat: int, orm_up_to: int = 30_000) -> dict:
    from common import clock

    use_database(dataset.url)
    at = datetime.now(UTC).replace(tzinfo=None)
    clock.set_source(lambda: at)
    try:
        medians = interleaved_medians(
            {
                "pages": all_pages,
                "large": lambda: all_pages(LARGE_PAGE),
                "first": first_page,
                "whole": whole,
                "distinct_on": lambda: fetch_all(dataset.url, DISTINCT_ON, at),
                "rule_join": lambda: fetch_all(dataset.url, RULE_JOIN, at, nestloop=False),
            },
            repeat,
        )
        pages_s, ids = medians["pages"]
        large_s, large_ids = medians["large"]
        first_s, first = medians["first"]
        whole_s, whole_status = medians["whole"]
        distinct_s, distinct_rows = medians["distinct_on"]
        rule_s, rule_rows = medians["rule_join"]
        expected = [r[0] for r in rule_rows]
        result = {
            "size": dataset.size,
            "history_rows": dataset.history_rows,
            "eligible": len(expected),
            "pages_s": pages_s,
            "pages": -(-len(ids) // PAGE),
            "large_pages_s": large_s,
            "large_pages": -(-len(large_ids) // LARGE_PAGE),
            "first_page_s": first_s,
            "whole_s": whole_s,
            "whole_status": whole_status,
            "distinct_on_s": distinct_s,
            "distinct_on_rows": len(distinct_rows),
            "rule_join_s": rule_s,
            "correct": ids == expected and large_ids == expected and first == expected[:PAGE],
            "orm_python_s": None,
        }
        if dataset.size <= orm_up_to:
            orm_s, orm_ids = median_seconds(lambda: orm_python(at), repeat, warmup=0)
            result["orm_python_s"] = orm_s
            result["correct"] = result["correct"] and sorted(orm_ids) == sorted(expected)
        return result
    finally:
        clock.set_source(None)
