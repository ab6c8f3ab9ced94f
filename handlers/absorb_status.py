"""The scheduled current-status absorber (EventBridge, every minute).

Folds bulk writes' marks into the eligible cache for up to ABSORB_BUDGET_SECONDS (55 s
by default), then returns; the next minute's run takes over. Two overlapping runs are
harmless: the second finds the absorber's lock taken and waits for work.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from common.observability import logger, metrics
from repositories import database
from repositories.status_absorber import Absorber

DEFAULT_BUDGET = 55.0


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict:
    budget = float(os.environ.get("ABSORB_BUDGET_SECONDS", DEFAULT_BUDGET))
    summary = Absorber(database.engine()).run(budget)
    logger.info("current-status absorber done", **summary.as_dict())
    metrics.add_metric(name="StatusMarksAbsorbed", unit=MetricUnit.Count, value=summary.absorbed)
    return summary.as_dict()
