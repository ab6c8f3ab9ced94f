"""subscription (club_id, id): the plain rule's page leaves out the members of clubs that
do not ship without reading every subscription's club.

GET /subscription/eligible answers a large backlog with the plain rule over the history
(docs/eligible-cache.md). Its page used to merge the history's covering index with
subscription (id) INCLUDE (club_id) to read each subscription's club. Right after a bulk
load, before the first VACUUM, that index-only scan visits subscription's heap once per
subscription. The page now takes the ACTIVE ids from the history alone and removes those
whose club does not ship, found through this index: one descent per such club and the
page's id range, so only their members are read.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

INDEX = "ix_subscription_club_id"


def upgrade() -> None:
    op.execute(f"CREATE INDEX IF NOT EXISTS {INDEX} ON subscription (club_id, id)")


def downgrade() -> None:
    op.execute(f"DROP INDEX IF EXISTS {INDEX}")
