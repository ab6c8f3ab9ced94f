"""The bounding box never cuts off what the haversine keeps: near poles, across the
antimeridian, at every radius a promo may have."""

from __future__ import annotations

import math
import random

import pytest

from domain import geo


def _destination(lat: float, lon: float, km: float, bearing: float) -> tuple[float, float]:
    d = km / geo.EARTH_RADIUS_KM
    p1, l1 = math.radians(lat), math.radians(lon)
    p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(bearing))
    l2 = l1 + math.atan2(
        math.sin(bearing) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2)
    )
    return math.degrees(p2), (math.degrees(l2) + 540) % 360 - 180


def _inside(box: geo.Box, lat: float, lon: float) -> bool:
    p = box.params()
    return p["lat_min"] <= lat <= p["lat_max"] and (
        p["lon_min_1"] <= lon <= p["lon_max_1"] or p["lon_min_2"] <= lon <= p["lon_max_2"]
    )


@pytest.mark.parametrize(
    "centre",
    [(38.72, -9.14), (0.0, 179.99), (0.0, -179.99), (-16.5, 180.0), (89.99, 0.0), (-89.9, 45.0)]
    + [
        (random.Random(n).uniform(-89.9, 89.9), random.Random(n).uniform(-180, 180))
        for n in range(40)
    ],
)
def test_every_point_on_the_circle_is_inside_the_box(centre):
    for radius in (0.5, 5.0, 100.0):
        box = geo.box_around(*centre, radius)
        for step in range(72):
            point = _destination(*centre, radius, step * math.pi / 36)
            assert geo.haversine_km(*centre, *point) == pytest.approx(radius, abs=1e-6)
            assert _inside(box, *point), (centre, radius, point, box)


def test_across_the_antimeridian_the_box_is_two_ranges():
    box = geo.box_around(0.0, 179.99, 5.0)
    assert box.lon_ranges is not None
    assert len(box.lon_ranges) == 2
    assert _inside(box, 0.0, -179.99)
    assert not _inside(box, 0.0, 0.0)


def test_a_circle_reaching_a_pole_spans_every_longitude():
    assert geo.box_around(89.99, 10.0, 5.0).lon_ranges is None
    assert geo.box_around(-89.99, 10.0, 5.0).lon_ranges is None


def test_haversine_is_exact_along_a_meridian():
    north = 38.0 + math.degrees(5.0 / geo.EARTH_RADIUS_KM)
    assert geo.haversine_km(38.0, -9.0, north, -9.0) == pytest.approx(5.0, abs=1e-9)
