"""The SQL side of domain/geo.py: the bounding box and the exact haversine, as fragments
that the eligible query and the audience query share."""

from __future__ import annotations

from domain import geo


def haversine(lat_a: str, lon_a: str, lat_b: str, lon_b: str) -> str:
    """Great-circle kilometres between two (latitude, longitude) SQL expressions."""
    return (
        f"(2 * {geo.EARTH_RADIUS_KM} * asin(least(1, sqrt("
        f"power(sin(radians({lat_b} - {lat_a}) / 2), 2)"
        f" + cos(radians({lat_a})) * cos(radians({lat_b}))"
        f" * power(sin(radians({lon_b} - {lon_a}) / 2), 2)))))"
    )


def in_box(lat: str, lon: str) -> str:
    """Binds lat_min, lat_max and two longitude ranges (see geo.Box.params)."""
    return (
        f"{lat} BETWEEN :lat_min AND :lat_max"
        f" AND ({lon} BETWEEN :lon_min_1 AND :lon_max_1"
        f" OR {lon} BETWEEN :lon_min_2 AND :lon_max_2)"
    )
