"""Benchmark child processes: whatever a benchmark measures runs in one, spawned and pinned
to its own CPU, talking to the parent through a pipe.

Theory of operation
-------------------
Whatever is measured runs in its own ``spawn``-ed child process, so its peak RSS is its own
and it does not share an interpreter with the load generator. Parent and
child talk through a pipe with the small message types below. On a machine with two or more
usable CPUs the measured process and the load generator are pinned to different CPUs.
"""

import asyncio
import multiprocessing
import os
import resource
import sys
import traceback
from collections.abc import Callable, Coroutine, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnProcess
from typing import Any, TypeVar

import psutil  # type: ignore[import-untyped]

from gateway.errors import GatewayError

HOST = "127.0.0.1"
"""Where benchmark servers listen: loopback only."""
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

    async def kill(self) -> int | None:
        """SIGKILL the child (nothing of it runs afterwards) and wait for it; return its exit
        code. Its pipe stays open, so a pending ``receive`` ends in the usual error."""
        self._process.kill()
        await asyncio.to_thread(self._process.join, 5)
        return self._process.exitcode

    async def close(self, *, grace: float = 10.0) -> None:
        """Wait up to ``grace`` seconds for the child to exit, then terminate it."""
        if grace > 0:
            await asyncio.to_thread(self._process.join, grace)
        if self._process.is_alive():
            self._process.terminate()
            await asyncio.to_thread(self._process.join, 5)
        self._conn.close()


async def run_child(
    name: str, main: ChildMain, *args: Any, cpu: int | None, within: float = 600.0
) -> dict[str, Any]:
    """Run ``main(link, *args)`` in a child until it sends ``Finished`` (at most ``within``
    seconds); return what it measured with its ``peak_rss_mb``."""
    child = Child(name, main, *args, cpu=cpu)
    try:
        finished = await child.expect(Finished, within=within)
    finally:
        await child.close()
    return {**finished.result, "peak_rss_mb": finished.peak_rss_mb}


async def measure(name: str, main: ChildMain, *args: Any, cpu: int | None) -> dict[str, Any]:
    """``run_child`` for a child that reports ``seconds`` and ``cpu_seconds``, rounded to
    milliseconds."""
    result = await run_child(name, main, *args, cpu=cpu)
    result["seconds"] = round(float(result["seconds"]), 3)
    result["cpu_seconds"] = round(float(result["cpu_seconds"]), 3)
    return result


__all__ = [
    "CHILD_TIMEOUT_SECONDS",
    "HOST",
    "STOP",
    "Child",
    "ChildFailed",
    "ChildMain",
    "Finished",
    "ParentLink",
    "Pinned",
    "Ready",
    "cpu_plan",
    "measure",
    "peak_rss_mb",
    "pin",
    "run_child",
    "usable_cpus",
]
