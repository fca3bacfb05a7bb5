"""Prometheus metrics, on a registry owned by the app (no global state)."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """Every metric the gateway exports at ``/metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.inbound = Counter(
            "gateway_inbound_requests",
            "Inbound agency requests by agency and HTTP status",
            ["agency", "status"],
            registry=self.registry,
        )
        self.inbound_batch = Histogram(
            "gateway_inbound_commit_batch_size",
            "Inbound messages committed per transaction (group commit)",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
        self.deliveries = Counter(
            "gateway_delivery_attempts",
            "Outbound delivery attempts by agency and outcome",
            ["agency", "outcome"],
            registry=self.registry,
        )
        self.outbox = Gauge(
            "gateway_outbox_items",
            "Outbox items by state",
            ["state"],
            registry=self.registry,
        )
        self.mismatches = Gauge(
            "gateway_open_mismatches",
            "Open mismatches by kind",
            ["kind"],
            registry=self.registry,
        )
        self.borrower_notices = Gauge(
            "gateway_borrower_notices",
            "Borrower notices by state (failed: given up, the placement is flagged)",
            ["state"],
            registry=self.registry,
        )
        self.verification_checks = Counter(
            "gateway_verification_checks",
            "Collector verification checks answered by this process, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.verification_failed_hour = Gauge(
            "gateway_verification_failed_last_hour",
            "Verification checks that matched no authorisation in the last hour (all processes)",
            registry=self.registry,
        )


__all__ = ["Metrics"]
