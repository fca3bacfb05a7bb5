"""The sandbox agency's event pusher: planned events → signed POSTs to the gateway.

Theory of operation
-------------------
The receiving side hands over each case whose script gained events (``schedule``). A pool of
worker tasks takes cases round-robin from a ready queue and sends each case's next event
(``EventPlanner.next_event``, rendered only once the gateway's URL is known); a case is never
in two workers at once, so its events arrive in script order (acknowledgement first).
Transient failures (connection errors, timeouts, 429, 5xx) are retried with exponential
backoff and ±20 % jitter; Retry-After wins, capped at ``backoff_cap``.

``pending`` counts planned events not yet sent, refused or abandoned (including those in
flight); ``drain`` waits until it is zero.
"""

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp

from gateway.clock import to_datetime
from gateway.ports import Clock
from gateway.sandbox.agency_script import CaseFile, EventPlanner, FaultKind, PlannedEvent
from gateway.signing import SigningKey, sign

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class InjectedFault:
    """A faulty event that reached the gateway, and the HTTP status it answered."""

    kind: FaultKind
    placement_id: str
    event_id: str
    status: int


@dataclass(slots=True)
class AgencyStats:
    """Counters behind ``GET /stats``; packets are counted once per unique ``webhook-id``.

    The sandbox agency's receiving side counts packets; the pusher counts events.
    """

    packets_received: int = 0
    duplicates: int = 0
    duplicate_conflicts: int = 0
    packets_by_type: Counter[str] = field(default_factory=Counter)
    packets_refused: Counter[str] = field(default_factory=Counter)
    events_sent: Counter[str] = field(default_factory=Counter)
    faults_sent: Counter[str] = field(default_factory=Counter)
    events_refused: Counter[str] = field(default_factory=Counter)
    events_abandoned: int = 0
    retries: int = 0


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class EventPusher:
    """Sends the planner's events for one sandbox agency, in per-case order, with retries.

    ``stats`` and ``fault_log`` are the agency's, shared with its receiving side; the other
    arguments are described on ``SandboxWebhookAgency``.
    """

    def __init__(
        self,
        *,
        agency_id: str,
        planner: EventPlanner,
        signing_keys: Sequence[SigningKey],
        stats: AgencyStats,
        fault_log: list[InjectedFault],
        clock: Clock,
        seed: int,
        concurrency: int,
        request_timeout: float,
        max_attempts: int,
        backoff_base: float,
        backoff_cap: float,
    ) -> None:
        self.agency_id = agency_id
        self.planner = planner
        self.stats = stats
        self.fault_log = fault_log
        self._signing_keys = tuple(signing_keys)
        self._clock = clock
        self._concurrency = concurrency
        self._timeout = aiohttp.ClientTimeout(total=request_timeout, sock_connect=5.0)
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._jitter = random.Random(seed)
        self._ready: asyncio.Queue[CaseFile] = asyncio.Queue()
        self._scheduled: set[str] = set()
        self._pending = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._url_known = asyncio.Event()
        self._gateway_url: str | None = None
        self._session: aiohttp.ClientSession | None = None
        self._workers: list[asyncio.Task[None]] = []

    @property
    def gateway_url(self) -> str | None:
        return self._gateway_url

    def set_gateway_url(self, url: str) -> None:
        """Point the pusher at the gateway; events planned so far start to flow."""
        self._gateway_url = url.rstrip("/")
        self._url_known.set()

    @property
    def events_url(self) -> str | None:
        if self._gateway_url is None:
            return None
        return f"{self._gateway_url}/v1/agencies/{self.agency_id}/events"

    @property
    def pending(self) -> int:
        """Planned events not yet sent, refused or abandoned (including those in flight)."""
        return self._pending

    def schedule(self, case: CaseFile, added: int) -> None:
        """Count ``added`` newly planned events of ``case`` and queue the case if need be."""
        self._add_pending(added)
        if case.remaining and case.placement_id not in self._scheduled:
            self._scheduled.add(case.placement_id)
            self._ready.put_nowait(case)

    def _add_pending(self, delta: int) -> None:
        self._pending += delta
        if self._pending > 0:
            self._idle.clear()
        else:
            self._idle.set()

    async def start(self) -> None:
        """Start the workers (idempotent)."""
        if self._workers:
            return
        connector = aiohttp.TCPConnector(limit=self._concurrency)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        self._workers = [
            asyncio.create_task(self._work(self._session), name=f"sandbox-{self.agency_id}-{i}")
            for i in range(self._concurrency)
        ]

    async def aclose(self) -> None:
        """Stop the workers; events not yet sent stay pending."""
        workers, self._workers = self._workers, []
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def drain(self, timeout: float) -> bool:  # noqa: ASYNC109 (the demo's contract)
        """Wait until every planned event was sent, refused or abandoned; False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def _work(self, session: aiohttp.ClientSession) -> None:
        while True:
            case = await self._ready.get()
            try:
                await self._advance(session, case)
            finally:
                # Also on cancellation, so that a restarted pusher picks the case up again.
                if case.remaining:
                    self._ready.put_nowait(case)
                else:
                    self._scheduled.discard(case.placement_id)

    async def _advance(self, session: aiohttp.ClientSession, case: CaseFile) -> None:
        # Render only once sending is possible, so a recall or an amendment that arrives
        # while the gateway is still starting is reflected in what is sent.
        await self._url_known.wait()
        before = case.remaining
        event = self.planner.next_event(case, to_datetime(self._clock.now()))
        # An event in flight stays pending until it is settled below.
        self._add_pending(case.remaining - before + (event is not None))
        if event is None:
            return
        try:
            await self._deliver(session, event)
        except asyncio.CancelledError:
            self.stats.events_abandoned += 1
            raise
        except Exception:
            log.exception("sandbox %s: sending event %s failed", self.agency_id, event.event_id)
            self.stats.events_refused["error"] += 1
        finally:
            self._add_pending(-1)

    async def _deliver(self, session: aiohttp.ClientSession, event: PlannedEvent) -> None:
        for attempt in range(1, self._max_attempts + 1):
            status, retry_after = await self._post(session, event)
            if status is not None and (status < 500 and status != 429):
                self._record(event, status)
                return
            if attempt < self._max_attempts:
                self.stats.retries += 1
                await asyncio.sleep(self._backoff(attempt, retry_after))
        self.stats.events_abandoned += 1

    async def _post(
        self, session: aiohttp.ClientSession, event: PlannedEvent
    ) -> tuple[int | None, float | None]:
        url = self.events_url
        if url is None:
            raise RuntimeError("set_gateway_url() must be called before events are sent")
        timestamp = int(self._clock.now())
        headers = {
            "content-type": "application/json",
            "webhook-id": event.event_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(event.event_id, timestamp, event.body, self._signing_keys),
        }
        try:
            async with session.post(
                url, data=event.body, headers=headers, allow_redirects=False
            ) as response:
                await response.read()
                return response.status, _retry_after(response.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError):
            return None, None

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self._backoff_cap)
        delay = min(self._backoff_cap, self._backoff_base * 2.0 ** (attempt - 1))
        return delay * self._jitter.uniform(0.8, 1.2)

    def _record(self, event: PlannedEvent, status: int) -> None:
        accepted = 200 <= status < 300
        if accepted:
            self.stats.events_sent[event.type] += 1
        elif not (status == 409 and event.expect_conflict):
            self.stats.events_refused[str(status)] += 1
        if event.fault is not None:
            self.stats.faults_sent[event.fault] += 1
            self.fault_log.append(
                InjectedFault(event.fault, event.placement_id, event.event_id, status)
            )


__all__ = ["AgencyStats", "EventPusher", "InjectedFault"]
