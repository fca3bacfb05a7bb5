"""A counting webhook agency for the chaos benchmark: an aiohttp endpoint on loopback that
verifies every packet's signature and keeps a log of every arrival, duplicates included.

It answers 200 to every correctly signed packet, after ``latency`` seconds (a real agency's
endpoint takes a while), as an agency that deduplicates on ``webhook-id`` does, and remembers
for each id when each copy arrived and when it was answered, and whether any copy carried
different bytes from the first. The chaos benchmark
(gateway.bench.chaos) reads that log to count duplicates and to tell, for each copy a killed
dispatcher never recorded, whether the agency had answered it before the kill.

The agency runs in the benchmark's own event loop, so a snapshot of its log and the kill that
follows it are never interleaved with a request.
"""

import asyncio
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiohttp import web

from gateway.bench.chaos_tally import Arrival
from gateway.bench.child import HOST
from gateway.errors import InboundError
from gateway.signing import VerifyingKey, read_headers, verify

RECEIVER_PATH = "/hooks"


@dataclass
class CountingAgency:
    """One agency endpoint that counts every ``webhook-id`` it receives (see module doc)."""

    agency_id: str
    keys: Sequence[VerifyingKey]
    latency: float = 0.0
    """Seconds between a packet's arrival and the answer."""
    arrivals: dict[str, list[Arrival]] = field(default_factory=dict)
    changed: set[str] = field(default_factory=set)
    """Ids of which a later copy carried different bytes from the first."""
    refused: int = 0
    """Requests refused: bad or missing signature headers (a healthy run has none)."""
    _digests: dict[str, bytes] = field(default_factory=dict)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        arrival = Arrival(time.time())
        try:
            headers = read_headers(request.headers.items())
            verify(headers, body, self.keys, now=int(arrival.received_at))
        except InboundError as exc:
            self.refused += 1
            return web.json_response({"error": str(exc)}, status=401)
        self.arrivals.setdefault(headers.msg_id, []).append(arrival)
        digest = hashlib.sha256(body).digest()
        if self._digests.setdefault(headers.msg_id, digest) != digest:
            self.changed.add(headers.msg_id)
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        response = web.json_response({"received": headers.msg_id})
        arrival.answered_at = time.time()
        return response

    @property
    def distinct(self) -> int:
        return len(self.arrivals)

    @property
    def received(self) -> int:
        return sum(len(copies) for copies in self.arrivals.values())


class AgencyServers:
    """Counting agencies served on loopback in the calling event loop, one port each."""

    def __init__(self, agencies: Sequence[CountingAgency]) -> None:
        self.agencies = list(agencies)
        self.urls: dict[str, str] = {}
        self._runners: list[web.AppRunner] = []

    async def start(self) -> None:
        for agency in self.agencies:
            app = web.Application()
            app.router.add_post(RECEIVER_PATH, agency.handle)
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            self._runners.append(runner)
            site = web.TCPSite(runner, HOST, 0)
            await site.start()
            port = int(runner.addresses[0][1])
            self.urls[agency.agency_id] = f"http://{HOST}:{port}{RECEIVER_PATH}"

    async def aclose(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()

    @property
    def distinct(self) -> int:
        """Distinct ids received so far by all the agencies together."""
        return sum(a.distinct for a in self.agencies)

    def arrivals(self) -> dict[str, list[Arrival]]:
        """Every id's arrivals, over all the agencies (ids are unique across agencies)."""
        return {key: copies for a in self.agencies for key, copies in a.arrivals.items()}


__all__ = ["RECEIVER_PATH", "AgencyServers", "CountingAgency"]
