"""The notices' service: scan (queue what is due), list, count and resend (the CLI, the
console, ``/metrics``, ``serve``'s schedule and the demo all act through it)."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.clock import to_datetime
from gateway.dispatch import outbox
from gateway.dispatch.outbox import OC, OUTBOX
from gateway.notices.scan import NOTICES, SCAN_LIMIT, N, NoticeScanner, ScanResult
from gateway.ports import Clock
from gateway.store.database import Database

NOTICE_STATES = ("queued", "delivered", "failed")


@dataclass(frozen=True, slots=True)
class NoticeRow:
    """One notice as ops see it."""

    placement_id: str
    case_id: str
    kind: str
    agency_id: str
    letter_no: str | None
    state: str
    attempts: int
    created_at: datetime
    delivered_at: datetime | None
    failed_at: datetime | None
    error: str | None

    def as_dict(self) -> dict[str, object]:
        return {
            "placement_id": self.placement_id,
            "case_id": self.case_id,
            "kind": self.kind,
            "agency_id": self.agency_id,
            "letter_no": self.letter_no,
            "state": self.state,
            "attempts": self.attempts,
            "created_at": self.created_at.isoformat(),
            "delivered_at": self.delivered_at.isoformat() if self.delivered_at else None,
            "failed_at": self.failed_at.isoformat() if self.failed_at else None,
            "error": self.error,
        }


async def notice_counts(conn: AsyncConnection) -> dict[str, int]:
    """Notices by state (every state present, zero included)."""
    rows = await conn.execute(sa.select(N.state, sa.func.count()).group_by(N.state))
    found = {state: int(n) for state, n in rows.all()}
    return {state: found.get(state, 0) for state in NOTICE_STATES}


async def notice_rows(
    conn: AsyncConnection, *, failed: bool = False, limit: int = 200
) -> list[NoticeRow]:
    """The newest notices (only the failed ones with ``failed``), newest first."""
    stmt = (
        sa.select(
            N.placement_id,
            N.case_id,
            N.kind,
            N.agency_id,
            N.letter_no,
            N.state,
            OC.attempts,
            N.created_at,
            N.delivered_at,
            N.failed_at,
            N.error,
        )
        .join(OUTBOX, OC.id == N.outbox_id)
        .order_by(N.created_at.desc(), N.id.desc())
        .limit(limit)
    )
    if failed:
        stmt = stmt.where(N.state == "failed")
    return [NoticeRow(*row) for row in (await conn.execute(stmt)).all()]


class NoticeService:
    """Borrower notices (gateway.notices).

    Args:
        db: the database.
        scanner: queues what is due; None while ``[notices]`` is off (listing still works).
        clock: time source.
    """

    def __init__(self, *, db: Database, scanner: NoticeScanner | None, clock: Clock) -> None:
        self._db = db
        self._scanner = scanner
        self._clock = clock

    @property
    def enabled(self) -> bool:
        return self._scanner is not None

    def _now(self) -> datetime:
        return to_datetime(self._clock.now())

    async def scan(self, *, limit: int = SCAN_LIMIT) -> ScanResult:
        """Queue the notices that are due (nothing while notices are off)."""
        if self._scanner is None:
            return ScanResult()
        async with self._db.transaction() as conn:
            return await self._scanner.scan(conn, now=self._now(), limit=limit)

    async def scan_all(self) -> ScanResult:
        """Scan until nothing more is due (the demo; a CLI run)."""
        total = ScanResult()
        while True:
            result = await self.scan()
            for kind, n in result.queued.items():
                total.queued[kind] = total.queued.get(kind, 0) + n
            total.unregistered = result.unregistered
            total.invalid = result.invalid
            if result.total() == 0:
                return total

    async def rows(self, *, failed: bool = False, limit: int = 200) -> list[NoticeRow]:
        async with self._db.snapshot() as conn:
            return await notice_rows(conn, failed=failed, limit=limit)

    async def counts(self) -> dict[str, int]:
        async with self._db.snapshot() as conn:
            return await notice_counts(conn)

    async def resend_failed(self, placement_ids: Sequence[str] = ()) -> int:
        """Queue the failed notices again (of ``placement_ids``, or all); how many. Same
        dedupe key: a messaging service that already took one ignores it."""
        async with self._db.transaction() as conn:
            # Locked, so a second resend at the same moment waits and then finds them queued.
            stmt = sa.select(N.id, N.outbox_id).where(N.state == "failed").with_for_update()
            if placement_ids:
                stmt = stmt.where(N.placement_id.in_(list(placement_ids)))
            rows = (await conn.execute(stmt)).all()
            if not rows:
                return 0
            await outbox.requeue(conn, [r.outbox_id for r in rows], now=self._now())
            await conn.execute(
                NOTICES.update()
                .where(N.id.in_([r.id for r in rows]))
                .values(state="queued", failed_at=None, error=None)
            )
            return len(rows)


__all__ = ["NOTICE_STATES", "NoticeRow", "NoticeService", "notice_counts", "notice_rows"]
