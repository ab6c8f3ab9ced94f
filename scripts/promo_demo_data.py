"""Demo data of the flash promos: a store in Lisbon, customers around it, running promos.

Written with plain SQL, as operators write; does nothing when any store exists.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy import Connection, text

from domain import geo

STORE = (1, "Beer Club Lisbon (Baixa)", 38.7107, -9.1366)

# (customer id, km north of the store, segments)
CUSTOMERS = [
    ("demo-customer-1", 1.0, ["beer-lovers", "ipa"]),
    ("demo-customer-2", 3.0, ["beer-lovers"]),
    ("demo-customer-3", 8.0, ["beer-lovers"]),  # outside the 5 km radius
    ("demo-customer-4", 2.0, ["wine"]),  # in no targeted segment
    ("demo-customer-5", 4.5, ["beer-lovers", "stout"]),
    ("demo-promo-customer-1", 0.5, ["beer-lovers"]),
    ("demo-promo-customer-2", 1.5, ["ipa"]),
    ("demo-promo-customer-3", 2.5, ["beer-lovers"]),
]

# (id, sku, price, units, segments, radius km, starts in minutes, lasts days)
PROMOS = [
    (1, 1001, "4.90", 5, ["beer-lovers", "ipa"], 5.0, -1, 30),
    (2, 1002, "2.50", 1, ["beer-lovers"], 5.0, -1, 30),  # the last bottle: one unit
]


def load(conn: Connection, now: datetime) -> bool:
    if conn.scalar(text("SELECT EXISTS (SELECT 1 FROM store)")):
        return False
    store_id, name, lat, lon = STORE
    conn.execute(
        text("INSERT INTO store (id, name, latitude, longitude) VALUES (:i, :n, :lat, :lon)"),
        {"i": store_id, "n": name, "lat": lat, "lon": lon},
    )
    for customer_id, km, segments in CUSTOMERS:
        conn.execute(
            text(
                "INSERT INTO customer_profile (customer_id, latitude, longitude, segments)"
                " VALUES (:c, :lat, :lon, :s) ON CONFLICT (customer_id) DO NOTHING"
            ),
            {
                "c": customer_id,
                "lat": lat + math.degrees(km / geo.EARTH_RADIUS_KM),
                "lon": lon,
                "s": segments,
            },
        )
    for promo_id, sku, price, units, segments, radius, starts, days in PROMOS:
        conn.execute(
            text(
                "INSERT INTO promo (id, store_id, sku, unit_price, units, segments, radius_km,"
                " starts_at, ends_at) VALUES (:i, :st, :sku, :p, :u, :seg, :r, :s, :e)"
            ),
            {
                "i": promo_id,
                "st": store_id,
                "sku": sku,
                "p": price,
                "u": units,
                "seg": segments,
                "r": radius,
                "s": now + timedelta(minutes=starts),
                "e": now + timedelta(days=days),
            },
        )
    # Identity columns given explicit ids: the next SQL insert must not collide with them.
    conn.execute(text("SELECT setval(pg_get_serial_sequence('store', 'id'), max(id)) FROM store"))
    conn.execute(text("SELECT setval(pg_get_serial_sequence('promo', 'id'), max(id)) FROM promo"))
    return True
