"""The dashboard's "today" is the lender's day (``reconciliation.timezone``), not UTC's:
at 23:30 UTC it is 07:30 the next morning in Asia/Shanghai, so the day's count starts at
16:00 UTC, and an attempt at 15:59 UTC belongs to yesterday. Real databases, both backends."""

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from gateway.console import read_model
from gateway.console.read_model import local_midnight
from gateway.store.database import Database
from gateway.store.tables import DeliveryAttempt, OutboxItem
from tests.factories import webhook_agency

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 3, 9, 23, 30, tzinfo=UTC)  # 2026-03-10 07:30 in Shanghai
AGENCY = "AGY_TEST"


def test_local_midnight_crosses_the_date_line() -> None:
    assert local_midnight(NOW, SHANGHAI) == datetime(2026, 3, 9, 16, 0, tzinfo=UTC)
    assert local_midnight(NOW, UTC) == datetime(2026, 3, 9, 0, 0, tzinfo=UTC)
    # Before 16:00 UTC Shanghai's day is the same calendar date as UTC's, a day earlier start.
    morning = datetime(2026, 3, 9, 15, 59, tzinfo=UTC)
    assert local_midnight(morning, SHANGHAI) == datetime(2026, 3, 8, 16, 0, tzinfo=UTC)
    # A zone west of UTC: 23:30 UTC is still the afternoon of the same day in New York.
    assert local_midnight(NOW, ZoneInfo("America/New_York")) == datetime(
        2026, 3, 9, 4, 0, tzinfo=UTC
    )


async def _attempt(db: Database, n: int, at: datetime, outcome: str) -> None:
    async with db.transaction() as conn:
        outbox: sa.CursorResult[Any] = await conn.execute(
            sa.insert(OutboxItem.__table__)  # type: ignore[attr-defined]
            .values(
                dedupe_key=f"k{n}", agency_id=AGENCY, placement_id=f"PL-{n}",
                packet_type="placement.created", packet_version=1, payload=b"{}",
                payload_sha256="0" * 64, state="delivered", run_at=at, created_at=at,
            )
            .returning(sa.column("id"))
        )  # fmt: skip
        await conn.execute(
            sa.insert(DeliveryAttempt.__table__).values(  # type: ignore[attr-defined]
                outbox_id=outbox.scalar_one(), agency_id=AGENCY, attempt_no=1, lease_token=1,
                outcome=outcome, started_at=at, duration_ms=5, request_timestamp=0,
            )
        )  # fmt: skip


async def test_the_dashboard_counts_today_from_the_lenders_midnight(db: Database) -> None:
    midnight = datetime(2026, 3, 9, 16, 0, tzinfo=UTC)
    await _attempt(db, 1, midnight - timedelta(minutes=1), "delivered")  # yesterday in Shanghai
    await _attempt(db, 2, midnight - timedelta(minutes=1), "transient")
    await _attempt(db, 3, midnight, "delivered")  # the first second of today
    await _attempt(db, 4, NOW - timedelta(minutes=5), "delivered")
    await _attempt(db, 5, NOW - timedelta(minutes=5), "permanent")
    agencies = {AGENCY: webhook_agency(id=AGENCY)}
    async with db.snapshot() as conn:
        shanghai = await read_model.dashboard(conn, agencies, None, now=NOW, zone=SHANGHAI)
        utc = await read_model.dashboard(conn, agencies, None, now=NOW, zone=UTC)
    assert (shanghai["delivered_today"], shanghai["failed_today"]) == (2, 1)
    assert shanghai["today_since"] == midnight
    [row] = shanghai["agencies"]
    assert (row["delivered_today"], row["failed_today"]) == (2, 1)
    # Counted from UTC's midnight every attempt above would be "today".
    assert (utc["delivered_today"], utc["failed_today"]) == (3, 2)
