"""Benchmark machinery shared by every scenario: child processes, CPU pinning, the HTTP load
generator, the bare aiohttp baseline app, peak RSS, and the round-by-round summary.

Theory of operation
-------------------
A benchmark compares the gateway with a bare baseline doing the same job on the same load, in
one run, measured interleaved (baseline, ours, baseline, ours...) so that machine noise hits
both sides alike; the headline is the median of the per-round ratios (ours / baseline).

Whatever is measured runs in its own ``spawn``-ed child process, so its peak RSS is its own
and it does not share an interpreter with the load generator. Parent and
child talk through a pipe with the small message types below. On a machine with two or more
usable CPUs the measured process and the load generator are pinned to different CPUs.
"""

import asyncio
import multiprocessing
import os
import platform
import resource
import sqlite3
import statistics
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnProcess
from typing import Any, TypeVar

import aiohttp
import psutil  # type: ignore[import-untyped]
from aiohttp import web

from gateway.errors import GatewayError

HOST = "127.0.0.1"
CHILD_TIMEOUT_SECONDS = 120.0
"""How long a benchmark child may stay silent before the run is abandoned."""

ChildMain = Callable[..., Coroutine[Any, Any, None]]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Ready:
    """Child → parent: the child serves on ``port`` (0 when it serves nothing)."""

    port: int


@dataclass(frozen=True, slots=True)
class Finished:
    """Child → parent, last message: its peak RSS and whatever it measured itself."""

    peak_rss_mb: float
    result: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ChildFailed:
    """Child → parent: the child raised; ``detail`` is its traceback."""

    detail: str


STOP = "stop"
"""Parent → child: stop serving, clean up, answer with ``Finished``."""


def peak_rss_mb() -> float:
    """Peak resident set size of the calling process so far, in MB.

    Linux's ``VmHWM`` belongs to this process image; ``ru_maxrss`` would also count the copy
    of the parent that ``spawn`` forks before it execs the child.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def usable_cpus() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def cpu_plan() -> tuple[int | None, int | None]:
    """(CPU for the measured process, CPU for the load side), or Nones on a single CPU."""
    cpus = usable_cpus()
    if len(cpus) < 2 or not hasattr(os, "sched_setaffinity"):
        return None, None
    return cpus[-1], cpus[0]


def pin(cpu: int | None) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


class Pinned:
    """Pin the calling process to one CPU for a ``with`` block, then restore its affinity."""

    def __init__(self, cpu: int | None) -> None:
        self._cpu = cpu
        self._saved: set[int] | None = None

    def __enter__(self) -> None:
        if self._cpu is not None and hasattr(os, "sched_setaffinity"):
            self._saved = os.sched_getaffinity(0)
            pin(self._cpu)

    def __exit__(self, *_exc: object) -> None:
        if self._saved is not None:
            os.sched_setaffinity(0, self._saved)


class ParentLink:
    """The child's end of the pipe."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def send(self, message: object) -> None:
        self._conn.send(message)

    async def receive(self) -> object:
        return await asyncio.to_thread(self._conn.recv)


def _child_entry(conn: Connection, cpu: int | None, main: ChildMain, args: tuple[Any, ...]) -> None:
    pin(cpu)
    try:
        asyncio.run(main(ParentLink(conn), *args))
    except BaseException:
        try:
            conn.send(ChildFailed(traceback.format_exc(limit=20)))
        except OSError:
            pass
        raise
    finally:
        conn.close()


@contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Keep ``spawn`` from re-importing the parent's ``__main__`` (the CLI, pytest) in the
    child: a child's peak RSS must be its own work's, not the parent's imports."""
    main = sys.modules["__main__"]
    saved: dict[str, Any] = {
        k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__
    }
    main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.update(saved)


class Child:
    """A spawned benchmark process running ``main(link, *args)`` in its own event loop."""

    def __init__(self, name: str, main: ChildMain, *args: Any, cpu: int | None) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.name = name
        self._conn, child_conn = ctx.Pipe()
        self._process: SpawnProcess = ctx.Process(
            target=_child_entry, args=(child_conn, cpu, main, args), name=name, daemon=True
        )
        with _main_module_hidden():
            self._process.start()
        child_conn.close()
        self._ps = psutil.Process(self._process.pid)

    def send(self, message: object) -> None:
        self._conn.send(message)

    async def receive(self, within: float = CHILD_TIMEOUT_SECONDS) -> object:
        """The child's next message; a child failure or silence raises GatewayError."""
        if not await asyncio.to_thread(self._conn.poll, within):
            raise GatewayError(f"benchmark process {self.name} sent nothing for {within:.0f} s")
        try:
            message: object = self._conn.recv()
        except EOFError:
            await asyncio.to_thread(self._process.join, 5)
            raise GatewayError(
                f"benchmark process {self.name} exited with code {self._process.exitcode}"
            ) from None
        if isinstance(message, ChildFailed):
            raise GatewayError(f"benchmark process {self.name} failed:\n{message.detail}")
        return message

    async def expect(self, kind: type[T], within: float = CHILD_TIMEOUT_SECONDS) -> T:
        message = await self.receive(within)
        if not isinstance(message, kind):
            raise GatewayError(
                f"benchmark process {self.name} sent {message!r}, expected {kind.__name__}"
            )
        return message

    def cpu_seconds(self) -> float:
        """User + system CPU of the child (all its threads) so far."""
        times = self._ps.cpu_times()
        return float(times.user + times.system)

    async def close(self, *, grace: float = 10.0) -> None:
        """Wait up to ``grace`` seconds for the child to exit, then terminate it."""
        if grace > 0:
            await asyncio.to_thread(self._process.join, grace)
        if self._process.is_alive():
            self._process.terminate()
            await asyncio.to_thread(self._process.join, 5)
        self._conn.close()


async def serve_app(link: ParentLink, app: web.Application) -> None:
    """Child side: serve ``app`` on loopback, say ``Ready(port)``, run until told to stop."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
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


def rate(done: int, seconds: float) -> float:
    return round(done / seconds, 1) if seconds > 0 else 0.0


def summarise(rounds: Sequence[Mapping[str, Any]], *, cpu_key: str) -> dict[str, Any]:
    """The headline numbers over all rounds.

    ``ratio`` is the median of the per-round rate ratios (ours / baseline). ``cpu_ratio`` is
    the median of baseline CPU per item / ours (``cpu_key``): the rate ratio the two would
    reach if each had a CPU to itself, which other load on the machine barely moves.
    """
    # CPU times tick in 10 ms steps: a tiny run may show none at all.
    cpu_ratios = [r["baseline"][cpu_key] / r["ours"][cpu_key] for r in rounds if r["ours"][cpu_key]]
    out: dict[str, Any] = {
        "ratio": round(statistics.median(r["ratio"] for r in rounds), 3),
        "cpu_ratio": round(statistics.median(cpu_ratios), 3) if cpu_ratios else None,
    }
    for side in ("ours", "baseline"):
        out[side] = {
            "rate_per_s": round(statistics.median(r[side]["rate_per_s"] for r in rounds), 1),
            cpu_key: round(statistics.median(r[side][cpu_key] for r in rounds), 3),
            "peak_rss_mb": max(r[side]["peak_rss_mb"] for r in rounds),
            "seconds": [r[side]["seconds"] for r in rounds],
        }
    return out


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages: other work on the machine skews every number."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else []


def context(
    *, database: str, pinning: Mapping[str, int | None], load_at_start: Sequence[float]
) -> dict[str, Any]:
    """Where the numbers come from: interpreter, machine, libraries, database, CPU pinning,
    and how busy the machine was."""
    return {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(usable_cpus()),
        "cpu_pinning": dict(pinning),
        "aiohttp": aiohttp.__version__,
        "sqlite": sqlite3.sqlite_version,
        "database": database,
        "load_average_at_start": list(load_at_start),
        "load_average_at_end": load_average(),
    }


class Progress:
    """Progress lines on stderr, only when asked for: stdout carries the JSON alone."""

    def __init__(self, enabled: bool, name: str) -> None:
        self._enabled = enabled
        self._name = name
        self._t0 = time.perf_counter()

    def __call__(self, message: str) -> None:
        if self._enabled:
            elapsed = time.perf_counter() - self._t0
            sys.stderr.write(f"[{self._name} {elapsed:6.1f}s] {message}\n")
            sys.stderr.flush()


__all__ = [
    "HOST",
    "STOP",
    "Child",
    "ChildFailed",
    "Finished",
    "LoadResult",
    "ParentLink",
    "Pinned",
    "PreparedRequest",
    "Progress",
    "Ready",
    "client_session",
    "context",
    "cpu_plan",
    "load_average",
    "peak_rss_mb",
    "pin",
    "post_all",
    "post_payloads",
    "rate",
    "serve_app",
    "serve_bare",
    "summarise",
]
