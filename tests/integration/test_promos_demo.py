"""`make run`'s promo demo data: a store, customers around it and running promos."""

from __future__ import annotations

from domain import promo_notifications, promos
from repositories.unit_of_work import SqlAlchemyUnitOfWork
from scripts import promo_demo_data
from tests.conftest import NOW


class ListQueue:
    def flush(self) -> None:
        pass

    def __init__(self) -> None:
        self.customers: dict[int, list[str]] = {}

    def send(self, messages) -> None:
        for m in messages:
            self.customers.setdefault(m.promo_id, []).extend(m.customer_ids)


def test_demo_data_has_a_store_customers_around_it_and_running_promos(clean_db, now):
    # Given the demo data loaded (twice: the second time does nothing)
    with clean_db.begin() as conn:
        assert promo_demo_data.load(conn, NOW) is True
        assert promo_demo_data.load(conn, NOW) is False
    # Then a near customer in the segments is offered both promos, a far one none
    near = promos.eligible(SqlAlchemyUnitOfWork(), "demo-customer-1", NOW)
    assert [(p.promo_id, p.units_left) for p in near] == [(1, 5), (2, 1)]
    assert promos.eligible(SqlAlchemyUnitOfWork(), "demo-customer-3", NOW) == []
    assert promos.eligible(SqlAlchemyUnitOfWork(), "demo-customer-4", NOW) == []
    # And the announcer tells promo 1's audience (segments beer-lovers or ipa, within 5 km)
    queue = ListQueue()
    promo_notifications.announce(SqlAlchemyUnitOfWork(), queue, NOW)
    assert sorted(queue.customers[1]) == [
        "demo-customer-1",
        "demo-customer-2",
        "demo-customer-5",
        "demo-promo-customer-1",
        "demo-promo-customer-2",
        "demo-promo-customer-3",
    ]
