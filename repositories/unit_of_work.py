"""A transaction around the repositories: rolled back unless commit() was called."""

from __future__ import annotations

import importlib
from typing import Any, Self

from sqlalchemy.orm import Session, sessionmaker

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
        assert uow.session is not None, "repositories live inside `with uow:`"
        repository = getattr(importlib.import_module(self.module), self.name)(uow.session)
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
    _REPOSITORIES = ("clubs", "subscriptions", "history", "charges", "audit", "billing", "webhooks")

    def __init__(self, session_factory: sessionmaker[Session] | None = None) -> None:
        self._session_factory = session_factory
        self.session: Session | None = None

    def __enter__(self) -> Self:
        factory = self._session_factory or database.session_factory()
        self.session = factory()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.session is not None
        try:
            self.session.rollback()
        finally:
            self.session.close()
            self.session = None
            for name in self._REPOSITORIES:
                self.__dict__.pop(name, None)

    def commit(self) -> None:
        assert self.session is not None
        self.session.commit()
