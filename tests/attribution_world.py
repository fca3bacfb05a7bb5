"""A lender receipt and its attribution in a real store, for the tests of what agencies do
with attributions (disputes on each channel) without running a reconciliation."""

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from gateway.reconciliation.payment_feed import import_feed
from gateway.store.database import Database
from gateway.store.recon_tables import LenderPayment
from gateway.store.settlement_tables import Attribution
from gateway.store.tables import Mismatch

ATTRIBUTIONS = Attribution.__table__  # type: ignore[attr-defined]
RECEIPTS = LenderPayment.__table__  # type: ignore[attr-defined]
MISMATCHES = Mismatch.__table__  # type: ignore[attr-defined]
RECEIPT = "RCPT-2026-000871"


async def attributed_receipt(
    db: Database, folder: Path, *, placement_id: str, agency_id: str, amount: int = 10_000
) -> None:
    """Import receipt ``RECEIPT`` on ``placement_id`` from a real feed file and credit 40%
    of it to the placement under a shared grace (the rest to another agency)."""
    received = datetime.now(UTC).replace(microsecond=0)
    feed = folder / "receipt-feed.csv"
    feed.write_text(
        "payment_id,kind,amount_minor,currency,received_at,placement_id\n"
        f"{RECEIPT},debtor,{amount},CNY,{received.isoformat()},{placement_id}\n",
        encoding="utf-8",
    )
    report = await import_feed(feed, db=db, now=received)
    assert report.errors == [] and report.imported == 1
    async with db.transaction() as conn:
        receipt_id, case_id = (
            await conn.execute(
                sa.select(RECEIPTS.c.id, RECEIPTS.c.case_id).where(RECEIPTS.c.payment_id == RECEIPT)
            )
        ).one()
        common: dict[str, Any] = {"receipt_id": receipt_id, "case_id": case_id,
                                  "currency": "CNY", "paid_on": received.date(),
                                  "rule": "grace_shared", "state": "active",
                                  "created_at": received}  # fmt: skip
        old = amount * 4 // 10
        await conn.execute(
            ATTRIBUTIONS.insert(),
            [
                {**common, "placement_id": placement_id, "agency_id": agency_id,
                 "amount_minor": old, "share_bps": 4_000},
                {**common, "placement_id": f"{placement_id}-NEW", "agency_id": "AGY_NEW",
                 "amount_minor": amount - old, "share_bps": 6_000},
            ],
        )  # fmt: skip


def dispute_data(placement_id: str, claimed: int | None = 10_000) -> dict[str, Any]:
    data: dict[str, Any] = {
        "placement_id": placement_id,
        "receipt_id": RECEIPT,
        "reason": "our promise of last week brought this payment; it is ours in full",
    }
    if claimed is not None:
        data["amount_claimed"] = {"amount_minor": claimed, "currency": "CNY"}
    return data


async def disputes(db: Database) -> tuple[list[dict[str, Any]], list[str]]:
    """The ``attribution_disputed`` mismatches, and the attribution rows' states."""
    async with db.connect() as conn:
        found = (
            await conn.execute(
                sa.select(MISMATCHES).where(MISMATCHES.c.kind == "attribution_disputed")
            )
        ).mappings()
        mismatches = [dict(m) for m in found.all()]
        states = (
            await conn.execute(sa.select(ATTRIBUTIONS.c.state).order_by(ATTRIBUTIONS.c.id))
        ).scalars()
        return mismatches, list(states)


def check_dispute(mismatches: list[dict[str, Any]], states: list[str], *, placement_id: str,
                  agency_id: str, claimed: int | None = 10_000) -> None:  # fmt: skip
    """What every channel's dispute must leave: one open medium mismatch with both sides'
    figures, and the receipt's rows disputed."""
    [m] = mismatches
    assert (m["placement_id"], m["agency_id"], m["severity"], m["state"]) == (
        placement_id, agency_id, "medium", "open"
    )  # fmt: skip
    ours, theirs = json.loads(m["ours"]), json.loads(m["theirs"])
    assert ours["credited_minor"] == 4_000 and len(ours["attributions"]) == 2
    assert theirs["receipt_id"] == RECEIPT
    if claimed is not None:
        assert theirs["amount_claimed"]["amount_minor"] == claimed
        assert m["delta_minor"] == claimed - 4_000
    assert states == ["disputed", "disputed"]
