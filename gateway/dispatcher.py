"""The dispatcher: drains the outbox through channel adapters, records every attempt.

One cycle: reap expired leases → claim a batch (skipping agencies whose circuit is open or
whose endpoint is disabled) → send every item concurrently, at most ``concurrency`` at a time
per agency → record all outcomes in ONE transaction: attempts with receipts, evidence leaves,
state changes (fenced by lease token) and the domain hooks (expectations, dead deliveries).

Failure handling is by error type (gateway.errors): transient → back to ``pending`` after a
jittered backoff (gateway.retry), or ``dead`` when attempts run out; permanent → ``dead``;
410 → the agency's endpoint is disabled and the item waits; unknown outcome → resent with the
same dedupe key when the receiver deduplicates, else parked in ``unknown`` for ops.

Batch channels (``BatchChannelAdapter``, e.g. SFTP) are drained first, one batch per agency
per cycle: the agency's due items are claimed in chunks of ``BATCH_CLAIM_CHUNK`` (with the
adapter's longer lease), staged into one batch, delivered together, and recorded chunk by
chunk as the adapter reports them; per item only its lease token is held in memory.
"""

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway import outbox
from gateway.agency_config import AgencyConfig
from gateway.batch_recording import record_batch_delivery
from gateway.circuit import CircuitBreaker
from gateway.clock import to_datetime
from gateway.errors import (
    DeliveryError,
    EndpointGone,
    OutcomeUnknown,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from gateway.evidence import LeafInput, append_leaves
from gateway.outbox import ClaimedItem
from gateway.ports import (
    BatchChannelAdapter,
    BatchDelivered,
    ChannelAdapter,
    Clock,
    OutboundPacket,
    Receipt,
)
from gateway.retry import RetryPolicy
from gateway.store.database import Database, insert_numbered
from gateway.store.tables import AgencyStatus, DeliveryAttempt

log = logging.getLogger(__name__)

ATTEMPTS = DeliveryAttempt.__table__  # type: ignore[attr-defined]
AGENCY_STATUS = AgencyStatus.__table__  # type: ignore[attr-defined]
OUTBOX = outbox.OUTBOX
BATCH_CLAIM_CHUNK = 2000
"""Items per claim when a batch channel is drained."""
RECORD_CHUNK = 2000
"""Rows per statement when recording: keeps IN lists under the databases' bind limits."""
RECORD_PAGE = 5000
"""Members of a delivered file batch recorded per transaction."""


class DeliveryHooks(Protocol):
    """Domain effects of delivery outcomes, run inside the recording transaction."""

    async def on_delivered(
        self, conn: AsyncConnection, items: Sequence[ClaimedItem], *, now: datetime
    ) -> None: ...

    async def on_delivered_rows(
        self,
        conn: AsyncConnection,
        agency_id: str,
        delivered: sa.Select[tuple[str, str]],
        *,
        now: datetime,
    ) -> None:
        """``on_delivered`` for a set: (placement id, packet type) of delivered items."""
        ...

    async def on_dead(
        self, conn: AsyncConnection, items: Sequence[tuple[ClaimedItem, str]], *, now: datetime
    ) -> None: ...


@dataclass(slots=True)
class SendOutcome:
    item: ClaimedItem
    outcome: str
    started_at: datetime
    duration_ms: int
    request_timestamp: int
    receipt: Receipt | None = None
    error: DeliveryError | None = None


@dataclass(slots=True)
class DrainStats:
    claimed: int = 0
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    unknown: int = 0
    lease_lost: int = 0
    reaped: int = 0
    by_agency: dict[str, int] = field(default_factory=dict)

    def add(self, other: "DrainStats") -> None:
        for name in ("claimed", "delivered", "retried", "dead", "unknown", "lease_lost", "reaped"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for agency, n in other.by_agency.items():
            self.by_agency[agency] = self.by_agency.get(agency, 0) + n


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Dispatcher:
    """Drains the outbox. Build one per process in the composition root.

    Args:
        db: the database.
        adapters: one channel adapter per agency id.
        agencies: agency configs (retry policy, concurrency, circuit settings).
        hooks: domain effects of delivery (expectations, dead-delivery mismatches).
        clock: time source.
        batch_size: items per claim.
        lease_seconds: how long a claim is ours before the reaper may take it back.
        lanes: batches in progress at once (claim → send → record loops).
    """

    def __init__(
        self,
        *,
        db: Database,
        adapters: Mapping[str, ChannelAdapter],
        agencies: Mapping[str, AgencyConfig],
        hooks: DeliveryHooks,
        clock: Clock,
        batch_size: int = 50,
        lease_seconds: float = 60,
        lanes: int = 2,
        worker_id: str | None = None,
    ) -> None:
        self._db = db
        self._adapters = adapters
        self._agencies = agencies
        self._hooks = hooks
        self._clock = clock
        self._batch_size = batch_size
        self._lease_seconds = lease_seconds
        self._lanes = max(1, lanes)
        self.worker_id = worker_id or default_worker_id()
        self._policies = {a.id: RetryPolicy.from_config(a.retry) for a in agencies.values()}
        self._limits = {a.id: asyncio.Semaphore(a.retry.concurrency) for a in agencies.values()}
        self.circuits = {
            a.id: CircuitBreaker(a.retry.circuit_failure_threshold, a.retry.circuit_reset_seconds)
            for a in agencies.values()
        }
        self._disabled: set[str] = set()
        self._batchers = {
            agency_id: adapter
            for agency_id, adapter in adapters.items()
            if isinstance(adapter, BatchChannelAdapter)
        }

    @property
    def adapters(self) -> Mapping[str, ChannelAdapter]:
        """The channel adapter of each agency (read-only; the runtime finds pollers here)."""
        return self._adapters

    def _now(self) -> datetime:
        return to_datetime(self._clock.now())

    async def _load_disabled(self, conn: AsyncConnection) -> None:
        rows = await conn.execute(
            sa.select(AGENCY_STATUS.c.agency_id).where(AGENCY_STATUS.c.endpoint_disabled)
        )
        self._disabled = set(rows.scalars().all())

    def _blocked(self) -> set[str]:
        now = self._clock.now()
        blocked = {a for a, c in self.circuits.items() if not c.allows(now)}
        unknown = {a for a in self._agencies if a not in self._adapters}
        return blocked | self._disabled | unknown

    def _excluded(self) -> set[str]:
        """Agencies ``run_batch`` skips: blocked ones and batch channels (drained apart)."""
        return self._blocked() | set(self._batchers)

    async def drain_once(self, *, max_batches: int | None = None) -> DrainStats:
        """Send everything that is due now; return what happened."""
        total = DrainStats()
        async with self._db.transaction() as conn:
            total.reaped = await outbox.reap(conn, now=self._now())
            await self._load_disabled(conn)
        for agency_id, adapter in self._batchers.items():
            if agency_id not in self._blocked():
                total.add(await self.run_agency_batch(agency_id, adapter))
        budget = [max_batches]

        async def lane() -> None:
            # Lanes overlap one batch's sending with another's recording; leases keep their
            # batches disjoint and the per-agency semaphores still cap requests in flight.
            while budget[0] is None or budget[0] > 0:
                if budget[0] is not None:
                    budget[0] -= 1
                stats = await self.run_batch()
                if stats is None:
                    return
                total.add(stats)

        async with asyncio.TaskGroup() as tg:
            for _ in range(self._lanes):
                tg.create_task(lane())
        return total

    async def run_batch(self) -> DrainStats | None:
        """Claim, send and record one batch; None when nothing was due."""
        async with self._db.transaction() as conn:
            items = await outbox.claim(
                conn,
                worker=self.worker_id,
                limit=self._batch_size,
                lease_seconds=self._lease_seconds,
                now=self._now(),
                exclude_agencies=self._excluded(),
            )
        if not items:
            return None
        outcomes = await self._send_all(items)
        return await self._record(outcomes)

    async def run_agency_batch(self, agency_id: str, adapter: BatchChannelAdapter) -> DrainStats:
        """Claim the agency's due items (at most ``adapter.batch_limit``), stage them in
        one batch, deliver it and record the outcomes as the adapter reports them."""
        leases: dict[int, int] = {}
        lease_seconds = max(float(self._lease_seconds), adapter.lease_seconds)
        # The claim's own owner tag fences the bulk recording of delivered batches.
        owner = f"{uuid.uuid4().hex[:12]}@{self.worker_id}"[:64]
        stats = DrainStats()
        builder = adapter.open_batch()
        started, t0 = self._now(), time.perf_counter()
        failure: DeliveryError | None = None
        try:
            others: set[str] | None = None
            while len(leases) < adapter.batch_limit:
                limit = min(BATCH_CLAIM_CHUNK, adapter.batch_limit - len(leases))
                async with self._db.transaction() as conn:
                    if others is None:
                        others = await self._other_agencies(conn, agency_id)
                    claimed = await outbox.claim(
                        conn,
                        worker=owner,
                        limit=limit,
                        lease_seconds=lease_seconds,
                        now=self._now(),
                        exclude_agencies=others,
                    )
                    items = await self._release_strays(conn, claimed, agency_id)
                if not items:
                    break
                leases.update((i.id, i.lease_token) for i in items)
                await builder.stage([_packet(i) for i in items])
                if len(claimed) < limit:
                    break
            if not leases:
                return stats
            started, t0 = self._now(), time.perf_counter()
            async for reported in builder.flush():
                if isinstance(reported, BatchDelivered):
                    stats.add(
                        await self._record_delivered(
                            reported, agency_id, owner, leases, started, t0
                        )
                    )
                    continue
                outcomes = await self._batch_outcomes(reported, leases, started, t0)
                stats.add(await self._record(outcomes))
        except DeliveryError as exc:
            failure = exc
        except Exception as exc:
            # The items must not sit leased for a whole batch lease: retry them later.
            log.exception("batch delivery to %s failed", agency_id)
            failure = TransientDeliveryError(
                f"{agency_id}: batch delivery failed: {type(exc).__name__}: {exc}",
                agency_id=agency_id,
            )
        finally:
            await builder.aclose()
        if leases:
            # What the adapter did not report gets the batch's failure, or a transient one.
            error = failure or TransientDeliveryError(
                f"{agency_id}: the batch did not report these items", agency_id=agency_id
            )
            remaining: list[tuple[int, Receipt | DeliveryError]] = [(i, error) for i in leases]
            for start in range(0, len(remaining), RECORD_CHUNK):
                part = remaining[start : start + RECORD_CHUNK]
                stats.add(await self._record(await self._batch_outcomes(part, leases, started, t0)))
        circuit = self.circuits[agency_id]
        if stats.delivered:
            circuit.record_success()
        elif stats.retried or stats.unknown:
            circuit.record_failure(self._clock.now())
        return stats

    async def _record_delivered(
        self,
        delivered: BatchDelivered,
        agency_id: str,
        owner: str,
        leases: dict[int, int],
        started: datetime,
        t0: float,
    ) -> DrainStats:
        """Record a delivered batch in bulk, page by page (gateway.batch_recording)."""
        held: list[int] = []
        after: int | None = 0
        duration = int((time.perf_counter() - t0) * 1000)
        while after is not None:
            async with self._db.transaction() as conn:
                page, after = await record_batch_delivery(
                    conn,
                    delivered,
                    agency_id=agency_id,
                    owner=owner,
                    after_record=after,
                    limit=RECORD_PAGE,
                    started_at=started,
                    duration_ms=duration,
                    hooks=self._hooks,
                    now=self._now(),
                )
            held.extend(page)
        for item_id in held:
            leases.pop(item_id, None)
        stats = DrainStats(claimed=len(held), delivered=len(held))
        if held:
            stats.by_agency[agency_id] = len(held)
        return stats

    async def _other_agencies(self, conn: AsyncConnection, agency_id: str) -> set[str]:
        """Agencies with due items other than ``agency_id`` (excluded from its claim)."""
        rows = await conn.execute(
            sa.select(OUTBOX.c.agency_id)
            .where(OUTBOX.c.state == "pending", OUTBOX.c.agency_id != agency_id)
            .distinct()
        )
        return set(rows.scalars().all())

    async def _release_strays(
        self, conn: AsyncConnection, items: Sequence[ClaimedItem], agency_id: str
    ) -> list[ClaimedItem]:
        """Items of an agency that queued after ``_other_agencies`` ran go straight back."""
        for item in items:
            if item.agency_id != agency_id:
                await outbox.mark_failed(
                    conn,
                    item_id=item.id,
                    lease_token=item.lease_token,
                    state="pending",
                    error=f"released from a {agency_id} batch claim",
                    run_at=self._now(),
                )
        return [i for i in items if i.agency_id == agency_id]

    async def _batch_outcomes(
        self,
        reported: Sequence[tuple[int, Receipt | DeliveryError]],
        leases: dict[int, int],
        started: datetime,
        t0: float,
    ) -> list[SendOutcome]:
        """Turn (outbox id, result) pairs into outcomes; ids we do not hold are skipped."""
        ours = {item_id: result for item_id, result in reported if item_id in leases}
        if not ours:
            return []
        async with self._db.snapshot() as conn:
            rows = await conn.execute(
                sa.select(
                    OUTBOX.c.id,
                    OUTBOX.c.dedupe_key,
                    OUTBOX.c.agency_id,
                    OUTBOX.c.placement_id,
                    OUTBOX.c.packet_type,
                    OUTBOX.c.packet_version,
                    OUTBOX.c.attempts,
                    OUTBOX.c.max_attempts,
                ).where(OUTBOX.c.id.in_(sorted(ours)))
            )
            found = rows.all()
        duration = int((time.perf_counter() - t0) * 1000)
        outcomes = []
        for r in found:
            item = ClaimedItem(
                r.id,
                r.dedupe_key,
                r.agency_id,
                r.placement_id,
                r.packet_type,
                r.packet_version,
                b"",
                r.attempts,
                r.max_attempts,
                leases.pop(r.id),
            )
            result = ours[r.id]
            if isinstance(result, Receipt):
                outcomes.append(
                    SendOutcome(
                        item, "delivered", started, duration, result.request_timestamp, result
                    )
                )
                continue
            if isinstance(result, OutcomeUnknown):
                kind = "unknown"
            elif isinstance(result, PermanentDeliveryError):
                kind = "permanent"
            else:
                kind = "transient"
            outcomes.append(
                SendOutcome(item, kind, started, duration, int(started.timestamp()), error=result)
            )
        return outcomes

    async def _send_all(self, items: Sequence[ClaimedItem]) -> list[SendOutcome]:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(self._send_one(item)) for item in items]
        return [t.result() for t in tasks]

    async def _send_one(self, item: ClaimedItem) -> SendOutcome:
        adapter = self._adapters[item.agency_id]
        packet = _packet(item)
        async with self._limits[item.agency_id]:
            started = self._now()
            request_ts = int(self._clock.now())
            t0 = time.perf_counter()
            try:
                receipt = await adapter.send(packet)
            except OutcomeUnknown as exc:
                outcome = SendOutcome(item, "unknown", started, 0, request_ts, error=exc)
            except TransientDeliveryError as exc:
                outcome = SendOutcome(item, "transient", started, 0, request_ts, error=exc)
            except PermanentDeliveryError as exc:
                outcome = SendOutcome(item, "permanent", started, 0, request_ts, error=exc)
            else:
                outcome = SendOutcome(
                    item, "delivered", started, 0, receipt.request_timestamp, receipt=receipt
                )
            outcome.duration_ms = int((time.perf_counter() - t0) * 1000)
        circuit = self.circuits[item.agency_id]
        if outcome.outcome == "delivered":
            circuit.record_success()
        elif outcome.outcome in ("transient", "unknown"):
            circuit.record_failure(self._clock.now())
        return outcome

    async def _record(self, outcomes: Sequence[SendOutcome]) -> DrainStats:
        stats = DrainStats(claimed=len(outcomes))
        if not outcomes:
            return stats
        now = self._now()
        async with self._db.transaction() as conn:
            attempt_ids = await self._insert_attempts(conn, outcomes)
            await append_leaves(
                conn,
                [
                    LeafInput(
                        kind="receipt",
                        ref=f"attempt:{attempt_id}",
                        fields={
                            "attempt_id": attempt_id,
                            "outbox_id": o.item.id,
                            "dedupe_key": o.item.dedupe_key,
                            "agency_id": o.item.agency_id,
                            "outcome": o.outcome,
                            "http_status": o.receipt.status if o.receipt else _status_of(o.error),
                            "response_sha256": o.receipt.response_sha256 if o.receipt else None,
                            "request_timestamp": o.request_timestamp,
                            **(
                                {"details": dict(o.receipt.details)}
                                if o.receipt is not None and o.receipt.details
                                else {}
                            ),
                        },
                    )
                    for o, attempt_id in zip(outcomes, attempt_ids, strict=True)
                ],
                now=now,
            )
            delivered = [o for o in outcomes if o.outcome == "delivered"]
            for start in range(0, len(delivered), RECORD_CHUNK):
                part = delivered[start : start + RECORD_CHUNK]
                held = await outbox.mark_delivered(
                    conn, [(o.item.id, o.item.lease_token) for o in part], now=now
                )
                stats.delivered += len(held)
                stats.lease_lost += len(part) - len(held)
                if held:
                    await self._hooks.on_delivered(
                        conn, [o.item for o in part if o.item.id in held], now=now
                    )
            dead: list[tuple[ClaimedItem, str]] = []
            gone: dict[str, str] = {}
            for o in outcomes:
                if o.outcome == "delivered":
                    stats.by_agency[o.item.agency_id] = stats.by_agency.get(o.item.agency_id, 0) + 1
                    continue
                state, run_at = self._after_failure(o)
                error = str(o.error)
                if not await outbox.mark_failed(
                    conn,
                    item_id=o.item.id,
                    lease_token=o.item.lease_token,
                    state=state,
                    error=error,
                    run_at=run_at,
                ):
                    stats.lease_lost += 1
                    continue
                if state == "dead":
                    stats.dead += 1
                    dead.append((o.item, error))
                elif state == "unknown":
                    stats.unknown += 1
                else:
                    stats.retried += 1
                if isinstance(o.error, EndpointGone):
                    gone.setdefault(o.item.agency_id, error)
            for agency_id, reason in gone.items():
                # Once per agency: a batch channel reports one refusal for many items.
                await self._disable_endpoint(conn, agency_id, reason, now)
            if dead:
                await self._hooks.on_dead(conn, dead, now=now)
        failed: dict[int, list[SendOutcome]] = {}
        for o in outcomes:
            if o.error is not None:
                failed.setdefault(id(o.error), []).append(o)
        for same in failed.values():
            # A batch failure is one error shared by many items: log it once.
            first = same[0]
            log.warning(
                "delivery %s of outbox item %d%s to %s failed: %s",
                first.outcome,
                first.item.id,
                f" and {len(same) - 1} more" if len(same) > 1 else "",
                first.item.agency_id,
                first.error,
            )
        return stats

    def _after_failure(self, o: SendOutcome) -> tuple[str, datetime | None]:
        policy = self._policies[o.item.agency_id]
        if isinstance(o.error, EndpointGone):
            # Not the packet's fault: it waits for ops to re-enable the endpoint.
            return "pending", self._now()
        if o.outcome == "permanent":
            return "dead", None
        if o.outcome == "unknown" and not self._adapters[o.item.agency_id].idempotent_receiver:
            return "unknown", None
        if policy.exhausted(o.item.attempts):
            return "dead", None
        retry_after = o.error.retry_after if isinstance(o.error, TransientDeliveryError) else None
        delay = policy.delay(o.item.attempts, retry_after)
        return "pending", self._now() + timedelta(seconds=delay)

    async def _insert_attempts(
        self, conn: AsyncConnection, outcomes: Sequence[SendOutcome]
    ) -> list[int]:
        rows = [
            {
                "outbox_id": o.item.id,
                "agency_id": o.item.agency_id,
                "attempt_no": o.item.attempts,
                "lease_token": o.item.lease_token,
                "outcome": o.outcome,
                "started_at": o.started_at,
                "duration_ms": o.duration_ms,
                "request_timestamp": o.request_timestamp,
                "http_status": o.receipt.status if o.receipt else _status_of(o.error),
                "response_sha256": o.receipt.response_sha256 if o.receipt else None,
                "response_excerpt": o.receipt.response_excerpt if o.receipt else None,
                "error": str(o.error)[:2000] if o.error else None,
            }
            for o in outcomes
        ]
        return await insert_numbered(conn, ATTEMPTS, rows)

    async def _disable_endpoint(
        self, conn: AsyncConnection, agency_id: str, reason: str, now: datetime
    ) -> None:
        self._disabled.add(agency_id)
        updated = await conn.execute(
            AGENCY_STATUS.update()
            .where(AGENCY_STATUS.c.agency_id == agency_id)
            .values(endpoint_disabled=True, disabled_reason=reason[:500], updated_at=now)
        )
        if updated.rowcount == 0:
            await conn.execute(
                AGENCY_STATUS.insert().values(
                    agency_id=agency_id,
                    endpoint_disabled=True,
                    disabled_reason=reason[:500],
                    updated_at=now,
                )
            )
        log.error("endpoint of %s disabled: %s", agency_id, reason)

    async def run(self, stop: asyncio.Event, *, poll_interval: float = 0.5) -> None:
        """Drain continuously until ``stop`` is set."""
        while not stop.is_set():
            try:
                stats = await self.drain_once()
            except Exception:
                # The worker's top loop is the one place that may catch everything.
                log.exception("dispatch cycle failed; retrying after %.1f s", poll_interval)
                stats = DrainStats()
            if stats.claimed == 0:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=poll_interval)
                except TimeoutError:
                    pass


def _packet(item: ClaimedItem) -> OutboundPacket:
    return OutboundPacket(
        outbox_id=item.id,
        dedupe_key=item.dedupe_key,
        agency_id=item.agency_id,
        packet_type=item.packet_type,
        payload=item.payload,
        attempt_no=item.attempts,
    )


def _status_of(error: DeliveryError | None) -> int | None:
    return error.status if error is not None else None


__all__ = ["DeliveryHooks", "Dispatcher", "DrainStats", "SendOutcome", "default_worker_id"]
