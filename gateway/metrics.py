"""Prometheus metrics, on a registry owned by the app (no global state).

Two kinds of numbers reach ``/metrics``:

* What happens in this process (a delivery attempt, an inbound request, a poll, a
  reconciliation pass, the circuit breakers' state) is counted here, at the point it happens,
  through the small methods of ``Metrics``: labels are agency ids from the config and fixed
  outcome sets, never case ids or personal data.
* What the whole cluster shares (the outbox backlog, open breaks, SLA breaches, the last
  reconciliation run, when each agency was last heard from) is read from the database at scrape
  time by ``gateway.monitoring`` (a collector with a short cache), so every process reports
  the same numbers however many of them serve.

This module is the bottom layer (no store, no config): the methods take plain values.
"""

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

CHANNELS = ("webhook", "sftp", "email")
"""The channel label of delivery metrics (``-`` for a recipient the config does not name)."""
DELIVERY_OUTCOMES = ("delivered", "transient", "permanent", "unknown")
CIRCUIT_STATES = ("closed", "open", "half_open")
POLL_SOURCES = ("sftp_pickup", "mailbox")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
"""Seconds: a webhook answers in milliseconds, a file batch upload may take minutes."""
RUN_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


POLL_FAILURES = frozenset({"errors", "error", "refused"})
"""Results a pickup or poll reports when it could not do its work (adapters.sftp.pickup)."""


def poll_outcome(results: Mapping[str, int]) -> str:
    """``error`` when the pass reported a failure, ``skipped`` when it did nothing on purpose
    (the agency's endpoint is disabled), else ``ok``."""
    if any(n and key in POLL_FAILURES for key, n in results.items()):
        return "error"
    if results and all(key.startswith("skipped") for key in results):
        return "skipped"
    return "ok"


class CircuitView(Protocol):
    """What the metrics read of a circuit breaker (gateway.dispatch.circuit)."""

    @property
    def state(self) -> str: ...

    @property
    def consecutive_failures(self) -> int: ...


class _CircuitCollector(Collector):
    """The circuit breakers of this process's dispatcher, read at scrape time."""

    def __init__(self) -> None:
        self.source: Callable[[], Mapping[str, CircuitView]] | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        state = GaugeMetricFamily(
            "gateway_circuit_state",
            "Circuit breaker of each agency in this process: 1 for its current state",
            labels=["agency", "state"],
        )
        failures = GaugeMetricFamily(
            "gateway_circuit_consecutive_failures",
            "Consecutive failed deliveries counted by each agency's circuit in this process",
            labels=["agency"],
        )
        circuits = self.source() if self.source is not None else {}
        for agency_id in sorted(circuits):
            circuit = circuits[agency_id]
            for name in CIRCUIT_STATES:
                state.add_metric([agency_id, name], 1.0 if circuit.state == name else 0.0)
            failures.add_metric([agency_id], float(circuit.consecutive_failures))
        yield state
        yield failures


class Metrics:
    """Every metric this process counts (see the module docstring).

    Args:
        channels: the channel of each configured agency (``webhook``, ``sftp``, ``email``);
            delivery metrics carry it as a label, and the cluster collector asks when each of
            these agencies was last heard from.
        clock: wall-clock Unix time (ages and last-seen times at scrape time).
        cache_seconds: how long one read of the cluster-wide numbers serves scrapes.
    """

    def __init__(
        self,
        *,
        channels: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        cache_seconds: float = 5.0,
    ) -> None:
        self.registry = CollectorRegistry()
        self.channels: dict[str, str] = dict(channels or {})
        self.clock = clock
        self.cache_seconds = cache_seconds
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
            "Outbound delivery attempts recorded by this process, by agency, channel and outcome",
            ["agency", "channel", "outcome"],
            registry=self.registry,
        )
        self.delivery_latency = Histogram(
            "gateway_delivery_duration_seconds",
            "Time from sending a packet (or uploading a file batch) to the agency's answer",
            ["agency", "channel"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.poll_results = Counter(
            "gateway_poll_results",
            "What this process's SFTP result pickups and mailbox polls found, by agency and result",
            ["source", "agency", "result"],
            registry=self.registry,
        )
        self.polls = Counter(
            "gateway_polls",
            "Result pickups and mailbox polls run by this process, by outcome (ok, error, skipped)",
            ["source", "agency", "outcome"],
            registry=self.registry,
        )
        self.poll_last_success = Gauge(
            "gateway_poll_last_success_timestamp_seconds",
            "Unix time this process last finished a pickup or poll without an error",
            ["source", "agency"],
            registry=self.registry,
        )
        self.reconcile_runs = Histogram(
            "gateway_reconcile_run_duration_seconds",
            "Reconciliation runs driven by this process, whole run",
            buckets=RUN_BUCKETS,
            registry=self.registry,
        )
        self.reconcile_passes = Histogram(
            "gateway_reconcile_pass_duration_seconds",
            "Reconciliation passes driven by this process, by pass",
            ["pass"],
            buckets=RUN_BUCKETS,
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
        self._circuits = _CircuitCollector()
        self.registry.register(self._circuits)

    def channel(self, agency_id: str) -> str:
        return self.channels.get(agency_id, "-")

    def attempts(
        self, agency_id: str, outcome: str, seconds: Sequence[float], *, count: int | None = None
    ) -> None:
        """Delivery attempts to one agency that ended in ``outcome``, one per exchange of
        ``seconds`` unless ``count`` says how many the exchanges carried (a file batch is one
        exchange for all its members); each label set is looked up once."""
        channel = self.channel(agency_id)
        self.deliveries.labels(agency_id, channel, outcome).inc(
            len(seconds) if count is None else count
        )
        latency = self.delivery_latency.labels(agency_id, channel)
        for each in seconds:
            latency.observe(each)

    def polled(
        self, source: str, agency_id: str, results: Mapping[str, int] | None, *, at: float
    ) -> None:
        """One pickup or poll finished (``results`` are its counts by result, ``None`` when it
        raised)."""
        if results is None:
            self.polls.labels(source, agency_id, "error").inc()
            return
        for result, n in results.items():
            self.poll_results.labels(source, agency_id, result).inc(n)
        outcome = poll_outcome(results)
        self.polls.labels(source, agency_id, outcome).inc()
        if outcome == "ok":
            self.poll_last_success.labels(source, agency_id).set(at)

    def reconciled(self, seconds_by_pass: Mapping[str, float]) -> None:
        """A reconciliation run driven by this process finished its passes."""
        for name, seconds in seconds_by_pass.items():
            self.reconcile_passes.labels(name).observe(seconds)
        self.reconcile_runs.observe(sum(seconds_by_pass.values()))

    def watch_circuits(self, source: Callable[[], Mapping[str, CircuitView]]) -> None:
        """Read the dispatcher's circuit breakers at every scrape."""
        self._circuits.source = source


__all__ = [
    "CHANNELS",
    "CIRCUIT_STATES",
    "DELIVERY_OUTCOMES",
    "POLL_FAILURES",
    "POLL_SOURCES",
    "CircuitView",
    "Metrics",
    "poll_outcome",
]
