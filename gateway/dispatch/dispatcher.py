"""The dispatcher: drains the outbox through channel adapters.

One cycle: reap expired leases → drain each batch channel (``BatchChannelAdapter``, e.g.
SFTP: one batch per agency, gateway.dispatch.batches) → claim batches of the other agencies'
due items (skipping agencies whose circuit is open or whose endpoint is disabled) → send
every item concurrently, at most ``concurrency`` at a time per agency → record outcomes as
they complete, by group commit: one writer records, in ONE transaction, whatever outcomes
finished while its previous commit ran (gateway.dispatch.records: attempts with receipts,
evidence leaves, state changes fenced by lease token, the domain hooks, failure handling by
error type). An agency's answer is on record within about one commit of arriving, so a crash
re-sends only what was in flight and the last commit's answers, not every packet of the
batch; when sending outpaces recording, the senders wait for the recorder
(``UNRECORDED_PER_SENDER``) rather than let answers queue for it. Two lanes overlap one
batch's claim with another's sending and recording; they take turns writing (one claim or one
recorded group at a time) on SQLite, so a group grows while the other lane's commit runs.
"""

import asyncio
import logging
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.clock import to_datetime
from gateway.crashpoints import crash_point
from gateway.dispatch import outbox
from gateway.dispatch.batches import BatchDrain, packet_of
from gateway.dispatch.circuit import CircuitBreaker
from gateway.dispatch.outbox import ClaimedItem
from gateway.dispatch.records import (
    AGENCY_STATUS,
    DeliveryHooks,
    DeliveryRecorder,
    DrainStats,
    SendOutcome,
)
from gateway.errors import OutcomeUnknown, PermanentDeliveryError, TransientDeliveryError
from gateway.metrics import Metrics
from gateway.ports import BatchChannelAdapter, ChannelAdapter, Clock, Recipient
from gateway.store.database import Database

log = logging.getLogger(__name__)

UNRECORDED_PER_SENDER = 2
"""Outcomes a lane's senders may have sent and not yet on record, per sender: one group being
committed while the next gathers, so the senders never wait on a recorder that keeps up.
When sending outpaces recording (every packet due at once, an agency answering at once),
the senders wait for the recorder instead of running through the rest of the batch, and a
crash re-sends at most these and the requests in flight. Measured (README, crash recovery):
duplicates a kill 48.9 -> 26.8 and 31.5 under ``bench chaos-dispatch`` with agencies
answering at once, and no change to ``bench webhook-out``'s rate; one per sender cost a third
of it."""


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Dispatcher:
    """Drains the outbox. Build one per process in the composition root.

    Args:
        db: the database.
        adapters: one channel adapter per agency id.
        agencies: whom items go to: agency configs, and any other recipient the outbox
            serves (retry policy, concurrency, circuit settings).
        hooks: domain effects of delivery (expectations, dead-delivery mismatches).
        clock: time source.
        batch_size: items per claim.
        lease_seconds: how long a claim is ours before the reaper may take it back.
        lanes: batches in progress at once (claim → send → record loops).
        metrics: counts delivery attempts and their latency (gateway.metrics).
    """

    def __init__(
        self,
        *,
        db: Database,
        adapters: Mapping[str, ChannelAdapter],
        agencies: Mapping[str, Recipient],
        hooks: DeliveryHooks,
        clock: Clock,
        batch_size: int = 50,
        lease_seconds: float = 60,
        lanes: int = 2,
        worker_id: str | None = None,
        metrics: Metrics | None = None,
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
        self._concurrency = {a.id: a.retry.concurrency for a in agencies.values()}
        self._limits = {a: asyncio.Semaphore(n) for a, n in self._concurrency.items()}
        self._writing: AbstractAsyncContextManager[None] = (
            asyncio.Lock() if db.is_sqlite else nullcontext()
        )
        """Taken for each claim and each recorded group. On SQLite the lanes take turns
        writing: it has one writer anyway, and a lane that waits here neither sleeps in
        SQLite's busy handler (1, 2, 5, 10 ms… a retry) nor holds back the outcomes that
        gather for its next group meanwhile. PostgreSQL lets the lanes write side by side."""
        self.circuits = {
            a.id: CircuitBreaker(a.retry.circuit_failure_threshold, a.retry.circuit_reset_seconds)
            for a in agencies.values()
        }
        self._recorder = DeliveryRecorder(
            db=db, adapters=adapters, agencies=agencies, hooks=hooks, clock=clock, metrics=metrics
        )
        self._batchers = {
            agency_id: adapter
            for agency_id, adapter in adapters.items()
            if isinstance(adapter, BatchChannelAdapter)
        }
        self._batches = BatchDrain(
            db=db,
            recorder=self._recorder,
            clock=clock,
            worker_id=self.worker_id,
            lease_seconds=lease_seconds,
            circuits=self.circuits,
        )

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
        self._recorder.disabled.clear()
        self._recorder.disabled.update(rows.scalars().all())

    def _blocked(self) -> set[str]:
        now = self._clock.now()
        blocked = {a for a, c in self.circuits.items() if not c.allows(now)}
        unknown = {a for a in self._agencies if a not in self._adapters}
        return blocked | self._recorder.disabled | unknown

    def _excluded(self) -> set[str]:
        """Agencies ``run_batch`` skips: blocked ones and batch channels (drained apart)."""
        return self._blocked() | set(self._batchers)

    async def drain_once(
        self,
        *,
        max_batches: int | None = None,
        on_progress: Callable[[DrainStats], None] | None = None,
    ) -> DrainStats:
        """Send everything that is due now; return what happened. ``on_progress`` hears the
        running totals after each batch (the CLI's progress bar)."""
        total = DrainStats()
        async with self._db.transaction() as conn:
            total.reaped = await outbox.reap(conn, now=self._now())
            await self._load_disabled(conn)

        def add(stats: DrainStats) -> None:
            total.add(stats)
            if on_progress is not None:
                on_progress(total)

        for agency_id, adapter in self._batchers.items():
            if agency_id not in self._blocked():
                add(await self.run_agency_batch(agency_id, adapter))
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
                add(stats)

        async with asyncio.TaskGroup() as tg:
            for _ in range(self._lanes):
                tg.create_task(lane())
        return total

    async def run_batch(self) -> DrainStats | None:
        """Claim, send and record one batch; None when nothing was due."""
        async with self._writing, self._db.transaction() as conn:
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
        return await self._send_and_record(items)

    async def run_agency_batch(self, agency_id: str, adapter: BatchChannelAdapter) -> DrainStats:
        """Claim the agency's due items (at most ``adapter.batch_limit``), stage them in
        one batch, deliver it and record the outcomes (gateway.dispatch.batches)."""
        return await self._batches.run(agency_id, adapter)

    async def _send_and_record(self, items: Sequence[ClaimedItem]) -> DrainStats:
        """Send every item concurrently and record the outcomes as they complete (group
        commit; see the module docstring).

        Each agency's items are sent by as many senders as it takes requests at once, each
        taking the next item when its last one is answered: a task per item would park
        most of a batch on the agency's semaphore, and those waiting tasks live long
        enough to be swept by the garbage collector's older generations."""
        done: asyncio.Queue[SendOutcome] = asyncio.Queue()
        stats = DrainStats()
        queues: dict[str, deque[ClaimedItem]] = {}
        for item in items:
            queues.setdefault(item.agency_id, deque()).append(item)

        senders = {a: min(len(q), self._concurrency[a]) for a, q in queues.items()}
        # Released by the recorder once an outcome is on record (see UNRECORDED_PER_SENDER).
        unrecorded = asyncio.Semaphore(UNRECORDED_PER_SENDER * sum(senders.values()))

        async def sender(queue: deque[ClaimedItem]) -> None:
            while queue:
                await unrecorded.acquire()
                if not queue:  # another sender took the last item meanwhile
                    unrecorded.release()
                    return
                done.put_nowait(await self._send_one(queue.popleft()))

        async def record() -> None:
            left = len(items)
            while left:
                group = [await done.get()]
                async with self._writing:
                    while not done.empty():
                        group.append(done.get_nowait())
                    stats.add(await self._recorder.record(group))
                for _ in group:
                    unrecorded.release()
                left -= len(group)

        async with asyncio.TaskGroup() as tg:
            for agency_id, queue in queues.items():
                for _ in range(senders[agency_id]):
                    tg.create_task(sender(queue))
            tg.create_task(record())
        return stats

    async def _send_one(self, item: ClaimedItem) -> SendOutcome:
        adapter = self._adapters[item.agency_id]
        packet = packet_of(item)
        async with self._limits[item.agency_id]:
            now = self._clock.now()
            started, request_ts = to_datetime(now), int(now)
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
                crash_point("dispatch.after_agency_ok")
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


__all__ = ["DeliveryHooks", "Dispatcher", "DrainStats", "SendOutcome", "default_worker_id"]
