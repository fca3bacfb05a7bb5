"""The sandbox webhook agency: a simulated collection agency on loopback, real protocol.

Theory of operation
-------------------
Two halves, split the h11 way.

``EventPlanner`` is pure (no sockets, no clock of its own). Accepted packets go in. For a new
placement it writes a *script*, a queue of ``Step``s drawn from ``seed`` and the placement id
alone, so the same seed always gives the same script. ``next_event`` renders the next step into
the exact bytes of one agency event, reading the case's state at that moment: an amendment, a
direct payment or a recall that arrives before a step is sent changes what the step says, or
drops it. Honest steps never report more money than the agency believes is outstanding.

``SandboxWebhookAgency`` is the I/O shell. ``POST /hooks`` verifies, dedupes on ``webhook-id``,
parses and feeds the planner; the receive path is a few dict operations plus one pydantic
parse. A pool of pusher workers takes cases round-robin from a ready queue and sends each
case's next event to the gateway; a case is never in two workers at once, so its events
arrive in script order (acknowledgement first).

Faults: with probability ``fault_rate`` a placement's script gets one event from
``PLACEMENT_FAULTS``, and with the same probability a recall is followed by a payment
(``activity_after_recall``). Faulty events are schema-valid; their meaning is wrong, and the
gateway's reconciliation must catch every one. ``fault_log`` lists what was injected.
"""

import asyncio
import hashlib
import json
import logging
import random
from collections import Counter, deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final, Literal

import aiohttp
from aiohttp import web
from pydantic import TypeAdapter, ValidationError

from gateway.clock import SystemClock, to_datetime
from gateway.errors import InboundError, MalformedPayload, SchemaViolation
from gateway.ports import Clock
from gateway.signing import SigningKey, VerifyingKey, read_headers, sign, verify
from schemas.events import ContactChannel, ContactOutcome
from schemas.packets import (
    CasePacket,
    PaymentDirect,
    PlacementAmended,
    PlacementCreated,
    PlacementCreatedData,
)

log = logging.getLogger(__name__)

FaultKind = Literal[
    "unknown_placement",
    "over_payment",
    "conflicting_duplicate",
    "ack_balance_differs",
    "currency_mismatch",
    "activity_after_recall",
]
PLACEMENT_FAULTS: Final[tuple[FaultKind, ...]] = (
    "unknown_placement",
    "over_payment",
    "conflicting_duplicate",
    "ack_balance_differs",
    "currency_mismatch",
)
"""Faults planned with a new placement; ``activity_after_recall`` is planned on a recall."""

StepKind = Literal["ack", "contact", "promise", "payment", "return", "close"]
_CHANNELS: Final[tuple[ContactChannel, ...]] = ("call", "call", "sms", "app", "visit")
_MISSES: Final[tuple[ContactOutcome, ...]] = ("no_answer", "left_message", "wrong_number")
_OUTCOMES: Final = ("paid", "partial", "returned", "open")
_OUTCOME_WEIGHTS: Final = (30, 30, 15, 25)
_FAULT_STEP: Final[dict[FaultKind, StepKind]] = {
    "unknown_placement": "payment",
    "over_payment": "payment",
    "conflicting_duplicate": "ack",
    "currency_mismatch": "payment",
    "activity_after_recall": "payment",
}
_EVENT_TYPES: Final[dict[StepKind, str]] = {
    "ack": "placement.acknowledged",
    "contact": "contact.attempted",
    "promise": "promise.made",
    "payment": "payment.reported",
    "return": "case.returned",
    "close": "case.closed",
}
_PACKET_ADAPTER: Final[TypeAdapter[CasePacket]] = TypeAdapter(CasePacket)


def _token(text: str) -> str:
    """A piece of a webhook-id: ids may not contain '.', and must stay under 255 characters."""
    if "." in text or len(text) > 48:
        return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
    return text


def _excess(amount: int) -> int:
    return max(1, amount // 10)


def _money(amount: int, currency: str) -> dict[str, object]:
    return {"amount_minor": amount, "currency": currency}


@dataclass(frozen=True, slots=True)
class Step:
    """One scripted event of a case. Amounts are ``share`` percent of what is outstanding
    when the step is rendered (100 = all of it)."""

    kind: StepKind
    share: int = 0
    channel: ContactChannel = "call"
    outcome: ContactOutcome = "no_answer"
    days: int = 0
    fault: FaultKind | None = None


@dataclass(slots=True)
class CaseFile:
    """The agency's own record of one placement."""

    placement_id: str
    case_id: str
    debtor_id: str
    currency: str
    loaded_balance: int
    balance: int
    token: str
    agency_case_ref: str
    collected: int = 0
    credited: int = 0
    recalled: bool = False
    rendered: int = 0
    ack_event_id: str | None = None
    scripted: bool = False
    steps: deque[Step] = field(default_factory=deque)

    @property
    def outstanding(self) -> int:
        return self.balance - self.collected - self.credited

    @property
    def remaining(self) -> int:
        """Steps still to render; a case not yet scripted counts as one."""
        return len(self.steps) + (not self.scripted)


@dataclass(frozen=True, slots=True)
class PlannedEvent:
    """One event ready for the wire: ``body`` is sent and signed byte for byte."""

    event_id: str
    placement_id: str
    type: str
    body: bytes
    fault: FaultKind | None = None
    expect_conflict: bool = False


class EventPlanner:
    """Pure planner: ``on_packet`` updates case files and scripts, ``next_event`` renders.

    Contacts are capped per debtor (``max_contacts_per_debtor``) so that a debtor holding
    several accounts at this agency does not trip the gateway's contact rules by accident.
    """

    def __init__(
        self, *, agency_id: str, seed: int, fault_rate: float, max_contacts_per_debtor: int = 3
    ) -> None:
        self.agency_id = agency_id
        self.seed = seed
        self.fault_rate = fault_rate
        self.max_contacts_per_debtor = max_contacts_per_debtor
        self.cases: dict[str, CaseFile] = {}
        self._agency_token = _token(agency_id)
        self._contacts: Counter[str] = Counter()

    def _rng(self, placement_id: str, salt: str) -> random.Random:
        # A str seed is hashed with SHA-512, so this is stable across processes and runs.
        return random.Random(f"{self.seed}|{self.agency_id}|{placement_id}|{salt}")

    def on_packet(self, packet: CasePacket) -> CaseFile | None:
        """Apply one accepted packet; return the case it concerns, or None if unknown."""
        if isinstance(packet, PlacementCreated):
            return self._created(packet.data)
        case = self.cases.get(packet.data.placement_id)
        if case is None:
            return None
        if isinstance(packet, PlacementAmended):
            case.balance = packet.data.balance.amount_minor
        elif isinstance(packet, PaymentDirect):
            case.credited += packet.data.amount.amount_minor
        elif not case.recalled:  # PlacementRecalled, the remaining member
            case.recalled = True
            case.scripted = True
            case.steps.clear()
            if self._rng(case.placement_id, "recall").random() < self.fault_rate:
                case.steps.append(Step("payment", share=20, fault="activity_after_recall"))
        return case

    def _created(self, data: PlacementCreatedData) -> CaseFile | None:
        if data.placement_id in self.cases:
            return None
        token = _token(data.placement_id)
        ref = hashlib.blake2b(f"{self.agency_id}|{data.placement_id}".encode(), digest_size=6)
        case = CaseFile(
            placement_id=data.placement_id,
            case_id=data.case_id,
            debtor_id=data.debtor.debtor_id,
            currency=data.balance.currency,
            loaded_balance=data.balance.amount_minor,
            balance=data.balance.amount_minor,
            token=token,
            agency_case_ref="AC-" + ref.hexdigest().upper(),
        )
        self.cases[data.placement_id] = case
        return case

    def _script(self, placement_id: str) -> list[Step]:
        rng = self._rng(placement_id, "script")
        outcome = rng.choices(_OUTCOMES, weights=_OUTCOME_WEIGHTS)[0]
        steps = [Step("ack")]
        for _ in range(rng.randint(1, 3)):
            reached = rng.random() < 0.4
            miss = rng.choice(_MISSES)
            steps.append(
                Step(
                    "contact", channel=rng.choice(_CHANNELS), outcome="reached" if reached else miss
                )
            )
        if outcome in ("paid", "partial") and rng.random() < 0.5:
            steps.append(Step("promise", share=rng.choice((30, 50, 100)), days=rng.randint(3, 30)))
        if outcome == "paid":
            steps += [Step("payment", share=rng.randint(20, 60)) for _ in range(rng.randint(0, 2))]
            steps += [Step("payment", share=100), Step("close")]
        elif outcome == "partial":
            steps.append(Step("payment", share=rng.randint(10, 60)))
        elif outcome == "returned":
            steps.append(Step("return"))
        if rng.random() < self.fault_rate:
            kind = rng.choice(PLACEMENT_FAULTS)
            if kind == "ack_balance_differs":
                steps[0] = Step("ack", fault=kind)
            else:
                # After the acknowledgement, before a closing or returning step.
                last = len(steps) - 1 if outcome in ("paid", "returned") else len(steps)
                steps.insert(rng.randint(1, last), Step(_FAULT_STEP[kind], share=20, fault=kind))
        return steps

    def next_event(self, case: CaseFile, now: datetime) -> PlannedEvent | None:
        """Render the case's next step that still makes sense; None when the script ran out.

        Steps that became moot (a payment with nothing left to pay, for instance) are
        consumed silently. The script itself is written on the first call, which keeps that
        work off the path that receives packets.
        """
        if not case.scripted:
            case.steps.extend(self._script(case.placement_id))
            case.scripted = True
        while case.steps:
            event = self._render(case, case.steps.popleft(), now)
            if event is not None:
                return event
        return None

    def _render(self, case: CaseFile, step: Step, now: datetime) -> PlannedEvent | None:
        data = self._data(case, step, now)
        if data is None:
            return None
        etype = _EVENT_TYPES[step.kind]
        envelope = {"type": etype, "timestamp": now.isoformat(), "data": data}
        body = json.dumps(envelope, separators=(",", ":")).encode()
        if step.fault == "conflicting_duplicate" and case.ack_event_id is not None:
            return PlannedEvent(case.ack_event_id, case.placement_id, etype, body, step.fault, True)
        event_id = f"evt_{self._agency_token}_{case.token}_{case.rendered}"
        case.rendered += 1
        if step.kind == "ack":
            case.ack_event_id = event_id
        return PlannedEvent(event_id, case.placement_id, etype, body, step.fault)

    def _data(self, case: CaseFile, step: Step, now: datetime) -> dict[str, object] | None:
        """The ``data`` member of a step's event, or None when the step is moot."""
        pid, out, seq, currency = case.placement_id, case.outstanding, case.rendered, case.currency
        if step.kind == "ack":
            if step.fault == "conflicting_duplicate" and case.ack_event_id is None:
                return None
            ref = case.agency_case_ref + ("-R" if step.fault == "conflicting_duplicate" else "")
            extra = _excess(case.loaded_balance) if step.fault == "ack_balance_differs" else 0
            balance = _money(case.loaded_balance + extra, currency)
            return {"placement_id": pid, "agency_case_ref": ref, "balance": balance}
        if step.kind == "contact":
            if self._contacts[case.debtor_id] >= self.max_contacts_per_debtor:
                return None
            self._contacts[case.debtor_id] += 1
            return {
                "placement_id": pid,
                "channel": step.channel,
                "outcome": step.outcome,
                "attempted_at": now.isoformat(),
                "effective": step.outcome == "reached",
            }
        if step.kind == "promise":
            amount = out * step.share // 100
            if amount <= 0:
                return None
            return {
                "placement_id": pid,
                "promise_id": f"prm_{case.token}_{seq}",
                "amount": _money(amount, currency),
                "promised_date": (now + timedelta(days=step.days)).date().isoformat(),
            }
        if step.kind == "payment":
            payment = self._payment(case, step, out)
            if payment is None:
                return None
            return {
                "placement_id": payment[0],
                "payment_id": f"pay_{case.token}_{seq}",
                "amount": _money(payment[1], payment[2]),
                "paid_at": now.isoformat(),
            }
        if step.kind == "return":
            balance = _money(max(out, 0), currency)
            return {"placement_id": pid, "reason": "uncollectable", "balance": balance}
        return None if out > 0 else {"placement_id": pid, "reason": "paid_in_full"}

    def _payment(self, case: CaseFile, step: Step, out: int) -> tuple[str, int, str] | None:
        """(placement id, amount, currency) of a payment step, or None if nothing is owed."""
        if step.fault is None:
            amount = out * step.share // 100
            if amount <= 0:
                return None
            case.collected += amount
            return case.placement_id, amount, case.currency
        if step.fault == "over_payment":
            amount = max(out, 0) + _excess(case.balance)
            case.collected += amount
            return case.placement_id, amount, case.currency
        amount = max(1, case.loaded_balance * step.share // 100)
        if step.fault == "unknown_placement":
            return f"ghost_{case.token}", amount, case.currency
        if step.fault == "currency_mismatch":
            return case.placement_id, amount, "CNY" if case.currency == "USD" else "USD"
        return case.placement_id, amount, case.currency


def plan_placement(
    packet: PlacementCreated, *, agency_id: str, seed: int, fault_rate: float, now: datetime
) -> list[PlannedEvent]:
    """Every event a fresh agency would send for one placement if nothing else arrived."""
    planner = EventPlanner(agency_id=agency_id, seed=seed, fault_rate=fault_rate)
    case = planner.on_packet(packet)
    events: list[PlannedEvent] = []
    while case is not None and (event := planner.next_event(case, now)) is not None:
        events.append(event)
    return events


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


__all__ = [
    "PLACEMENT_FAULTS",
    "AgencyStats",
    "CaseFile",
    "EventPlanner",
    "FaultKind",
    "InjectedFault",
    "PlannedEvent",
    "SandboxWebhookAgency",
    "Step",
    "plan_placement",
]
