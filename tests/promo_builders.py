"""Stores, customer profiles and promos written with plain SQL, as operators write them."""

from __future__ import annotations

import itertools
import math
import uuid
from datetime import datetime, timedelta

from sqlalchemy import Engine, text

from domain import geo

_sequence = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_sequence)}-{uuid.uuid4().hex[:8]}"


def store(db: Engine, latitude: float = 38.7223, longitude: float = -9.1393, name=None) -> int:
    with db.begin() as conn:
        return conn.execute(
            text(
                "INSERT INTO store (name, latitude, longitude) VALUES (:n, :lat, :lon) RETURNING id"
            ),
            {"n": name or unique("store"), "lat": latitude, "lon": longitude},
        ).scalar_one()


def customer(
    db: Engine,
    latitude: float = 38.7223,
    longitude: float = -9.1393,
    segments: tuple[str, ...] = ("beer-lovers",),
    customer_id: str | None = None,
) -> str:
    customer_id = customer_id or unique("cust")
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO customer_profile (customer_id, latitude, longitude, segments)"
                " VALUES (:c, :lat, :lon, :seg)"
            ),
            {"c": customer_id, "lat": latitude, "lon": longitude, "seg": list(segments)},
        )
    return customer_id


def promo(
    db: Engine,
    store_id: int,
    starts_at: datetime,
    ends_at: datetime | None = None,
    units: int | None = None,
    segments: tuple[str, ...] = ("beer-lovers",),
    radius_km: float = 5.0,
    sku: int = 7001,
    unit_price: str | None = "9.90",
) -> int:
    columns = {
        "store_id": store_id,
        "sku": sku,
        "unit_price": unit_price,
        "segments": list(segments),
        "radius_km": radius_km,
        "starts_at": starts_at,
        "ends_at": ends_at or starts_at + timedelta(hours=2),
    }
    if units is not None:
        columns["units"] = units
    names = ", ".join(columns)
    values = ", ".join(f":{name}" for name in columns)
    with db.begin() as conn:
        return conn.execute(
            text(f"INSERT INTO promo ({names}) VALUES ({values}) RETURNING id"), columns
        ).scalar_one()


def north_of(latitude: float, km: float) -> float:
    """The latitude `km` due north (along a meridian the haversine is exact)."""
    return latitude + math.degrees(km / geo.EARTH_RADIUS_KM)


def rows(db: Engine, sql: str, **params) -> list[dict]:
    with db.connect() as conn:
        return [dict(r) for r in conn.execute(text(sql), params).mappings()]
