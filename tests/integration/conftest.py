import pytest


@pytest.fixture(autouse=True)
def _clean(request):
    # Tests that touch the database start from empty tables (the lookups stay seeded).
    if "db" in request.fixturenames or "clean_db" in request.fixturenames:
        request.getfixturevalue("clean_db")
