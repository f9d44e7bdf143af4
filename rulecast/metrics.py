"""Prometheus metrics, one registry per server."""
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

__all__ = ["Metrics"]


class Metrics:
    """The figures `/rulecast/metrics` exposes."""

    def __init__(self):
        self.registry = r = CollectorRegistry()
        self.connections = Gauge(
            "rulecast_connections", "Open WebSocket and SSE connections.", registry=r)
        self.published = Counter(
            "rulecast_messages_published", "Messages sequenced and stored.", registry=r)
        self.delivered = Counter(
            "rulecast_messages_delivered", "Messages queued to a connection.", registry=r)
        self.slow_closes = Counter(
            "rulecast_slow_consumer_closes", "Connections closed with 1013 for falling "
            "behind.", registry=r)
        self.gaps_repaired = Counter(
            "rulecast_gaps_repaired", "Messages the bus lost and refilled from the store.",
            registry=r)
        self.client_errors = Counter(
            "rulecast_client_errors", "Error frames and close codes sent to clients.",
            ["code"], registry=r)

        self.events = Counter(
            "rulecast_events_received", "Events accepted from the API or emit().", registry=r)
        self.rule_hits = Counter(
            "rulecast_rule_hits", "Events a rule matched.", ["rule"], registry=r)
        self.rule_failures = Counter(
            "rulecast_rule_failures", "Failing conditions and actions, per rule.", ["rule"],
            registry=r)
        self.rule_reloads = Counter(
            "rulecast_rule_reloads", "Rule reloads, by outcome.", ["outcome"], registry=r)

    def render(self):
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
