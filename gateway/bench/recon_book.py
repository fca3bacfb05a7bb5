"""The reconciliation benchmark's collections book: placements and the agencies' events, with
the breaks reconciliation must catch injected among them. Pure: rows out, no database.

``rows`` placements (one case each, three agencies) and ``rows`` agency events in time order,
shaped like a collections book a few months in: a quarter of the events acknowledge
placements, most are contact attempts, some promise, pay, reverse, dispute, go legal, return
or close. About 3 % of the events disagree with our record in one of the ways reconciliation
must catch (unknown placement, wrong agency, currency, conflicting duplicate, paid before
placement, activity after a recall, a close as paid in full that is not, night calls). Events
carry the ``applied`` flag the incremental path would have given them; the applied payments
are collected for the lender's side (gateway.bench.recon_lender_feed).

Rows are tuples in the column order of the store's tables, timestamps in SQLAlchemy's SQLite
storage format, so the loader (gateway.bench.recon_fixture) can insert them as they are. One
``random.Random`` drives everything, so the order in which rows are drawn is part of the
fixture: the same seed gives the same book only if placements, then events, are consumed in
full and in order.
"""

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

from gateway.lifecycle import ACTIVITY_EVENTS

AGENCIES = ("AGA", "AGB", "AGC")
DAY = 86_400
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

Row = tuple[object, ...]


def stored_ts(seconds: int) -> str:
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


class Book:
    """What the generator knows of one placement while writing its events."""

    __slots__ = ("agency", "balance", "paid", "placed", "recalled")

    def __init__(self, agency: str, balance: int, placed: int, recalled: int | None) -> None:
        self.agency = agency
        self.balance = balance
        self.placed = placed
        self.recalled = recalled
        self.paid: dict[str, int] = {}


class Payment(NamedTuple):
    """An applied ``payment.reported``: what the lender may have received for it."""

    event_id: int
    placement_id: str
    ref: str
    amount_minor: int
    paid: int


def placement_rows(
    rnd: random.Random, rows: int, start: int, books: dict[str, Book]
) -> Iterator[tuple[Row, Row]]:
    """Yield a (``cases`` row, ``placements`` row) pair per placement, recording each in
    ``books``."""
    for n in range(rows):
        case_id = f"AC{n:010d}"
        pid = f"PL-{case_id}-1"
        agency = AGENCIES[rnd.randrange(3)]
        balance = rnd.randrange(50_000, 5_000_000)
        placed = start + rnd.randrange(30 * DAY)
        recalled = placed + 30 * DAY if rnd.random() < 0.02 else None
        books[pid] = Book(agency, balance, placed, recalled)
        placed_s = stored_ts(placed)
        case = (
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
        placement = (
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
            stored_ts(recalled) if recalled else None,
            "R01" if recalled else None,
            placed_s,
        )
        yield case, placement


def inbound_rows(rows: int, as_of: int) -> list[Row]:
    """The ``inbound_messages`` the events point at, a thousand events to a message."""
    return [
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
            stored_ts(as_of - 10 * DAY),
        )
        for i in range(rows // 1000 + 1)
    ]


def event_rows(
    rnd: random.Random,
    rows: int,
    books: dict[str, Book],
    summary: FixtureSummary,
    payments: list[Payment],
) -> Iterator[Row]:
    """Yield the ``agency_events`` rows in time order, appending the applied payments to
    ``payments`` for the lender's feed."""
    ids = list(books)
    kinds = [k for k, w in EVENT_MIX for _ in range(w)]
    drafts = []
    for n in range(rows):
        pid = ids[rnd.randrange(len(ids))]
        book = books[pid]
        occurred = book.placed + rnd.randrange(DAY, 60 * DAY)
        drafts.append((occurred, n, pid, kinds[rnd.randrange(len(kinds))]))
    drafts.sort()
    for eid, (occurred, n, pid, etype) in enumerate(drafts, start=1):
        yield _event(rnd, eid, occurred, n, pid, etype, books, summary, payments)


def _event(
    rnd: random.Random,
    eid: int,
    occurred: int,
    n: int,
    pid: str,
    etype: str,
    books: dict[str, Book],
    summary: FixtureSummary,
    payments: list[Payment],
) -> Row:
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
                payments.append(Payment(eid, pid, ref, amount, paid))
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
        stored_ts(occurred),
        ref,
        amount,
        currency if amount is not None else None,
        json.dumps(data),
        int(applied),
        stored_ts(occurred + 600),
    )


__all__ = [
    "AGENCIES",
    "DAY",
    "Book",
    "FixtureSummary",
    "Payment",
    "Row",
    "event_rows",
    "inbound_rows",
    "placement_rows",
    "stored_ts",
]
