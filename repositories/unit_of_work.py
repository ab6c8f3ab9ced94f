"""A transaction around the repositories: rolled back unless commit() was called."""

from __future__ import annotations

from typing import Self

from sqlalchemy.orm import Session, sessionmaker

from repositories import database
from repositories.audit import SqlAlchemyAuditRepository
from repositories.billing import SqlAlchemyBillingRepository
from repositories.charges import SqlAlchemyChargeRepository
from repositories.clubs import SqlAlchemyClubRepository
from repositories.subscriptions import (
    SqlAlchemyStatusHistoryRepository,
    SqlAlchemySubscriptionRepository,
)
from repositories.webhooks import SqlAlchemyWebhookRepository


class SqlAlchemyUnitOfWork:
    def __init__(self, session_factory: sessionmaker[Session] | None = None) -> None:
        self._session_factory = session_factory
        self.session: Session | None = None

    def __enter__(self) -> Self:
        factory = self._session_factory or database.session_factory()
        self.session = factory()
        self.clubs = SqlAlchemyClubRepository(self.session)
        self.subscriptions = SqlAlchemySubscriptionRepository(self.session)
        self.history = SqlAlchemyStatusHistoryRepository(self.session)
        self.charges = SqlAlchemyChargeRepository(self.session)
        self.audit = SqlAlchemyAuditRepository(self.session)
        self.billing = SqlAlchemyBillingRepository(self.session)
        self.webhooks = SqlAlchemyWebhookRepository(self.session)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.session is not None
        try:
            self.session.rollback()
        finally:
            self.session.close()
            self.session = None

    def commit(self) -> None:
        assert self.session is not None
        self.session.commit()
