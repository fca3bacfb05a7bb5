"""Holding a role while running it: the thin loop around the lease store.

``holding`` takes a role for the duration of a block (an allocation round) and renews it
while the block runs; ``lead`` keeps a process a candidate for a role for as long as it runs
(the schedulers, the evidence sequencer) and runs the role's work only while it holds it.
Either way a holder that cannot renew for two thirds of a lease stops its work before the
lease expires, so another process can take over without the two overlapping.
"""

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress

from gateway.cluster.lease import Lease
from gateway.cluster.store import LeaseStore
from gateway.errors import RoleHeld

log = logging.getLogger(__name__)

_RENEWALS_PER_LEASE = 3


def holder_id() -> str:
    """This process among the cluster's: host, pid and a random suffix (a restarted process
    on a recycled pid is a new holder)."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@asynccontextmanager
async def holding(
    store: LeaseStore, name: str, holder: str, *, seconds: float
) -> AsyncIterator[Lease]:
    """Hold role ``name`` while the block runs, renewing it every third of ``seconds``.

    Raise RoleHeld at once when another process holds it. If the role cannot be renewed (the
    database is unreachable, or another process took it), the block is cancelled before the
    lease can expire and RoleHeld is raised in its place."""
    lease = await store.acquire(name, holder, seconds=seconds)
    if lease is None:
        current = await store.current(name)
        by = f" by {current.holder} until {current.expires_at:%H:%M:%S} UTC" if current else ""
        raise RoleHeld(f"the {name} role is held{by}; try again once it is done")
    body = asyncio.current_task()
    assert body is not None
    lost: list[str] = []

    async def keep() -> None:
        renewed_at = time.monotonic()
        while True:
            await asyncio.sleep(seconds / _RENEWALS_PER_LEASE)
            try:
                again = await store.acquire(name, holder, seconds=seconds)
            except Exception as exc:  # the database is away: retry until the margin is used
                log.warning("cannot renew the %s role: %s", name, exc)
                again = lease if time.monotonic() - renewed_at < seconds * 2 / 3 else None
            else:
                renewed_at = time.monotonic()
            if again is None or again.token != lease.token:
                lost.append(f"the {name} role was lost (token {lease.token}); its work stopped")
                body.cancel()
                return

    keeper = asyncio.create_task(keep(), name=f"lease {name}")
    try:
        yield lease
    except asyncio.CancelledError:
        if lost and body.uncancel() == 0:
            raise RoleHeld(lost[0]) from None
        raise
    finally:
        keeper.cancel()
        with suppress(asyncio.CancelledError):
            await keeper
        if not lost:
            with suppress(Exception):
                await store.release(lease)


async def lead(
    store: LeaseStore,
    name: str,
    holder: str,
    *,
    seconds: float,
    stop: asyncio.Event,
    work: Callable[[Lease, asyncio.Event], Awaitable[object]],
) -> None:
    """Until ``stop``: take role ``name`` when it is free and run ``work(lease, stop)`` while
    holding it; stand by otherwise, asking again every third of ``seconds``. ``work`` returns
    when ``stop`` is set; if the role is lost it is cancelled, and this process becomes a
    candidate again."""
    while not stop.is_set():
        try:
            async with holding(store, name, holder, seconds=seconds) as lease:
                log.info("took the %s role (token %d)", name, lease.token)
                await work(lease, stop)
        except RoleHeld as exc:
            if "lost" in str(exc):
                log.warning("%s", exc)
        except Exception:
            log.exception("the %s role failed; standing by", name)
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=seconds / _RENEWALS_PER_LEASE)


__all__ = ["holder_id", "holding", "lead"]
