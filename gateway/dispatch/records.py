"""Delivery records: what the dispatcher writes for the outcomes of its sends.

``DeliveryRecorder.record`` writes a batch of outcomes in ONE transaction: attempts with
receipts, receipt evidence leaves, state changes (fenced by lease token) and the domain hooks
(expectations, dead deliveries). ``record_delivered`` does the same, set-based and page by
page, for a delivered file batch (gateway.dispatch.batch_records).

Failure handling is by error type (gateway.errors): transient → back to ``pending`` after a
jittered backoff (gateway.dispatch.retry), or ``dead`` when attempts run out; permanent → ``dead``;
410 → the agency's endpoint is disabled and the item waits; unknown outcome → resent with the
same dedupe key when the receiver deduplicates, else parked in ``unknown`` for ops.
"""

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.clock import to_datetime
from gateway.crashpoints import crash_point
from gateway.dispatch import outbox
from gateway.dispatch.batch_records import record_batch_delivery
from gateway.dispatch.outbox import ClaimedItem
from gateway.dispatch.retry import RetryPolicy
from gateway.errors import (
    DeliveryError,
    EndpointGone,
    TransientDeliveryError,
)
from gateway.evidence.log import LeafInput, append_leaves
from gateway.metrics import Metrics
from gateway.ports import BatchDelivered, ChannelAdapter, Clock, Receipt, Recipient
from gateway.store.database import Database
from gateway.store.driver_sql import insert_numbered
from gateway.store.tables import AgencyStatus, DeliveryAttempt

log = logging.getLogger(__name__)

ATTEMPTS = DeliveryAttempt.__table__  # type: ignore[attr-defined]
AGENCY_STATUS = AgencyStatus.__table__  # type: ignore[attr-defined]
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

    async def on_dead_batch(
        self,
        conn: AsyncConnection,
        batch: str,
        items: Sequence[tuple[ClaimedItem, str]],
        *,
        now: datetime,
    ) -> None:
        """``on_dead`` for items given up together because their whole batch (one file) was
        refused: one finding for the batch, naming its cases, however many chunks report it."""
        ...


def _given_up_together(
    dead: Sequence[tuple[ClaimedItem, str, int]], batch: str | None
) -> tuple[list[tuple[ClaimedItem, str]], dict[str, list[tuple[ClaimedItem, str]]]]:
    """Split what was given up: items of a ``batch`` that share one error (one refused file)
    are one finding, keyed by the batch and the error, so every chunk that reports them
    lands on the same finding; anything else is one finding per item."""
    groups: dict[int, list[tuple[ClaimedItem, str]]] = {}
    for item, error, identity in dead:
        groups.setdefault(identity, []).append((item, error))
    alone: list[tuple[ClaimedItem, str]] = []
    together: dict[str, list[tuple[ClaimedItem, str]]] = {}
    for items in groups.values():
        if batch is None or len(items) < 2:
            alone.extend(items)
            continue
        digest = hashlib.sha256(items[0][1].encode()).hexdigest()[:12]
        together[f"{batch}:{digest}"] = items
    return alone, together


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


class DeliveryRecorder:
    """Writes delivery outcomes (see module docstring). One per dispatcher.

    Args:
        db: the database.
        adapters: the channel adapter of each agency (whether its receiver deduplicates).
        agencies: agency configs (retry policies).
        hooks: domain effects of delivery.
        clock: time source.
        metrics: counts attempts and their latency by agency and channel, once recorded.
    """

    def __init__(
        self,
        *,
        db: Database,
        adapters: Mapping[str, ChannelAdapter],
        agencies: Mapping[str, Recipient],
        hooks: DeliveryHooks,
        clock: Clock,
        metrics: Metrics | None = None,
    ) -> None:
        self._db = db
        self._adapters = adapters
        self._hooks = hooks
        self._clock = clock
        self._metrics = metrics
        self._policies = {a.id: RetryPolicy.from_config(a.retry) for a in agencies.values()}
        self.disabled: set[str] = set()
        """Agencies whose endpoint is disabled (loaded by the dispatcher, grown on 410)."""

    def _now(self) -> datetime:
        return to_datetime(self._clock.now())

    async def record_delivered(
        self,
        delivered: BatchDelivered,
        *,
        agency_id: str,
        owner: str,
        started_at: datetime,
        duration_ms: int,
    ) -> list[int]:
        """Record a delivered file batch in bulk, page by page; return the outbox ids of
        the members ``owner`` still held (gateway.dispatch.batch_records)."""
        held: list[int] = []
        after: int | None = 0
        while after is not None:
            async with self._db.transaction() as conn:
                page, after = await record_batch_delivery(
                    conn,
                    delivered,
                    agency_id=agency_id,
                    owner=owner,
                    after_record=after,
                    limit=RECORD_PAGE,
                    started_at=started_at,
                    duration_ms=duration_ms,
                    hooks=self._hooks,
                    now=self._now(),
                )
            held.extend(page)
        if self._metrics is not None:
            self._metrics.attempts(agency_id, "delivered", [duration_ms / 1000], count=len(held))
        return held

    async def record(
        self, outcomes: Sequence[SendOutcome], *, batch: str | None = None
    ) -> DrainStats:
        """Record outcomes in one transaction; return what happened. With ``batch``, the
        outcomes are those of one refused batch, and what is given up is one finding."""
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
            dead: list[tuple[ClaimedItem, str, int]] = []
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
                    dead.append((o.item, error, id(o.error)))
                elif state == "unknown":
                    stats.unknown += 1
                else:
                    stats.retried += 1
                if isinstance(o.error, EndpointGone):
                    gone.setdefault(o.item.agency_id, error)
            for agency_id, reason in gone.items():
                # Once per agency: a batch channel reports one refusal for many items.
                await self._disable_endpoint(conn, agency_id, reason, now)
            alone, together = _given_up_together(dead, batch)
            for key, items in together.items():
                await self._hooks.on_dead_batch(conn, key, items, now=now)
            if alone:
                await self._hooks.on_dead(conn, alone, now=now)
            crash_point("dispatch.before_outcome_commit")
        if self._metrics is not None:
            latencies: dict[tuple[str, str], list[float]] = {}
            for o in outcomes:
                latencies.setdefault((o.item.agency_id, o.outcome), []).append(o.duration_ms / 1000)
            for (agency_id, outcome), seconds in latencies.items():
                self._metrics.attempts(agency_id, outcome, seconds)
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
        self.disabled.add(agency_id)
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


def _status_of(error: DeliveryError | None) -> int | None:
    return error.status if error is not None else None


__all__ = [
    "RECORD_CHUNK",
    "RECORD_PAGE",
    "DeliveryHooks",
    "DeliveryRecorder",
    "DrainStats",
    "SendOutcome",
]
