"""Stdlib-only fake of the e-commerce platform's order API, for local runs and fault tests."""

from fake_ecommerce.server import MODES, FakePlatform, InvalidModeError, start

__all__ = ["MODES", "FakePlatform", "InvalidModeError", "start"]
