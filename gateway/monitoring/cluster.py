"""Cluster-wide numbers for ``/metrics``, read from the database at scrape time.

Theory of operation
-------------------
Every ``serve`` process answers ``/metrics``, and every one of them must report the same
backlog, the same open breaks and the same last reconciliation run, whichever process did the
work. So these numbers are not counted in memory: ``read_cluster`` reads them in one connection
with a handful of cheap, indexed queries (each bounded by the live backlog or the number of
configured agencies, never by history, except the SLA breach and notice counts, which read an
index on their state), and ``ClusterCollector`` keeps the result for ``cache_seconds`` so a
burst of scrapes costs one read. ``refresh`` is awaited by the ``/metrics`` handler; the
synchronous ``collect`` that prometheus_client calls only formats the last snapshot.
"""

import asyncio
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import sqlalchemy as sa
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.complaints.states import OPEN_STATES as WAITING
from gateway.complaints.store import COMPLAINTS
from gateway.notices.service import notice_counts
from gateway.reconciliation.kinds import MISMATCH_KINDS
from gateway.reconciliation.sla import SLA_KINDS
from gateway.register.standing import expiring
from gateway.register.store import read_register
from gateway.store.database import Database
from gateway.store.recon_tables import ReconRun
from gateway.store.tables import (
    AgencyStatus,
    Expectation,
    InboundMessage,
    Mismatch,
    OutboxItem,
)

log = logging.getLogger(__name__)

OUTBOX = OutboxItem.__table__  # type: ignore[attr-defined]
MISMATCHES = Mismatch.__table__  # type: ignore[attr-defined]
EXPECTATIONS = Expectation.__table__  # type: ignore[attr-defined]
INBOUND = InboundMessage.__table__  # type: ignore[attr-defined]
RUNS = ReconRun.__table__  # type: ignore[attr-defined]
AGENCY_STATUS = AgencyStatus.__table__  # type: ignore[attr-defined]

OUTBOX_STATES = ("pending", "leased", "unknown", "dead")
"""Counted (zero included) through ``ix_outbox_state_lease``; ``delivered`` is history, not
backlog, and is not counted (the delivery counters say how many went out)."""
OPEN_BREAK_STATES = ("open", "investigating")
OTHER = "other"
"""The agency label of rows whose agency is no longer in the config."""


@dataclass(frozen=True, slots=True)
class LastRun:
    """The newest real (not dry) reconciliation run, and the newest completed one."""

    newest_state: str
    completed_seconds: float | None
    completed_finished_at: float | None


@dataclass(frozen=True, slots=True)
class ClusterSnapshot:
    outbox: dict[str, int]
    oldest_pending_age: float
    """Seconds since the oldest pending item was queued (0 with nothing pending)."""
    oldest_due_age: float
    """Seconds the oldest pending item has been due (0 when nothing pending is due yet)."""
    breaks: dict[str, int]
    notices: dict[str, int]
    sla_breaches: dict[tuple[str, str], int]
    last_seen: dict[str, float]
    disabled: dict[str, bool]
    last_run: LastRun | None
    taken_at: float = 0.0
    complaints: dict[str, int] = field(default_factory=lambda: {"no": 0, "yes": 0})
    """Complaints waiting for an answer, by whether they are past their deadline."""
    expiry_days: dict[tuple[str, str], float] = field(default_factory=dict)
    """(agency, contract or qualification kind) → days until it ends (negative: ended)."""


def _agency(agency_id: str, known: Mapping[str, str]) -> str:
    return agency_id if agency_id in known else OTHER


def _ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


async def read_cluster(
    conn: AsyncConnection, *, agencies: Mapping[str, str], now: float
) -> ClusterSnapshot:
    """Read the cluster-wide numbers (see the module docstring). ``agencies`` maps each
    configured agency id to its channel."""
    o = OUTBOX.c
    outbox = dict.fromkeys(OUTBOX_STATES, 0)
    rows = await conn.execute(
        sa.select(o.state, sa.func.count()).where(o.state.in_(OUTBOX_STATES)).group_by(o.state)
    )
    outbox.update({state: int(n) for state, n in rows.all()})
    # One pass over the pending rows, which the partial index ix_outbox_due finds: bounded by
    # the backlog, however many items were delivered before.
    oldest = (
        await conn.execute(
            sa.select(sa.func.min(o.created_at), sa.func.min(o.run_at)).where(o.state == "pending")
        )
    ).one()
    oldest_created, oldest_due = _ts(oldest[0]), _ts(oldest[1])

    m = MISMATCHES.c
    breaks = dict.fromkeys(MISMATCH_KINDS, 0)
    rows = await conn.execute(
        sa.select(m.kind, sa.func.count()).where(m.state.in_(OPEN_BREAK_STATES)).group_by(m.kind)
    )
    breaks.update({kind: int(n) for kind, n in rows.all()})

    x = EXPECTATIONS.c
    sla: dict[tuple[str, str], int] = {}
    rows = await conn.execute(
        sa.select(x.agency_id, x.kind, sa.func.count())
        .where(x.state == "breached")
        .group_by(x.agency_id, x.kind)
    )
    for agency_id, kind, n in rows.all():
        key = (_agency(agency_id, agencies), SLA_KINDS.get(kind, OTHER))
        sla[key] = sla.get(key, 0) + int(n)

    last_seen: dict[str, float] = {}
    if agencies:
        i = INBOUND.c
        # One indexed lookup per configured agency (ix_inbound_agency_received), not a scan.
        latest = (
            await conn.execute(
                sa.select(
                    *(
                        sa.select(sa.func.max(i.received_at))
                        .where(i.agency_id == agency_id)
                        .scalar_subquery()
                        .label(f"a{n}")
                        for n, agency_id in enumerate(agencies)
                    )
                )
            )
        ).one()
        for agency_id, seen in zip(agencies, latest, strict=True):
            if (at := _ts(seen)) is not None:
                last_seen[agency_id] = at

    s = AGENCY_STATUS.c
    disabled = dict.fromkeys(agencies, False)
    for agency_id, off in (await conn.execute(sa.select(s.agency_id, s.endpoint_disabled))).all():
        if agency_id in agencies:
            disabled[agency_id] = bool(off)

    k = COMPLAINTS.c
    complaints = {"no": 0, "yes": 0}
    # ix_complaints_state_deadline: bounded by the complaints waiting, not by history.
    late = k.deadline_at < datetime.fromtimestamp(now, UTC)
    rows = await conn.execute(
        sa.select(late, sa.func.count()).where(k.state.in_(sorted(WAITING))).group_by(late)
    )
    complaints.update({"yes" if past else "no": int(n) for past, n in rows.all()})

    return ClusterSnapshot(
        outbox=outbox,
        oldest_pending_age=0.0 if oldest_created is None else max(0.0, now - oldest_created),
        oldest_due_age=0.0 if oldest_due is None else max(0.0, now - oldest_due),
        breaks=breaks,
        notices=await notice_counts(conn),
        sla_breaches=sla,
        last_seen=last_seen,
        disabled=disabled,
        last_run=await _last_run(conn),
        taken_at=now,
        complaints=complaints,
        expiry_days=await _expiry_days(conn, datetime.fromtimestamp(now, UTC).date()),
    )


async def _expiry_days(conn: AsyncConnection, today: date) -> dict[tuple[str, str], float]:
    """Days left on each register entry's contract and required qualifications (agencies
    neither terminated nor blacklisted): two small queries on the register."""
    entries = await read_register(conn)
    return {
        (e.agency_id, e.subject.removeprefix("qualification:")): float(e.days_left)
        for e in expiring(entries.values(), today, horizon_days=1_000_000)
    }


async def _last_run(conn: AsyncConnection) -> LastRun | None:
    r = RUNS.c
    newest = (
        await conn.execute(
            sa.select(r.state).where(sa.not_(r.dry_run)).order_by(r.id.desc()).limit(1)
        )
    ).scalar_one_or_none()
    if newest is None:
        return None
    completed = (
        await conn.execute(
            sa.select(r.started_at, r.finished_at)
            .where(sa.not_(r.dry_run), r.state == "completed")
            .order_by(r.id.desc())
            .limit(1)
        )
    ).one_or_none()
    if completed is None or completed.finished_at is None:
        return LastRun(newest, None, None)
    finished = completed.finished_at.timestamp()
    return LastRun(newest, finished - completed.started_at.timestamp(), finished)


def _labelled(
    name: str, documentation: str, labels: list[str], values: Mapping[tuple[str, ...], float]
) -> GaugeMetricFamily:
    """A gauge family with one sample per label tuple, in the order given."""
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for key, value in values.items():
        family.add_metric(list(key), value)
    return family


def families(snapshot: ClusterSnapshot | None) -> Iterator[GaugeMetricFamily]:
    """The snapshot as Prometheus metric families (pure); ``None``: the read failed."""
    yield GaugeMetricFamily(
        "gateway_cluster_read_ok",
        "1 when the last read of the cluster-wide numbers from the database succeeded",
        value=0.0 if snapshot is None else 1.0,
    )
    if snapshot is None:
        return
    yield _labelled(
        "gateway_outbox_items",
        "Outbox items by state (all processes)",
        ["state"],
        {(state,): n for state, n in snapshot.outbox.items()},
    )
    yield GaugeMetricFamily(
        "gateway_outbox_oldest_pending_age_seconds",
        "Seconds since the oldest pending outbox item was queued (0 when none is pending)",
        value=snapshot.oldest_pending_age,
    )
    yield GaugeMetricFamily(
        "gateway_outbox_oldest_due_age_seconds",
        "Seconds the oldest pending outbox item has been due without being sent",
        value=snapshot.oldest_due_age,
    )
    yield _labelled(
        "gateway_open_mismatches",
        "Open mismatches (breaks) by kind",
        ["kind"],
        {(kind,): n for kind, n in snapshot.breaks.items()},
    )
    yield _labelled(
        "gateway_borrower_notices",
        "Borrower notices by state (failed: given up, the placement is flagged)",
        ["state"],
        {(state,): n for state, n in snapshot.notices.items()},
    )
    yield _labelled(
        "gateway_sla_breaches",
        "Expectations breached (past due, unmet) by agency and the mismatch kind they raised",
        ["agency", "kind"],
        dict(sorted(snapshot.sla_breaches.items())),
    )
    yield _labelled(
        "gateway_inbound_last_seen_timestamp_seconds",
        "Unix time of the newest message stored from each agency, any channel",
        ["agency"],
        {(agency_id,): at for agency_id, at in sorted(snapshot.last_seen.items())},
    )
    yield _labelled(
        "gateway_agency_endpoint_disabled",
        "1 when deliveries to the agency are stopped (it answered 410 or ops disabled it)",
        ["agency"],
        {(agency_id,): float(off) for agency_id, off in sorted(snapshot.disabled.items())},
    )
    yield _labelled(
        "gateway_complaints_waiting",
        "Complaints waiting for an answer (open or investigating), overdue=yes past their deadline",
        ["overdue"],
        {(flag,): n for flag, n in sorted(snapshot.complaints.items())},
    )
    yield _labelled(
        "gateway_register_expiry_days",
        "Days until an agency's contract or required qualification ends (negative: ended)",
        ["agency", "kind"],
        dict(sorted(snapshot.expiry_days.items())),
    )
    run = snapshot.last_run
    run_state = GaugeMetricFamily(
        "gateway_reconcile_last_run_state",
        "The newest reconciliation run: 1 for its state (running, completed, failed)",
        labels=["state"],
    )
    for name in ("running", "completed", "failed"):
        run_state.add_metric([name], 1.0 if run is not None and run.newest_state == name else 0.0)
    yield run_state
    if run is not None and run.completed_seconds is not None:
        yield GaugeMetricFamily(
            "gateway_reconcile_last_run_duration_seconds",
            "Duration of the newest completed reconciliation run (any process, CLI included)",
            value=run.completed_seconds,
        )
        yield GaugeMetricFamily(
            "gateway_reconcile_last_run_finished_timestamp_seconds",
            "Unix time the newest completed reconciliation run finished",
            value=run.completed_finished_at or 0.0,
        )


class ClusterCollector(Collector):
    """Serves the last snapshot, read again when it is older than ``cache_seconds``.

    Args:
        db: the database.
        agencies: channel by configured agency id.
        clock: wall-clock Unix time (ages and last-seen are against it).
        cache_seconds: how long one read serves scrapes.
        monotonic: measures the cache's age.
    """

    def __init__(
        self,
        *,
        db: Database,
        agencies: Mapping[str, str],
        clock: Callable[[], float] = time.time,
        cache_seconds: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._agencies = dict(agencies)
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._monotonic = monotonic
        self._snapshot: ClusterSnapshot | None = None
        self._read_at: float | None = None
        self._lock = asyncio.Lock()
        self.registry = CollectorRegistry(auto_describe=False)
        """A registry of its own: the ``/metrics`` handler appends its exposition."""
        self.registry.register(self)

    async def refresh(self) -> ClusterSnapshot | None:
        """The snapshot, read again if it is stale; concurrent scrapes share one read. When
        the database cannot be read, None: ``/metrics`` still answers with what this process
        counted, and ``gateway_cluster_read_ok`` says the cluster numbers are missing."""
        async with self._lock:
            read_at = self._read_at
            if read_at is None or self._monotonic() - read_at >= self._cache_seconds:
                try:
                    async with self._db.connect() as conn:
                        self._snapshot = await read_cluster(
                            conn, agencies=self._agencies, now=self._clock()
                        )
                except (SQLAlchemyError, OSError) as exc:
                    log.warning("cluster metrics not read: %s", type(exc).__name__)
                    self._snapshot = None
                # A failed read is not retried before the period ends either: a struggling
                # database is not asked more often because it struggles.
                self._read_at = self._monotonic()
            return self._snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from families(self._snapshot)


__all__ = [
    "OUTBOX_STATES",
    "ClusterCollector",
    "ClusterSnapshot",
    "LastRun",
    "families",
    "read_cluster",
]
