"""The sandbox webhook agency: a simulated collection agency on loopback, real protocol.

Theory of operation
-------------------
The pure half, the agency's script, is ``gateway/sandbox/agency_script.py``.

``SandboxWebhookAgency`` is the I/O shell. ``POST /hooks`` verifies, dedupes on ``webhook-id``,
parses and feeds the planner; the receive path is a few dict operations plus one pydantic
parse. A pool of pusher workers takes cases round-robin from a ready queue and sends each
case's next event to the gateway; a case is never in two workers at once, so its events
arrive in script order (acknowledgement first).

``fault_log`` lists the faults injected and the status the gateway answered to each.
"""

import asyncio
import hashlib
import logging
import random
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Final

import aiohttp
from aiohttp import web
from pydantic import TypeAdapter, ValidationError

from gateway.clock import SystemClock, to_datetime
from gateway.errors import InboundError, MalformedPayload, SchemaViolation
from gateway.ports import Clock
from gateway.sandbox.agency_script import (
    CaseFile,
    EventPlanner,
    FaultKind,
    PlannedEvent,
)
from gateway.signing import SigningKey, VerifyingKey, read_headers, sign, verify
from schemas.packets import (
    CasePacket,
)

log = logging.getLogger(__name__)

_PACKET_ADAPTER: Final[TypeAdapter[CasePacket]] = TypeAdapter(CasePacket)


@dataclass(frozen=True, slots=True)
class InjectedFault:
    """A faulty event that reached the gateway, and the HTTP status it answered."""

    kind: FaultKind
    placement_id: str
    event_id: str
    status: int


@dataclass(slots=True)
class AgencyStats:
    """Counters behind ``GET /stats``; packets are counted once per unique ``webhook-id``."""

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


def _problem(
    status: int, slug: str, title: str, detail: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"type": f"/problems/{slug}", "title": title, "status": status, "detail": detail}
    return web.json_response(
        body, status=status, content_type="application/problem+json", headers=headers
    )


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class SandboxWebhookAgency:
    """A simulated collection agency speaking Standard Webhooks both ways.

    Args:
        agency_id: the agency's id at the gateway (used in the events URL).
        verify_keys: keys that verify the gateway's packet signatures.
        signing_keys: the agency's own keys; every event is signed with all of them.
        gateway_url: base URL of the gateway's inbound API; may be set later
            (``set_gateway_url``), the pusher waits for it.
        seed, fault_rate: see ``EventPlanner``.
        tolerance: accepted ``webhook-timestamp`` skew, seconds.
        clock: wall clock (``gateway.ports.Clock``) for signatures and event timestamps.
        concurrency: events in flight to the gateway at once.
        request_timeout: total seconds per event POST.
        max_attempts, backoff_base, backoff_cap: retries of transient failures (connection
            errors, timeouts, 429, 5xx), exponential with ±20 % jitter; Retry-After wins,
            capped at ``backoff_cap``.
        fail_next: answer 503 (Retry-After: 1) to the next N packet posts, unprocessed.
        status_override: answer every packet post with this status, unprocessed.
        delay_seconds: sleep this long before answering a packet post (after processing it),
            to make the sender time out.
    """

    def __init__(
        self,
        *,
        agency_id: str,
        verify_keys: Sequence[VerifyingKey],
        signing_keys: Sequence[SigningKey],
        gateway_url: str | None = None,
        seed: int,
        fault_rate: float,
        tolerance: int = 300,
        clock: Clock | None = None,
        concurrency: int = 8,
        request_timeout: float = 15.0,
        max_attempts: int = 10,
        backoff_base: float = 0.1,
        backoff_cap: float = 5.0,
        fail_next: int = 0,
        status_override: int | None = None,
        delay_seconds: float = 0.0,
    ) -> None:
        self.agency_id = agency_id
        self.planner = EventPlanner(agency_id=agency_id, seed=seed, fault_rate=fault_rate)
        self.stats = AgencyStats()
        self.fault_log: list[InjectedFault] = []
        self.tolerance = tolerance
        self.fail_next = fail_next
        self.status_override = status_override
        self.delay_seconds = delay_seconds
        self._verify_keys = tuple(verify_keys)
        self._signing_keys = tuple(signing_keys)
        self._clock: Clock = clock or SystemClock()
        self._concurrency = concurrency
        self._timeout = aiohttp.ClientTimeout(total=request_timeout, sock_connect=5.0)
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._jitter = random.Random(seed)
        self._seen: dict[str, bytes] = {}
        self._ready: asyncio.Queue[CaseFile] = asyncio.Queue()
        self._scheduled: set[str] = set()
        self._pending = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._url_known = asyncio.Event()
        self._gateway_url: str | None = None
        self._session: aiohttp.ClientSession | None = None
        self._workers: list[asyncio.Task[None]] = []
        if gateway_url is not None:
            self.set_gateway_url(gateway_url)

    # -- configuration ------------------------------------------------------------------

    @property
    def gateway_url(self) -> str | None:
        return self._gateway_url

    @gateway_url.setter
    def gateway_url(self, url: str) -> None:
        self.set_gateway_url(url)

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
    def pending_events(self) -> int:
        """Planned events not yet sent, refused or abandoned (including those in flight)."""
        return self._pending

    # -- receiving packets ----------------------------------------------------------------

    def app(self) -> web.Application:
        """``POST /hooks`` and ``GET /stats``; the pusher runs while the app runs."""
        app = web.Application()
        app.router.add_post("/hooks", self._hooks)
        app.router.add_get("/stats", self._stats)
        app.cleanup_ctx.append(self._lifecycle)
        return app

    async def _lifecycle(self, _app: web.Application) -> AsyncIterator[None]:
        await self.start()
        yield
        await self.aclose()

    async def _hooks(self, request: web.Request) -> web.Response:
        body = await request.read()
        response = self._receive(request, body)
        if self.delay_seconds > 0:
            await asyncio.sleep(self.delay_seconds)
        return response

    def _receive(self, request: web.Request, body: bytes) -> web.Response:
        if self.fail_next > 0:
            self.fail_next -= 1
            return _problem(
                503,
                "unavailable",
                "Service unavailable",
                "sandbox fault injection: fail_next",
                {"Retry-After": "1"},
            )
        if self.status_override is not None:
            status = self.status_override
            if status < 400:
                return web.json_response({"override": True}, status=status)
            return _problem(status, "override", "Injected status", "sandbox status_override")
        try:
            headers = read_headers(request.headers.items())
            verify(
                headers,
                body,
                self._verify_keys,
                now=int(self._clock.now()),
                tolerance=self.tolerance,
            )
        except InboundError as exc:
            return self._refuse(exc)
        msg_id = headers.msg_id
        digest = hashlib.blake2b(body, digest_size=16).digest()
        seen = self._seen.get(msg_id)
        if seen is not None:
            self.stats.duplicates += 1
            self.stats.duplicate_conflicts += seen != digest
            return web.json_response({"received": msg_id, "duplicate": True})
        try:
            packet = _PACKET_ADAPTER.validate_json(body)
        except ValidationError as exc:
            return self._refuse(self._schema_error(exc))
        if packet.data.packet_id != msg_id:
            return self._refuse(
                SchemaViolation(f"data.packet_id {packet.data.packet_id!r} must equal webhook-id")
            )
        self._seen[msg_id] = digest
        self.stats.packets_received += 1
        self.stats.packets_by_type[packet.type] += 1
        case = self.planner.cases.get(packet.data.placement_id)
        before = case.remaining if case is not None else 0
        case = self.planner.on_packet(packet)
        if case is not None:
            self._add_pending(case.remaining - before)
            self._schedule(case)
        return web.json_response({"received": msg_id})

    def _refuse(self, exc: InboundError) -> web.Response:
        self.stats.packets_refused[str(exc.status)] += 1
        return _problem(exc.status, exc.slug, exc.title, str(exc))

    @staticmethod
    def _schema_error(exc: ValidationError) -> InboundError:
        errors = exc.errors(include_input=False, include_url=False)
        if any(e["type"] == "json_invalid" for e in errors):
            return MalformedPayload()
        # Field locations and messages only: the input may hold a debtor's personal data.
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors[:5])
        return SchemaViolation(detail)

    async def _stats(self, _request: web.Request) -> web.Response:
        return web.json_response(self.stats_json())

    def stats_json(self) -> dict[str, object]:
        """The ``GET /stats`` document."""
        s = self.stats
        return {
            "agency_id": self.agency_id,
            "packets_received": s.packets_received,
            "duplicates": s.duplicates,
            "duplicate_conflicts": s.duplicate_conflicts,
            "packets_by_type": dict(s.packets_by_type),
            "packets_refused": dict(s.packets_refused),
            "placements": len(self.planner.cases),
            "events_sent": dict(s.events_sent),
            "faults_sent": dict(s.faults_sent),
            "events_refused": dict(s.events_refused),
            "events_abandoned": s.events_abandoned,
            "retries": s.retries,
            "pending_events": self._pending,
        }

    # -- pushing events ---------------------------------------------------------------------

    def _add_pending(self, delta: int) -> None:
        self._pending += delta
        if self._pending > 0:
            self._idle.clear()
        else:
            self._idle.set()

    def _schedule(self, case: CaseFile) -> None:
        if case.remaining and case.placement_id not in self._scheduled:
            self._scheduled.add(case.placement_id)
            self._ready.put_nowait(case)

    async def start(self) -> None:
        """Start the pusher (idempotent)."""
        if self._workers:
            return
        connector = aiohttp.TCPConnector(limit=self._concurrency)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        self._workers = [
            asyncio.create_task(self._work(self._session), name=f"sandbox-{self.agency_id}-{i}")
            for i in range(self._concurrency)
        ]

    async def aclose(self) -> None:
        """Stop the pusher; events not yet sent stay pending."""
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


__all__ = ["AgencyStats", "InjectedFault", "SandboxWebhookAgency"]
