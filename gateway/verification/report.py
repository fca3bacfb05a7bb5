"""What the check log says: failed checks per hour and per day, and the letter numbers most
often tried without a match (a spike is a sign of fake collectors). Read by the console's
verification page and ``/metrics``."""

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.store.notice_tables import VerificationCheck
from gateway.verification.check import FAILED_OUTCOMES

CHECKS = VerificationCheck.__table__  # type: ignore[attr-defined]
K = CHECKS.c


@dataclass(frozen=True, slots=True)
class Bucket:
    """Checks in one hour or day (lender's time), and how many of them failed."""

    start: datetime | date
    checks: int
    failed: int


@dataclass(slots=True)
class CheckSummary:
    hours: list[Bucket] = field(default_factory=list)
    """The last ``hours`` hours, oldest first (every hour, zero included)."""
    days: list[Bucket] = field(default_factory=list)
    """The last ``days`` days, oldest first."""
    top_letters: list[tuple[str, int]] = field(default_factory=list)
    """Letter numbers (as typed) most often tried without a match in the last 7 days."""
    outcomes: dict[str, int] = field(default_factory=dict)
    """Checks by outcome over the last ``days`` days."""
    failed_last_hour: int = 0
    alert: bool = False
    """Failed checks in the last hour reached ``[verification] alert_failed_per_hour``."""


def _hour(conn: AsyncConnection, column: sa.ColumnElement[datetime]) -> sa.ColumnElement[str]:
    """The UTC hour of ``column`` as ``YYYY-MM-DD HH`` on either backend."""
    if conn.dialect.name == "sqlite":
        return sa.func.strftime("%Y-%m-%d %H", column)
    return sa.func.to_char(sa.func.timezone("UTC", column), "YYYY-MM-DD HH24")


async def failed_since(conn: AsyncConnection, since: datetime) -> int:
    """Checks that matched no authorisation since ``since``."""
    query = sa.select(sa.func.count()).where(K.at >= since, K.outcome.in_(FAILED_OUTCOMES))
    return int((await conn.execute(query)).scalar_one())


async def check_summary(
    conn: AsyncConnection,
    *,
    now: datetime,
    zone: ZoneInfo,
    alert_per_hour: int,
    hours: int = 48,
    days: int = 14,
    top: int = 10,
) -> CheckSummary:
    """The console's view of the check log (see the module docstring)."""
    summary = CheckSummary()
    since = now - timedelta(days=days)
    failed = sa.case((K.outcome.in_(FAILED_OUTCOMES), 1), else_=0)
    hour = _hour(conn, K.at)
    rows = await conn.execute(
        sa.select(hour, sa.func.count(), sa.func.sum(failed)).where(K.at >= since).group_by(hour)
    )
    per_hour: dict[datetime, tuple[int, int]] = {}
    for label, n, bad in rows.all():
        start = datetime.strptime(str(label), "%Y-%m-%d %H").replace(tzinfo=ZoneInfo("UTC"))
        per_hour[start] = (int(n), int(bad or 0))
    this_hour = now.replace(minute=0, second=0, microsecond=0)
    for back in range(hours - 1, -1, -1):
        start = this_hour - timedelta(hours=back)
        n, bad = per_hour.get(start, (0, 0))
        summary.hours.append(Bucket(start.astimezone(zone), n, bad))
    per_day: dict[date, tuple[int, int]] = {}
    for start, (n, bad) in per_hour.items():
        day = start.astimezone(zone).date()
        seen, seen_bad = per_day.get(day, (0, 0))
        per_day[day] = (seen + n, seen_bad + bad)
    today = now.astimezone(zone).date()
    for back in range(days - 1, -1, -1):
        day = today - timedelta(days=back)
        n, bad = per_day.get(day, (0, 0))
        summary.days.append(Bucket(day, n, bad))
    tops = await conn.execute(
        sa.select(K.letter_no, sa.func.count().label("n"))
        .where(K.at >= now - timedelta(days=7), K.outcome.in_(FAILED_OUTCOMES))
        .group_by(K.letter_no)
        .order_by(sa.desc("n"), K.letter_no)
        .limit(top)
    )
    summary.top_letters = [(str(letter), int(n)) for letter, n in tops.all()]
    outcomes = await conn.execute(
        sa.select(K.outcome, sa.func.count()).where(K.at >= since).group_by(K.outcome)
    )
    summary.outcomes = {str(o): int(n) for o, n in outcomes.all()}
    summary.failed_last_hour = await failed_since(conn, now - timedelta(hours=1))
    summary.alert = summary.failed_last_hour >= alert_per_hour
    return summary


__all__ = ["Bucket", "CheckSummary", "check_summary", "failed_since"]
