"""The sandbox webhook agency: a simulated collection agency on loopback, real protocol.

Theory of operation
-------------------
The pure half, the agency's script, is ``gateway/sandbox/agency_script.py``.

``SandboxWebhookAgency`` is the I/O shell. ``POST /hooks`` verifies, dedupes on ``webhook-id``,
parses and feeds the planner; the receive path is a few dict operations plus one pydantic
parse. Each case that gained events goes to the ``EventPusher``
(``gateway/sandbox/event_pusher.py``), whose workers send every case's events to the gateway
in script order (acknowledgement first).

``fault_log`` lists the faults injected and the status the gateway answered to each.

A packet that lists documents (``placement.created``, a renewal's ``placement.amended``)
has them fetched and checked in the background by the ``DocumentChecker``
(``gateway/sandbox/document_check.py``): size, SHA-256 and the letter's signature; a
``placement.recalled`` makes it check that the gateway now refuses them.
"""

import asyncio
import hashlib
from collections.abc import AsyncIterator, Sequence
from typing import Final

from aiohttp import web
from pydantic import TypeAdapter, ValidationError

from gateway.clock import SystemClock
from gateway.errors import InboundError, MalformedPayload, SchemaViolation
from gateway.ports import Clock
from gateway.sandbox.agency_script import EventPlanner
from gateway.sandbox.document_check import DocumentChecker
from gateway.sandbox.event_pusher import AgencyStats, EventPusher, InjectedFault
from gateway.signing import SigningKey, VerifyingKey, read_headers, verify
from schemas.packets import CasePacket

_PACKET_ADAPTER: Final[TypeAdapter[CasePacket]] = TypeAdapter(CasePacket)


def _problem(
    status: int, slug: str, title: str, detail: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"type": f"/problems/{slug}", "title": title, "status": status, "detail": detail}
    return web.json_response(
        body, status=status, content_type="application/problem+json", headers=headers
    )


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
        letter_trust: the lender's signing certificate (PEM) the authorisation letters are
            verified against; None: a letter's signature need only be intact.
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
        letter_trust: bytes | None = None,
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
        self._clock: Clock = clock or SystemClock()
        self._seen: dict[str, bytes] = {}
        self.pusher = EventPusher(
            agency_id=agency_id,
            planner=self.planner,
            signing_keys=signing_keys,
            stats=self.stats,
            fault_log=self.fault_log,
            clock=self._clock,
            seed=seed,
            concurrency=concurrency,
            request_timeout=request_timeout,
            max_attempts=max_attempts,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
        )
        self.documents = DocumentChecker(
            agency_id=agency_id,
            signing_keys=signing_keys,
            clock=self._clock,
            letter_trust=letter_trust,
            request_timeout=request_timeout,
        )
        if gateway_url is not None:
            self.set_gateway_url(gateway_url)

    # -- configuration ------------------------------------------------------------------

    @property
    def gateway_url(self) -> str | None:
        return self.pusher.gateway_url

    @gateway_url.setter
    def gateway_url(self, url: str) -> None:
        self.set_gateway_url(url)

    def set_gateway_url(self, url: str) -> None:
        """Point the pusher at the gateway; events planned so far start to flow."""
        self.pusher.set_gateway_url(url)
        self.documents.set_gateway_url(url)

    @property
    def events_url(self) -> str | None:
        return self.pusher.events_url

    @property
    def pending_events(self) -> int:
        """Planned events not yet sent, refused or abandoned (including those in flight)."""
        return self.pusher.pending

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
        pid = getattr(packet.data, "placement_id", None)  # a statement names no placement
        case = self.planner.cases.get(pid) if pid is not None else None
        before = case.remaining if case is not None else 0
        case = self.planner.on_packet(packet)
        if case is not None:
            self.pusher.schedule(case, case.remaining - before)
        if packet.type in ("placement.created", "placement.amended") and packet.data.documents:
            self.documents.schedule(packet.data.placement_id, packet.data.documents)
        elif packet.type == "placement.recalled":
            self.documents.recalled(packet.data.placement_id)
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
            "pending_events": self.pusher.pending,
            "documents": self.documents.stats.as_dict(),
        }

    # -- pushing events ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start the pusher (idempotent)."""
        await self.pusher.start()

    async def aclose(self) -> None:
        """Stop the pusher and the document checks; events not yet sent stay pending."""
        await self.pusher.aclose()
        await self.documents.aclose()

    async def drain(self, timeout: float) -> bool:  # noqa: ASYNC109 (the demo's contract)
        """Wait until every planned event was sent, refused or abandoned, and every document
        check finished; False on timeout."""
        return await self.pusher.drain(timeout) and await self.documents.drain(timeout)


__all__ = ["SandboxWebhookAgency"]
