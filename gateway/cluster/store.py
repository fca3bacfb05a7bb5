"""The lease rows and the scheduled-run records in the database (thin I/O around
gateway.cluster.lease): the same statements on SQLite and PostgreSQL."""

import time
from collections.abc import Callable
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from gateway.clock import to_datetime
from gateway.cluster.lease import Lease, claim, release
from gateway.store.cluster_tables import ClusterLease, ClusterRun
from gateway.store.database import Database

LEASES = ClusterLease.__table__  # type: ignore[attr-defined]
RUNS = ClusterRun.__table__  # type: ignore[attr-defined]

RUNS_KEPT_DAYS = 7
"""Run records older than this are deleted when a process takes the schedulers role."""


class LeaseStore:
    """Leases and run records in ``db``. ``clock`` is the wall clock (seconds since the
    epoch): leases measure the processes' lives, not the business time tests may move."""

    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    def now(self) -> datetime:
        return to_datetime(self._clock())

    async def current(self, name: str) -> Lease | None:
        async with self._db.snapshot() as conn:
            row = (await conn.execute(sa.select(LEASES).where(LEASES.c.name == name))).first()
        return None if row is None else _lease(row)

    async def acquire(self, name: str, holder: str, *, seconds: float) -> Lease | None:
        """Take or renew role ``name`` for ``seconds``; None when another process holds it
        (or won the same race)."""
        now = self.now()
        try:
            async with self._db.transaction() as conn:
                row = (await conn.execute(sa.select(LEASES).where(LEASES.c.name == name))).first()
                current = None if row is None else _lease(row)
                wanted = claim(current, name, holder, now=now, seconds=seconds)
                if wanted is None:
                    return None
                if current is None:
                    await conn.execute(LEASES.insert().values(**_values(wanted)))
                    return wanted
                changed = await conn.execute(
                    _unchanged(LEASES.update(), current).values(**_values(wanted))
                )
                return wanted if changed.rowcount == 1 else None
        except IntegrityError:
            return None  # another process inserted the first row at the same time

    async def release(self, lease: Lease) -> None:
        """End ``lease`` now if it is still ours, so another process takes the role at once."""
        async with self._db.transaction() as conn:
            row = (await conn.execute(sa.select(LEASES).where(LEASES.c.name == lease.name))).first()
            if row is None:
                return
            current = _lease(row)
            ended = release(current, lease.holder, now=self.now())
            if ended is None or current.token != lease.token:
                return
            await conn.execute(
                _unchanged(LEASES.update(), current).values(expires_at=ended.expires_at)
            )

    async def run_started(self, job: str, lease: Lease) -> int:
        """Record that ``job`` starts under ``lease``; return the run's id."""
        async with self._db.transaction() as conn:
            result = await conn.execute(
                RUNS.insert().returning(RUNS.c.id),
                [
                    {
                        "job": job,
                        "holder": lease.holder,
                        "token": lease.token,
                        "started_at": self.now(),
                        "failed": False,
                    }
                ],
            )
            return int(result.scalar_one())

    async def run_finished(self, run_id: int, *, failed: bool) -> None:
        async with self._db.transaction() as conn:
            await conn.execute(
                RUNS.update()
                .where(RUNS.c.id == run_id)
                .values(finished_at=self.now(), failed=failed)
            )

    async def prune_runs(self) -> int:
        """Delete run records older than ``RUNS_KEPT_DAYS``; return how many."""
        cutoff = self.now() - timedelta(days=RUNS_KEPT_DAYS)
        async with self._db.transaction() as conn:
            result = await conn.execute(RUNS.delete().where(RUNS.c.started_at < cutoff))
            return int(result.rowcount)


def _lease(row: sa.Row[tuple[object, ...]]) -> Lease:
    m = row._mapping
    return Lease(m["name"], m["holder"], int(m["token"]), m["acquired_at"], m["expires_at"])


def _values(lease: Lease) -> dict[str, object]:
    return {
        "name": lease.name,
        "holder": lease.holder,
        "token": lease.token,
        "acquired_at": lease.acquired_at,
        "expires_at": lease.expires_at,
    }


def _unchanged(update: sa.Update, current: Lease) -> sa.Update:
    """``update`` limited to the row as it was read (compare and set)."""
    return update.where(
        LEASES.c.name == current.name,
        LEASES.c.holder == current.holder,
        LEASES.c.token == current.token,
        LEASES.c.expires_at == current.expires_at,
    )


__all__ = ["RUNS_KEPT_DAYS", "LeaseStore"]
