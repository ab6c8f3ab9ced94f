"""The one home of the Powertools logger and metrics every function shares."""

from aws_lambda_powertools import Logger, Metrics

SERVICE = "beer-club-subscriptions"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace="BeerClub", service=SERVICE)
