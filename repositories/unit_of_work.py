"""A transaction around the repositories: rolled back unless commit() was called."""

from __future__ import annotations

import importlib
from typing import Any, Self

from sqlalchemy import Engine
from sqlalchemy.engine import Connection

from repositories import database


class _Repository:
    """A repository built on first use in a transaction, from a module imported then: each
    function imports only the repositories it uses (cold start)."""

    def __init__(self, module: str, name: str) -> None:
        self.module = module
        self.name = name
        self.attribute = ""

    def __set_name__(self, owner: type, attribute: str) -> None:
        self.attribute = attribute

    def __get__(self, uow: SqlAlchemyUnitOfWork | None, owner: type) -> Any:
        if uow is None:
            return self
        assert uow.connection is not None, "repositories live inside `with uow:`"
        repository = getattr(importlib.import_module(self.module), self.name)(uow.connection)
        uow.__dict__[self.attribute] = repository
        return repository


class SqlAlchemyUnitOfWork:
    clubs = _Repository("repositories.clubs", "SqlAlchemyClubRepository")
    subscriptions = _Repository("repositories.subscriptions", "SqlAlchemySubscriptionRepository")
    history = _Repository("repositories.subscriptions", "SqlAlchemyStatusHistoryRepository")
    charges = _Repository("repositories.charges", "SqlAlchemyChargeRepository")
    audit = _Repository("repositories.audit", "SqlAlchemyAuditRepository")
    billing = _Repository("repositories.billing", "SqlAlchemyBillingRepository")
    webhooks = _Repository("repositories.webhooks", "SqlAlchemyWebhookRepository")
    views = _Repository("repositories.views", "SqlAlchemyViewRepository")
    _REPOSITORIES = ("clubs", "subscriptions", "history", "charges", "audit", "billing", "webhooks")
    # Flash promos.
    promos = _Repository("repositories.promos", "SqlAlchemyPromoRepository")
    promo_orders = _Repository("repositories.promo_orders", "SqlAlchemyPromoOrderRepository")
    promo_notifications = _Repository(
        "repositories.promo_notifications", "SqlAlchemyPromoNotificationRepository"
    )
    _REPOSITORIES += ("promos", "promo_orders", "promo_notifications")
    # Club changes (domain/club_changes.py).
    club_changes = _Repository("repositories.club_changes", "SqlAlchemyClubChangeRepository")
    _REPOSITORIES += ("club_changes",)
    _REPOSITORIES += ("views",)

    # The money path (issue 12): the request-id registry and the billing breaker's holds.
    requests = _Repository("repositories.platform_requests", "SqlAlchemyPlatformRequestRepository")
    holds = _Repository("repositories.holds", "SqlAlchemyHoldRepository")
    reconciliation = _Repository(
        "repositories.reconciliation", "SqlAlchemyReconciliationRepository"
    )
    _REPOSITORIES += ("requests", "holds", "reconciliation")

    # The operators' desk (issue 16).
    forecasts = _Repository("repositories.forecasts", "SqlAlchemyForecastRepository")
    operations = _Repository("repositories.operations", "SqlAlchemyOperationsRepository")
    _REPOSITORIES += ("forecasts", "operations")

    def __init__(self, engine: Engine | None = None) -> None:
        self._engine = engine
        self.connection: Connection | None = None

    def __enter__(self) -> Self:
        self.connection = self._engine.connect() if self._engine else database.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.connection is not None
        try:
            self.connection.rollback()
        finally:
            self.connection.close()
            self.connection = None
            for name in self._REPOSITORIES:
                self.__dict__.pop(name, None)

    def commit(self) -> None:
        assert self.connection is not None
        self.connection.commit()
