"""The reconciliation benchmark's data set, bulk-loaded straight into a SQLite store.

``rows`` placements (one case each, three agencies) and ``rows`` agency events in time order,
with the lender's payment feed for the payments, shaped like a collections book a few
months in: a quarter of the events acknowledge placements, most are contact attempts,
some promise, pay, reverse, dispute, go legal, return or close. About 3 % of what arrives
disagrees with our record in one of the ways reconciliation must catch (unknown placement,
wrong agency, currency, conflicting duplicate, paid before placement, activity after a
recall, a close as paid in full that is not, night calls, an agency payment the lender never
received, short remittances, direct pays). Events carry the ``applied`` flag the
incremental path would have given them.

Loading goes through sqlite3 ``executemany`` with the secondary indexes dropped and rebuilt
afterwards (a sorted build); none of it is timed.
"""

import json
import random
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.lifecycle import ACTIVITY_EVENTS

AGENCIES = ("AGA", "AGB", "AGC")
REMITTING = "AGC"
"""The agency that remits its collections weekly, net of commission; the others have the
debtor pay the lender directly."""
COMMISSION_BPS = 1_500
DAY = 86_400
BATCH = 50_000
TABLES = ("cases", "placements", "inbound_messages", "agency_events", "lender_payments")
EVENT_MIX = (
    ("placement.acknowledged", 25),
    ("contact.attempted", 45),
    ("promise.made", 5),
    ("payment.reported", 15),
    ("payment.reversed", 1),
    ("dispute.opened", 1),
    ("legal.action", 1),
    ("case.returned", 2),
    ("case.closed", 3),
    ("complaint.received", 2),
)


def _ts(seconds: int) -> str:
    """SQLAlchemy's SQLite storage format for a UTC timestamp."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S.000000")


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True)
class FixtureSummary:
    placements: int = 0
    events: int = 0
    receipts: int = 0
    as_of: datetime = field(default_factory=lambda: datetime(2026, 6, 1, tzinfo=UTC))
    injected: dict[str, int] = field(default_factory=dict)

    def inject(self, kind: str) -> None:
        self.injected[kind] = self.injected.get(kind, 0) + 1


class _Book:
    """What the generator knows of one placement while writing its events."""

    __slots__ = ("agency", "balance", "paid", "placed", "recalled")

    def __init__(self, agency: str, balance: int, placed: int, recalled: int | None) -> None:
        self.agency = agency
        self.balance = balance
        self.placed = placed
        self.recalled = recalled
        self.paid: dict[str, int] = {}


def build(path: Path, rows: int, *, seed: int = 20260101) -> FixtureSummary:
    """Fill the (migrated, empty) SQLite store at ``path``; return what was written."""
    rnd = random.Random(seed)
    summary = FixtureSummary()
    as_of = int(summary.as_of.timestamp())
    start = as_of - 100 * DAY
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute("PRAGMA synchronous=OFF")
        con.execute("PRAGMA cache_size=-400000")
        indexes = con.execute(
            "SELECT name, sql FROM sqlite_master WHERE type='index' AND sql IS NOT NULL "
            f"AND tbl_name IN ({','.join('?' * len(TABLES))})",
            TABLES,
        ).fetchall()
        con.execute("BEGIN")
        for name, _sql in indexes:
            con.execute(f'DROP INDEX "{name}"')
        books = _placements(con, rnd, rows, start, summary)
        payments = _events(con, rnd, rows, books, as_of, summary)
        _receipts(con, rnd, payments, books, summary)
        for _name, sql in indexes:
            con.execute(sql)
        con.execute("COMMIT")
        con.execute("ANALYZE")
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        con.close()
    return summary


def _placements(
    con: sqlite3.Connection, rnd: random.Random, rows: int, start: int, summary: FixtureSummary
) -> dict[str, _Book]:
    books: dict[str, _Book] = {}
    cases: list[tuple[object, ...]] = []
    placements: list[tuple[object, ...]] = []
    for n in range(rows):
        case_id = f"AC{n:010d}"
        pid = f"PL-{case_id}-1"
        agency = AGENCIES[rnd.randrange(3)]
        balance = rnd.randrange(50_000, 5_000_000)
        placed = start + rnd.randrange(30 * DAY)
        recalled = placed + 30 * DAY if rnd.random() < 0.02 else None
        books[pid] = _Book(agency, balance, placed, recalled)
        placed_s = _ts(placed)
        cases.append(
            (
                case_id,
                f"CU{n // 2:010d}",
                b"\x00",
                "-",
                "CN-31",
                "consumer-loan",
                "CNY",
                balance,
                balance,
                60,
                "C",
                "2026-01-15",
                "M2",
                "placed",
                placed_s,
                placed_s,
            )
        )
        placements.append(
            (
                pid,
                case_id,
                agency,
                "recalled" if recalled else "active",
                1,
                "CNY",
                balance,
                balance,
                0,
                f"EXT-{n}",
                placed_s,
                "2026-12-31",
                _ts(recalled) if recalled else None,
                "R01" if recalled else None,
                placed_s,
            )
        )
        if len(cases) >= BATCH:
            _flush(con, cases, placements)
    _flush(con, cases, placements)
    summary.placements = rows
    return books


def _flush(
    con: sqlite3.Connection, cases: list[tuple[object, ...]], placements: list[tuple[object, ...]]
) -> None:
    con.executemany(f"INSERT INTO cases VALUES ({','.join('?' * 16)})", cases)
    con.executemany(
        "INSERT INTO placements (id, case_id, agency_id, state, version, currency, "
        "balance_minor, acked_balance_minor, collected_minor, agency_case_ref, placed_at, "
        f"return_by, recalled_at, recall_reason, updated_at) VALUES ({','.join('?' * 15)})",
        placements,
    )
    cases.clear()
    placements.clear()


def _events(
    con: sqlite3.Connection,
    rnd: random.Random,
    rows: int,
    books: dict[str, _Book],
    as_of: int,
    summary: FixtureSummary,
) -> list[tuple[int, str, str, int, int]]:
    """Write the events; return the applied payments (event id, placement, ref, amount,
    paid_s) for the lender's feed."""
    ids = list(books)
    kinds = [k for k, w in EVENT_MIX for _ in range(w)]
    drafts = []
    for n in range(rows):
        pid = ids[rnd.randrange(len(ids))]
        book = books[pid]
        occurred = book.placed + rnd.randrange(DAY, 60 * DAY)
        drafts.append((occurred, n, pid, kinds[rnd.randrange(len(kinds))]))
    drafts.sort()
    inbound = [
        (
            i + 1,
            AGENCIES[i % 3],
            "sftp",
            f"result-{i}",
            b"",
            "0" * 64,
            "-",
            None,
            "accepted",
            200,
            b"",
            _ts(as_of - 10 * DAY),
        )
        for i in range(rows // 1000 + 1)
    ]
    con.executemany(f"INSERT INTO inbound_messages VALUES ({','.join('?' * 12)})", inbound)
    out: list[tuple[object, ...]] = []
    payments: list[tuple[int, str, str, int, int]] = []
    for eid, (occurred, n, pid, etype) in enumerate(drafts, start=1):
        out.append(_event(rnd, eid, occurred, n, pid, etype, books, summary, payments))
        if len(out) >= BATCH:
            con.executemany(f"INSERT INTO agency_events VALUES ({','.join('?' * 12)})", out)
            out.clear()
    con.executemany(f"INSERT INTO agency_events VALUES ({','.join('?' * 12)})", out)
    summary.events = rows
    return payments


def _event(
    rnd: random.Random,
    eid: int,
    occurred: int,
    n: int,
    pid: str,
    etype: str,
    books: dict[str, _Book],
    summary: FixtureSummary,
    payments: list[tuple[int, str, str, int, int]],
) -> tuple[object, ...]:
    book = books[pid]
    if etype == "payment.reversed" and not book.paid and rnd.random() < 0.97:
        etype = "contact.attempted"  # nearly every reversal names a payment reported before
    agency, currency = book.agency, "CNY"
    ref: str | None = None
    amount: int | None = None
    applied = True
    roll = rnd.random()
    if roll < 0.003:
        pid = f"PL-GHOST-{n}"
        applied = False
        summary.inject("unknown_placement")
    elif roll < 0.005:
        agency = AGENCIES[(AGENCIES.index(agency) + 1) % 3]
        applied = False
        summary.inject("wrong_agency")
    if book.recalled is not None and occurred > book.recalled and etype in ACTIVITY_EVENTS:
        summary.inject("activity_after_recall")
    data: dict[str, object] = {"placement_id": pid}
    if etype == "placement.acknowledged":
        amount = book.balance
        data.update(agency_case_ref=f"EXT-{n}", balance={"amount_minor": amount, "currency": "CNY"})
    elif etype == "contact.attempted":
        # Agencies call in business hours, 09:00-21:00 in Shanghai (01:00-13:00 UTC).
        at = occurred - occurred % DAY + 3600 + rnd.randrange(12 * 3600)
        if rnd.random() < 0.005:
            at = at - at % DAY + 15 * 3600 + rnd.randrange(3600)  # 23:xx in Shanghai
            summary.inject("night_call")
        effective = rnd.random() < 0.4
        data.update(
            channel="call" if rnd.random() < 0.8 else "sms",
            outcome="reached" if effective else "no_answer",
            attempted_at=_iso(at),
            effective=effective,
        )
    elif etype in ("promise.made", "payment.reported", "payment.reversed"):
        amount = max(100, book.balance * rnd.randrange(5, 40) // 100)
        if etype == "promise.made":
            ref = f"PR{n}"
            data.update(
                promise_id=ref,
                amount={"amount_minor": amount, "currency": "CNY"},
                promised_date=datetime.fromtimestamp(occurred + 7 * DAY, UTC).date().isoformat(),
            )
        elif etype == "payment.reported":
            ref = f"PAY{n}"
            paid = occurred - rnd.randrange(7200)
            if applied and book.paid and rnd.random() < 0.01:
                ref = next(iter(book.paid))
                applied = False
                summary.inject("conflicting_duplicate")
            elif applied and rnd.random() < 0.005:
                currency = "USD"
                applied = False
                summary.inject("currency_mismatch")
            elif rnd.random() < 0.003:
                # Past the one-day grace for date-only reports (PLACEMENT_DATE_GRACE).
                paid = book.placed - DAY - 3600
                summary.inject("date_out_of_window")
            data.update(
                payment_id=ref,
                amount={"amount_minor": amount, "currency": currency},
                paid_at=_iso(paid),
            )
            if applied and pid in books:
                book.paid[ref] = amount
                payments.append((eid, pid, ref, amount, paid))
        else:
            ref = next(iter(book.paid), f"PAY-UNKNOWN-{n}")
            if ref not in book.paid:
                summary.inject("unmatched_reversal")
            amount = min(amount, book.paid.get(ref, amount))
            data.update(
                payment_id=ref, amount={"amount_minor": amount, "currency": "CNY"}, reason="bounced"
            )
    elif etype == "legal.action":
        data.update(action="lawyer_letter", occurred_at=_iso(occurred))
    elif etype in ("case.returned", "case.closed"):
        if etype == "case.closed":
            data["reason"] = (
                "paid_in_full" if sum(book.paid.values()) >= book.balance else "settled"
            )
        else:
            data.update(
                reason="uncollectable", balance={"amount_minor": book.balance, "currency": "CNY"}
            )
            amount = book.balance
    elif etype == "dispute.opened":
        data["reason"] = "debtor disputes the amount"
    else:
        data.update(channel="12378", summary="complaint")
    return (
        eid,
        eid // 1000 + 1,
        agency,
        pid,
        etype,
        _ts(occurred),
        ref,
        amount,
        currency if amount is not None else None,
        json.dumps(data),
        int(applied),
        _ts(occurred + 600),
    )


def _receipts(
    con: sqlite3.Connection,
    rnd: random.Random,
    payments: list[tuple[int, str, str, int, int]],
    books: dict[str, _Book],
    summary: FixtureSummary,
) -> None:
    con.execute(
        "INSERT INTO payment_feeds VALUES (1, 'bench-feed.csv', ?, 'csv', 0, 0, 0, 0, ?)",
        ("0" * 64, _ts(int(summary.as_of.timestamp()) - DAY)),
    )
    receipts: list[tuple[object, ...]] = []
    weeks: dict[int, int] = {}

    def add(
        kind: str,
        pid: str | None,
        agency: str | None,
        ref: str | None,
        amount: int,
        received: int,
        period: tuple[str, str] | None = None,
    ) -> None:
        rid = len(receipts) + 1
        receipts.append(
            (
                rid,
                f"LR{rid:09d}",
                1,
                rid,
                "0" * 64,
                kind,
                None,
                pid,
                agency,
                ref,
                None,
                period[0] if period else None,
                period[1] if period else None,
                amount,
                "CNY",
                _ts(received),
                _ts(received),
            )
        )

    for _eid, pid, ref, amount, paid in payments:
        agency = books[pid].agency
        if agency == REMITTING:
            week = paid // (7 * DAY)
            net = amount - (amount * COMMISSION_BPS + 5_000) // 10_000
            weeks[week] = weeks.get(week, 0) + net
            continue
        roll = rnd.random()
        if roll < 0.05:
            summary.inject("payment_not_received")
        elif roll < 0.70:
            add("debtor", pid, agency, ref, amount, paid + DAY)
        else:
            add("debtor", pid, agency, None, amount - rnd.randrange(0, 50), paid + DAY)
    for week, net in sorted(weeks.items()):
        first = datetime.fromtimestamp(week * 7 * DAY, UTC).date()
        period = (first.isoformat(), (first + timedelta(days=6)).isoformat())
        if rnd.random() < 0.1:
            net -= rnd.randrange(1_000, 100_000)
            summary.inject("remittance_short")
        add("remittance", None, REMITTING, None, net, (week + 1) * 7 * DAY + 2 * DAY, period)
    ids = [pid for pid, b in books.items() if b.agency != REMITTING and b.recalled is None]
    for _ in range(max(1, len(books) // 500)):
        pid = ids[rnd.randrange(len(ids))]
        add(
            "debtor",
            pid,
            books[pid].agency,
            None,
            rnd.randrange(10_000, 90_000),
            books[pid].placed + 40 * DAY + rnd.randrange(DAY),
        )
        summary.inject("direct_pay")
    for start in range(0, len(receipts), BATCH):
        con.executemany(
            f"INSERT INTO lender_payments VALUES ({','.join('?' * 17)})",
            receipts[start : start + BATCH],
        )
    summary.receipts = len(receipts)


__all__ = ["AGENCIES", "COMMISSION_BPS", "REMITTING", "FixtureSummary", "build"]
