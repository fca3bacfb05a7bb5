"""The outbound webhook adapter against a real aiohttp server on loopback: headers and
signatures, stable webhook-id with fresh timestamps, and every status class mapped to the
right error."""

import asyncio
import hashlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from email.utils import format_datetime

import aiohttp
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from adapters.webhook.adapter import WebhookAdapter
from gateway.clock import ManualClock, to_datetime
from gateway.errors import (
    DeliveryError,
    EndpointGone,
    OutcomeUnknown,
    PermanentDeliveryError,
    SignatureInvalid,
    ThrottledError,
    TransientDeliveryError,
)
from gateway.signing import (
    SigningKey,
    generate_ed25519_pair,
    generate_hmac_secret,
    parse_ed25519_private,
    parse_ed25519_public,
    parse_hmac_secret,
    read_headers,
    verify,
)
from tests.factories import outbound_packet, webhook_agency

START = 1_772_443_800.0  # 2026-03-02 09:30 UTC, a whole second
SECRET = parse_hmac_secret(generate_hmac_secret())


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Agency:
    """A fake agency endpoint: records requests and answers with a scripted response."""

    respond: Callable[[web.Request], Awaitable[web.StreamResponse]]
    received: list[Received] = field(default_factory=list)
    redirect_hits: int = 0

    async def hooks(self, request: web.Request) -> web.StreamResponse:
        self.received.append(Received(dict(request.headers), await request.read()))
        return await self.respond(request)

    async def elsewhere(self, request: web.Request) -> web.Response:
        self.redirect_hits += 1
        return web.Response(status=200, text="followed")


def answer(
    status: int, text: str = "", headers: dict[str, str] | None = None
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def respond(_request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, text=text, headers=headers)

    return respond


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def start(server_factory: AiohttpServer, agency: Agency) -> str:
    app = web.Application()
    app.router.add_post("/hooks", agency.hooks)
    app.router.add_route("*", "/elsewhere", agency.elsewhere)
    server = await server_factory(app, host="127.0.0.1")
    return str(server.make_url("/hooks"))


def adapter_for(
    url: str,
    session: aiohttp.ClientSession,
    clock: ManualClock,
    *,
    keys: list[SigningKey] | None = None,
    timeout: float = 15,
) -> WebhookAdapter:
    agency = webhook_agency(
        id="AGY_TEST",
        endpoint={"url": url, "allow_plain_http": True, "timeout_seconds": timeout},
    )
    return WebhookAdapter(agency=agency, keys=keys or [SECRET], session=session, clock=clock.now)


async def test_request_carries_standard_webhook_headers_that_verify(
    aiohttp_server: AiohttpServer, session: aiohttp.ClientSession
) -> None:
    agency = Agency(answer(200, "ok"))
    clock = ManualClock(START)
    packet = outbound_packet()
    await adapter_for(await start(aiohttp_server, agency), session, clock).send(packet)
    [request] = agency.received
    assert request.body == packet.payload
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"].startswith("agency-gateway/")
    headers = read_headers(request.headers.items())
    assert headers.msg_id == packet.dedupe_key
    assert headers.timestamp == int(START)
    assert verify(headers, request.body, [SECRET], now=int(clock.now())) == "v1"


async def test_webhook_id_is_stable_across_attempts_while_the_timestamp_is_fresh(
    aiohttp_server: AiohttpServer, session: aiohttp.ClientSession
) -> None:
    agency = Agency(answer(204))
    clock = ManualClock(START)
    adapter = adapter_for(await start(aiohttp_server, agency), session, clock)
    packet = outbound_packet()
    first = await adapter.send(packet)
    clock.advance(3600)
    second = await adapter.send(outbound_packet(attempt_no=2))
    ids = [r.headers["webhook-id"] for r in agency.received]
    stamps = [int(r.headers["webhook-timestamp"]) for r in agency.received]
    assert ids == [packet.dedupe_key, packet.dedupe_key]
    assert stamps == [int(START), int(START) + 3600]
    assert (first.request_timestamp, second.request_timestamp) == tuple(stamps)
    # Each attempt is signed for its own timestamp: the retry verifies now, the first would not.
    late = read_headers(agency.received[1].headers.items())
    assert verify(late, agency.received[1].body, [SECRET], now=int(clock.now())) == "v1"
    stale = read_headers(agency.received[0].headers.items())
    assert stale.signature != late.signature


async def test_2xx_gives_a_receipt_with_the_response_hash(
    aiohttp_server: AiohttpServer, session: aiohttp.ClientSession
) -> None:
    reply = '{"accepted": true, "ref": "受理-001"}'
    agency = Agency(answer(202, reply))
    clock = ManualClock(START)
    receipt = await adapter_for(await start(aiohttp_server, agency), session, clock).send(
        outbound_packet()
    )
    assert receipt.status == 202
    assert receipt.response_sha256 == hashlib.sha256(reply.encode()).hexdigest()
    assert receipt.response_excerpt == reply
    assert receipt.request_timestamp == int(START)


async def test_410_means_endpoint_gone(
    aiohttp_server: AiohttpServer, session: aiohttp.ClientSession
) -> None:
    clock = ManualClock(START)
    adapter = adapter_for(await start(aiohttp_server, Agency(answer(410, "gone"))), session, clock)
    with pytest.raises(EndpointGone) as info:
        await adapter.send(outbound_packet())
    assert info.value.status == 410
    assert info.value.agency_id == "AGY_TEST"
    assert isinstance(info.value, PermanentDeliveryError)


@pytest.mark.parametrize("status", [429, 503])
async def test_throttle_with_retry_after_seconds(
    status: int, aiohttp_server: AiohttpServer, session: aiohttp.ClientSession
) -> None:
    clock = ManualClock(START)
    agency = Agency(answer(status, "slow down", {"Retry-After": "120"}))
    adapter = adapter_for(await start(aiohttp_server, agency), session, clock)
    with pytest.raises(ThrottledError) as info:
        await adapter.send(outbound_packet())
    assert info.value.retry_after == 120.0
    assert info.value.status == status


async def test_throttle_with_retry_after_http_date(
    aiohttp_server: AiohttpServer, session: aiohttp.ClientSession
) -> None:
    clock = ManualClock(START)
    when = format_datetime(to_datetime(START) + timedelta(minutes=5), usegmt=True)
    agency = Agency(answer(503, "maintenance", {"Retry-After": when}))
    adapter = adapter_for(await start(aiohttp_server, agency), session, clock)
    with pytest.raises(ThrottledError) as info:
        await adapter.send(outbound_packet())
    assert info.value.retry_after == 300.0


async def test_throttle_without_retry_after_has_none(
    aiohttp_server: AiohttpServer, session: aiohttp.ClientSession
) -> None:
    clock = ManualClock(START)
    adapter = adapter_for(await start(aiohttp_server, Agency(answer(429))), session, clock)
    with pytest.raises(ThrottledError) as info:
        await adapter.send(outbound_packet())
    assert info.value.retry_after is None


@pytest.mark.parametrize("status", [500, 408])
async def test_server_errors_are_transient_not_throttling(
    status: int, aiohttp_server: AiohttpServer, session: aiohttp.ClientSession
) -> None:
    clock = ManualClock(START)
    adapter = adapter_for(await start(aiohttp_server, Agency(answer(status))), session, clock)
    with pytest.raises(TransientDeliveryError) as info:
        await adapter.send(outbound_packet())
    assert type(info.value) is TransientDeliveryError
    assert info.value.status == status


@pytest.mark.parametrize("status", [400, 401, 404, 422])
async def test_client_errors_are_permanent(
    status: int, aiohttp_server: AiohttpServer, session: aiohttp.ClientSession
) -> None:
    clock = ManualClock(START)
    agency = Agency(answer(status, '{"error": "bad packet"}'))
    adapter = adapter_for(await start(aiohttp_server, agency), session, clock)
    with pytest.raises(PermanentDeliveryError) as info:
        await adapter.send(outbound_packet())
    assert type(info.value) is PermanentDeliveryError
    assert info.value.status == status
    assert f"HTTP {status}" in str(info.value)
    assert "AGY_TEST" in str(info.value)


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_redirect_is_permanent_and_never_followed(
    status: int, aiohttp_server: AiohttpServer, session: aiohttp.ClientSession
) -> None:
    async def redirect(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, headers={"Location": "/elsewhere"})

    agency = Agency(redirect)
    clock = ManualClock(START)
    adapter = adapter_for(await start(aiohttp_server, agency), session, clock)
    with pytest.raises(PermanentDeliveryError, match="redirects are not followed") as info:
        await adapter.send(outbound_packet())
    assert info.value.status == status
    assert len(agency.received) == 1
    assert agency.redirect_hits == 0


async def test_accepted_then_silent_is_outcome_unknown(
    aiohttp_server: AiohttpServer, session: aiohttp.ClientSession
) -> None:
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.StreamResponse:
        await asyncio.wait_for(release.wait(), timeout=30)
        return web.Response(status=200)

    agency = Agency(hang)
    clock = ManualClock(START)
    adapter = adapter_for(await start(aiohttp_server, agency), session, clock, timeout=0.3)
    try:
        with pytest.raises(OutcomeUnknown) as info:
            await adapter.send(outbound_packet())
    finally:
        release.set()
    assert not isinstance(info.value, TransientDeliveryError | PermanentDeliveryError)
    # The agency did get the whole packet: this is why a blind "failed" would be wrong.
    assert agency.received[0].body == outbound_packet().payload


async def test_closed_port_is_transient(session: aiohttp.ClientSession) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    clock = ManualClock(START)
    adapter = adapter_for(f"http://127.0.0.1:{port}/hooks", session, clock)
    with pytest.raises(TransientDeliveryError) as info:
        await adapter.send(outbound_packet())
    assert type(info.value) is TransientDeliveryError
    assert "cannot connect" in str(info.value)


async def test_v1a_signature_verifies_with_the_agencys_public_key(
    aiohttp_server: AiohttpServer, session: aiohttp.ClientSession
) -> None:
    private, public = generate_ed25519_pair()
    _other_private, other_public = generate_ed25519_pair()
    agency = Agency(answer(200))
    clock = ManualClock(START)
    adapter = adapter_for(
        await start(aiohttp_server, agency),
        session,
        clock,
        keys=[parse_ed25519_private(private)],
    )
    await adapter.send(outbound_packet())
    [request] = agency.received
    headers = read_headers(request.headers.items())
    assert headers.signature.startswith("v1a,")
    now = int(clock.now())
    assert verify(headers, request.body, [parse_ed25519_public(public)], now=now) == "v1a"
    with pytest.raises(SignatureInvalid):
        verify(headers, request.body, [parse_ed25519_public(other_public)], now=now)


async def test_rotation_sends_both_signatures_and_each_key_verifies(
    aiohttp_server: AiohttpServer, session: aiohttp.ClientSession
) -> None:
    new = parse_hmac_secret(generate_hmac_secret())
    agency = Agency(answer(200))
    clock = ManualClock(START)
    adapter = adapter_for(await start(aiohttp_server, agency), session, clock, keys=[new, SECRET])
    await adapter.send(outbound_packet())
    [request] = agency.received
    headers = read_headers(request.headers.items())
    assert len(headers.signature.split(" ")) == 2
    for key in (new, SECRET):
        assert verify(headers, request.body, [key], now=int(clock.now())) == "v1"


async def test_every_failure_is_a_delivery_error_naming_the_agency(
    aiohttp_server: AiohttpServer, session: aiohttp.ClientSession
) -> None:
    """The dispatcher catches DeliveryError only; nothing from aiohttp may leak past."""
    statuses = iter([500, 429, 400, 410, 302])

    async def varied(request: web.Request) -> web.StreamResponse:
        return web.Response(status=next(statuses), headers={"Location": "/elsewhere"})

    clock = ManualClock(START)
    adapter = adapter_for(await start(aiohttp_server, Agency(varied)), session, clock)
    for _ in range(5):
        with pytest.raises(DeliveryError) as info:
            await adapter.send(outbound_packet())
        assert info.value.agency_id == "AGY_TEST"
