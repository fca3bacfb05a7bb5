"""The lender's side of the reconciliation benchmark's book: one payment feed and the
receipts in it, drawn from the payments the agencies reported (gateway.bench.recon_book).
Pure: rows out, no database.

Agency ``REMITTING`` collects itself and remits weekly, net of ``COMMISSION_BPS``; for the
others the debtor pays the lender directly, and the lender's receipt follows a day after the
payment, most naming the payment reference, the rest without it and up to 49 minor units
short. Some receipts disagree with the agencies in the ways reconciliation must catch:
an agency payment the lender never received, short remittances, and direct pays no agency
reported.
"""

import random
from datetime import UTC, datetime, timedelta

from gateway.bench.recon_book import DAY, Book, FixtureSummary, Payment, Row, stored_ts

REMITTING = "AGC"
"""The agency that remits its collections weekly, net of commission; the others have the
debtor pay the lender directly."""
COMMISSION_BPS = 1_500


def feed_row(as_of: int) -> Row:
    """The one ``payment_feeds`` row every receipt belongs to."""
    return (1, "bench-feed.csv", "0" * 64, "csv", 0, 0, 0, 0, stored_ts(as_of - DAY))


def receipt_rows(
    rnd: random.Random,
    payments: list[Payment],
    books: dict[str, Book],
    summary: FixtureSummary,
) -> list[Row]:
    """The ``lender_payments`` rows for ``payments``, weekly remittances, and direct pays."""
    receipts: list[Row] = []
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
                stored_ts(received),
                stored_ts(received),
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
    return receipts


__all__ = ["COMMISSION_BPS", "REMITTING", "feed_row", "receipt_rows"]
