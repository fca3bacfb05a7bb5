"""The process the columnar events pass runs in: never the gateway's own.

Theory of operation
-------------------
DuckDB's sqlite scanner carries its own copy of SQLite. Two copies of SQLite in one process
release each other's POSIX locks when either closes a descriptor of the database file
(https://www.sqlite.org/howtocorrupt.html, 2.2.1), and the scanner maps the WAL index
(``-shm``) that the gateway's aiosqlite connections map too: an ATTACH beside them has
already ended a process with SIGBUS. So the events pass runs in one worker process, started
lazily by ``spawn`` (the gateway has threads and an event loop: no ``fork``) and reused, run
after run: DuckDB and its scanner extension are loaded once per worker
(gateway.reconciliation.columnar keeps them per process). The worker ignores SIGINT: the
gateway decides when it stops (``shutdown``, called by the composition root's ``aclose``
and at interpreter exit), and the worker exits when the gateway is gone, however it ended.

PostgreSQL stores go through the same worker though the postgres scanner shares no file
with the gateway: one code path, tested the same on both databases, and DuckDB's memory
and its threads stay out of the process serving webhooks. What crosses the pipe is small:
the job (``EventsJob``: the URL, event ids, the contact rules) and the breaks, counts and
payments (``EventPass``), pickled.

A worker that dies (killed, SIGBUS, out of memory) breaks the pool: the run gets
``ColumnarWorkerLost`` naming the process, its signal or exit code and the run, so the run
is marked failed at its last checkpoint and resumes as any failed run; the pool is dropped
and the next pass starts a fresh worker.
"""

import asyncio
import atexit
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import Any, TypeVar

from gateway.errors import GatewayError
from gateway.reconciliation import columnar
from gateway.reconciliation.columnar import EventPass
from gateway.reconciliation.contact_rules import ContactRules
from gateway.reconciliation.match_inputs import AgencyPayment

T = TypeVar("T")


class ColumnarWorkerLost(GatewayError):
    """The worker process running the columnar events pass died before it answered."""


@dataclass(frozen=True, slots=True)
class EventsJob:
    """One events pass, as the worker receives it (gateway.reconciliation.columnar
    ``audit_events``). ``url`` may hold the database password: it is never logged."""

    url: str
    run_id: int
    after: int
    upto: int
    emit_after: int
    window: int
    rules: ContactRules | None


def events_pass(job: EventsJob) -> EventPass:
    """In the worker: open DuckDB over the store and run the events pass."""
    with columnar.open_store(job.url) as con:
        return columnar.audit_events(
            con,
            after=job.after,
            upto=job.upto,
            emit_after=job.emit_after,
            window=job.window,
            rules=job.rules,
        )


def _worker_started() -> None:
    """In the worker, once: Ctrl-C reaches the whole process group, but the gateway decides
    when the worker stops; and a gateway killed outright (SIGKILL, OOM) must not leave the
    worker behind it, waiting for work forever."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()


def _exit_with(parent: BaseProcess) -> None:
    parent.join()  # returns when the parent's end of the sentinel pipe closes: it is gone
    os._exit(1)


_LOCK = threading.Lock()
_pool: ProcessPoolExecutor | None = None


def executor() -> ProcessPoolExecutor:
    """The worker pool (one process), started on first use."""
    global _pool
    with _LOCK:
        if _pool is None:
            _pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_started,
            )
        return _pool


def _drop(pool: ProcessPoolExecutor) -> None:
    """Blocking: forget a broken pool, so the next pass starts a fresh worker, and wait for
    the pool's manager thread to have reaped its process (whose exit code is then known)."""
    global _pool
    with _LOCK:
        if _pool is pool:
            _pool = None
    pool.shutdown(wait=True, cancel_futures=True)


def packed_events_pass(job: EventsJob) -> tuple[EventPass, list[tuple[Any, ...]]]:
    """In the worker: ``events_pass`` with its payments as plain tuples, which cross the
    pipe in a third of the time of a dict of named tuples (tens of thousands a run)."""
    found = events_pass(job)
    payments = [tuple(p) for p in found.payments.values()]
    found.payments = {}
    return found, payments


async def run_events_pass(job: EventsJob) -> EventPass:
    """The events pass of ``job`` in the worker process; ``ColumnarWorkerLost`` if the
    worker dies first."""
    found, payments = await call(
        packed_events_pass,
        job,
        doing=f"the events pass of reconciliation run {job.run_id}; the run stops at its "
        f"last checkpoint (agency-gateway reconcile --resume {job.run_id})",
    )
    unpack = AgencyPayment._make
    found.payments = {(p.placement_id, p.ref): p for p in map(unpack, payments)}
    return found


async def call(fn: Callable[..., T], *args: Any, doing: str) -> T:
    """``fn(*args)`` in the worker process (``fn`` a module-level function, the arguments
    and the result picklable); ``ColumnarWorkerLost`` naming ``doing`` if the worker dies
    first."""
    pool = executor()
    processes: list[BaseProcess] = []
    try:
        future: Future[T] = pool.submit(fn, *args)
        # The pool's own processes (the executor keeps them by pid): to name the one lost.
        processes = list(pool._processes.values())
        return await asyncio.wrap_future(future)
    except BrokenProcessPool as exc:
        await asyncio.to_thread(_drop, pool)
        raise ColumnarWorkerLost(
            f"the columnar worker process {_fate(processes)} during {doing}; "
            "the next call starts a new worker"
        ) from exc


def _fate(processes: list[BaseProcess]) -> str:
    """ "12345 was killed by SIGKILL", "12345 exited with status 1", ..."""
    if not processes:
        return "could not be started"
    process = processes[0]
    code = process.exitcode
    if code is None:
        return f"{process.pid} stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"{process.pid} was killed by {name}"
    return f"{process.pid} exited with status {code}"


def shutdown() -> None:
    """Stop the worker, if one was started: it ends the job it is on (a run stopped under
    it resumes at its checkpoint) or, if that takes more than a few seconds, is terminated
    (it only reads the store)."""
    global _pool
    with _LOCK:
        pool, _pool = _pool, None
    if pool is None:
        return
    processes = list(pool._processes.values())
    # (typeshed types this attribute as the wake-up pipe; it is the manager thread)
    manager: threading.Thread | None = getattr(pool, "_executor_manager_thread", None)
    pool.shutdown(wait=False, cancel_futures=True)  # the manager thread tells the worker
    # Only the pool's manager thread reaps the worker (two threads waiting for one child
    # race for its exit status): here, wait for its exit, or end it.
    for process in processes:
        if not wait([process.sentinel], timeout=5):
            process.terminate()
    if manager is not None:
        manager.join()


atexit.register(shutdown)


__all__ = [
    "ColumnarWorkerLost",
    "EventsJob",
    "call",
    "events_pass",
    "executor",
    "packed_events_pass",
    "run_events_pass",
    "shutdown",
]
