"""Distances on the Earth without PostGIS: a bounding box that an index on latitude and
longitude can use, then the exact haversine (in SQL, repositories/promo_geo.py).

The box is never smaller than the circle: across the antimeridian it is two longitude
ranges, and when the circle reaches a pole it spans every longitude.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

EARTH_RADIUS_KM = 6371.0088
KM_PER_DEGREE = math.pi * EARTH_RADIUS_KM / 180
# Distances are compared with this much slack, so that a customer exactly on the radius
# (to the millimetre) is inside whatever the floating point rounding.
TOLERANCE_KM = 1e-6


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


@dataclass(frozen=True)
class Box:
    lat_min: float
    lat_max: float
    # One or two (min, max) longitude ranges; None: every longitude.
    lon_ranges: tuple[tuple[float, float], ...] | None

    def params(self) -> dict[str, float]:
        """Bind values for the SQL box: two ranges always (the second may repeat the first)."""
        ranges = self.lon_ranges or ((-180.0, 180.0),)
        first = ranges[0]
        second = ranges[1] if len(ranges) > 1 else first
        return {
            "lat_min": self.lat_min,
            "lat_max": self.lat_max,
            "lon_min_1": first[0],
            "lon_max_1": first[1],
            "lon_min_2": second[0],
            "lon_max_2": second[1],
        }


def box_around(lat: float, lon: float, radius_km: float) -> Box:
    # A hair wider than the radius: the box must never cut off what the haversine keeps.
    reach = radius_km * (1 + 1e-9) + TOLERANCE_KM
    dlat = reach / KM_PER_DEGREE
    lat_min, lat_max = lat - dlat, lat + dlat
    if lat_min <= -90 or lat_max >= 90:
        return Box(max(lat_min, -90.0), min(lat_max, 90.0), None)
    # The widest longitude span of the circle (at its tangent latitude), not at the centre.
    ratio = math.sin(reach / EARTH_RADIUS_KM) / math.cos(math.radians(lat))
    if ratio >= 1:
        return Box(lat_min, lat_max, None)
    dlon = math.degrees(math.asin(ratio))
    west, east = lon - dlon, lon + dlon
    if west < -180:
        return Box(lat_min, lat_max, ((west + 360, 180.0), (-180.0, east)))
    if east > 180:
        return Box(lat_min, lat_max, ((west, 180.0), (-180.0, east - 360)))
    return Box(lat_min, lat_max, ((west, east),))
