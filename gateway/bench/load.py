"""The HTTP side of the benchmarks: the load generator that POSTs prepared requests on
keep-alive connections, and the bare aiohttp endpoints the gateway is compared with.

``post_all`` drives a server from the parent, pinned away from it; ``post_payloads`` is the
same generator as a child main, the baseline for outbound delivery. ``serve_bare`` is a child
main that reads each body and answers 200: the baseline for inbound webhooks and the receiver
for outbound ones. Child processes and their messages are gateway.bench.child.
"""

import asyncio
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from gateway.bench.child import HOST, STOP, Finished, ParentLink, Ready, peak_rss_mb
from gateway.heap import settle_heap


async def serve_app(link: ParentLink, app: web.Application) -> None:
    """Child side: serve ``app`` on loopback, say ``Ready(port)``, run until told to stop.
    The heap is settled first, as ``serve`` does (the baseline's too, so both sides match)."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    settle_heap()
    try:
        site = web.TCPSite(runner, HOST, 0)
        await site.start()
        link.send(Ready(int(runner.addresses[0][1])))
        while await link.receive() != STOP:
            pass
    finally:
        await runner.cleanup()


async def _accept(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(status=200)


async def serve_bare(link: ParentLink) -> None:
    """Child main, the baseline server until told to stop: read the body, answer 200."""
    app = web.Application()
    app.router.add_post("/{tail:.*}", _accept)
    await serve_app(link, app)
    link.send(Finished(peak_rss_mb()))


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    """A POST ready to go: signing and serialising happen before the clock starts."""

    path: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class LoadResult:
    statuses: Mapping[int, int]
    seconds: float

    @property
    def ok(self) -> int:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)


def client_session(concurrency: int) -> aiohttp.ClientSession:
    """A keep-alive session sized like the gateway's own (see gateway.bootstrap)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(
            limit=max(256, concurrency), limit_per_host=max(64, concurrency)
        ),
        timeout=aiohttp.ClientTimeout(total=60),
    )


async def post_all(
    base_url: str, requests: Sequence[PreparedRequest], *, concurrency: int
) -> LoadResult:
    """POST every request with ``concurrency`` in flight on keep-alive connections."""
    statuses: Counter[int] = Counter()
    pending = iter(requests)
    async with client_session(concurrency) as session:

        async def worker() -> None:
            for r in pending:
                async with session.post(base_url + r.path, data=r.body, headers=r.headers) as resp:
                    await resp.read()
                    statuses[resp.status] += 1

        started = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            for _ in range(concurrency):
                tg.create_task(worker())
        seconds = time.perf_counter() - started
    return LoadResult(dict(statuses), seconds)


async def post_payloads(
    link: ParentLink, base_url: str, path: str, payloads: Sequence[bytes], concurrency: int
) -> None:
    """Child main, the outbound baseline: POST every payload with ``concurrency`` in flight
    and record nothing; report the time from the first POST to the last answer."""
    headers = {"content-type": "application/json"}
    requests = [PreparedRequest(path, headers, body) for body in payloads]
    settle_heap()  # as the gateway's sender does (bench webhook-out)
    cpu0 = time.process_time()
    result = await post_all(base_url, requests, concurrency=concurrency)
    cpu = time.process_time() - cpu0
    link.send(
        Finished(
            peak_rss_mb(),
            {
                "seconds": result.seconds,
                "cpu_seconds": cpu,
                "delivered": result.ok,
                "statuses": dict(result.statuses),
            },
        )
    )


__all__ = [
    "LoadResult",
    "PreparedRequest",
    "client_session",
    "post_all",
    "post_payloads",
    "serve_app",
    "serve_bare",
]
