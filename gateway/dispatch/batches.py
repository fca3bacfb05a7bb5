"""Draining a batch channel (``BatchChannelAdapter``, e.g. SFTP): one batch per agency and
dispatch cycle.

The agency's due items are claimed in chunks of ``BATCH_CLAIM_CHUNK`` (with the adapter's
longer lease), staged into one batch, delivered together, and recorded as the adapter
reports them; per item only its lease token is held in memory. Every chunk is claimed under
an owner tag unique to this batch run: a delivered file batch is recorded in bulk,
set-based (gateway.dispatch.batch_records), and the tag fences that recording as lease tokens fence
single items. Whatever the adapter does not report gets the batch's failure.

The cyclic garbage collector is paused while a batch runs (gateway.heap).
"""

import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from operator import itemgetter

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.clock import to_datetime
from gateway.dispatch import outbox
from gateway.dispatch.circuit import CircuitBreaker
from gateway.dispatch.outbox import ClaimedItem
from gateway.dispatch.records import RECORD_CHUNK, DeliveryRecorder, DrainStats, SendOutcome
from gateway.errors import (
    DeliveryError,
    OutcomeUnknown,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from gateway.heap import collector_paused
from gateway.ports import BatchChannelAdapter, BatchDelivered, Clock, OutboundPacket, Receipt
from gateway.store.database import Database, sealer_of

log = logging.getLogger(__name__)

OUTBOX = outbox.OUTBOX
OC = OUTBOX.c
BATCH_CLAIM_CHUNK = 2000
"""Items per claim when a batch channel is drained."""


class BatchDrain:
    """Runs one batch of a batch channel (see module docstring).

    Args:
        db: the database.
        recorder: writes the outcomes.
        clock: time source.
        worker_id: the dispatcher's worker id (part of each batch's owner tag).
        lease_seconds: the dispatcher's lease; a batch claim lasts at least the adapter's.
        circuits: the dispatcher's circuit breakers, one per agency.
    """

    def __init__(
        self,
        *,
        db: Database,
        recorder: DeliveryRecorder,
        clock: Clock,
        worker_id: str,
        lease_seconds: float,
        circuits: Mapping[str, CircuitBreaker],
    ) -> None:
        self._db = db
        self._recorder = recorder
        self._clock = clock
        self._worker_id = worker_id
        self._lease_seconds = lease_seconds
        self._circuits = circuits

    def _now(self) -> datetime:
        return to_datetime(self._clock.now())

    async def run(self, agency_id: str, adapter: BatchChannelAdapter) -> DrainStats:
        """Claim the agency's due items (at most ``adapter.batch_limit``), stage them in
        one batch, deliver it and record the outcomes as the adapter reports them."""
        with collector_paused():
            return await self._run(agency_id, adapter)

    async def _run(self, agency_id: str, adapter: BatchChannelAdapter) -> DrainStats:
        leases: dict[int, int] = {}
        lease_seconds = max(float(self._lease_seconds), adapter.lease_seconds)
        # The claim's own owner tag fences the bulk recording of delivered batches.
        owner = f"{uuid.uuid4().hex[:12]}@{self._worker_id}"[:64]
        # Items refused together (one file) are one finding, however they are reported.
        batch = f"{agency_id}:{owner[:12]}"
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
                    claimed, packets, tokens = await self._claim(
                        conn, agency_id, owner, limit, lease_seconds, others
                    )
                if not packets:
                    break
                leases.update(zip([p.outbox_id for p in packets], tokens, strict=True))
                await builder.stage(packets)
                if claimed < limit:
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
                stats.add(await self._recorder.record(outcomes, batch=batch))
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
                stats.add(
                    await self._recorder.record(
                        await self._batch_outcomes(part, leases, started, t0), batch=batch
                    )
                )
        circuit = self._circuits[agency_id]
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
        held = await self._recorder.record_delivered(
            delivered,
            agency_id=agency_id,
            owner=owner,
            started_at=started,
            duration_ms=int((time.perf_counter() - t0) * 1000),
        )
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

    async def _claim(
        self,
        conn: AsyncConnection,
        agency_id: str,
        owner: str,
        limit: int,
        lease_seconds: float,
        others: set[str],
    ) -> tuple[int, list[OutboundPacket], list[int]]:
        """One chunk of the batch claim: (items claimed, the agency's packets in id order,
        their lease tokens). Only what a packet and its lease need is read (the claim of
        ``gateway.dispatch.outbox`` with fewer columns, as plain rows: per item, building a
        ``ClaimedItem`` cost more than claiming it). Items of an agency that queued after
        ``_other_agencies`` ran go straight back."""
        stmt = outbox.claim_statement(
            conn.dialect.name,
            worker=owner,
            limit=limit,
            lease_seconds=lease_seconds,
            now=self._now(),
            exclude_agencies=others,
        ).returning(
            OC.id,
            OC.dedupe_key,
            OC.agency_id,
            OC.packet_type,
            OC.payload,
            OC.attempts,
            OC.lease_token,
        )
        rows = sorted((await conn.execute(stmt)).all(), key=itemgetter(0))
        sealer = sealer_of(conn)
        packets: list[OutboundPacket] = []
        tokens: list[int] = []
        for item_id, key, agency, packet_type, stored, attempts, token in rows:
            if agency != agency_id:
                await outbox.mark_failed(
                    conn,
                    item_id=item_id,
                    lease_token=token,
                    state="pending",
                    error=f"released from a {agency_id} batch claim",
                    run_at=self._now(),
                )
                continue
            payload = outbox.open_stored(sealer, key, stored)
            packets.append(OutboundPacket(item_id, key, agency, packet_type, payload, attempts))
            tokens.append(token)
        return len(rows), packets, tokens

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
                sa.select(*outbox.ITEM_COLUMNS).where(OUTBOX.c.id.in_(sorted(ours)))
            )
            found = rows.all()
        duration = int((time.perf_counter() - t0) * 1000)
        outcomes = []
        for r in found:
            item = outbox.claimed_item(r, b"", leases.pop(r.id))
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


def packet_of(item: ClaimedItem) -> OutboundPacket:
    """The packet a claimed item carries."""
    return OutboundPacket(
        outbox_id=item.id,
        dedupe_key=item.dedupe_key,
        agency_id=item.agency_id,
        packet_type=item.packet_type,
        payload=item.payload,
        attempt_no=item.attempts,
    )


__all__ = ["BATCH_CLAIM_CHUNK", "BatchDrain", "packet_of"]
