"""Disputes of attribution: an agency's ``attribution.disputed`` event (on any channel)
marks the attribution rows of the receipt it names ``disputed`` and opens an
``attribution_disputed`` mismatch with both sides' figures, in the transaction that stores
the event (gateway.reconciliation.recorder calls ``on_arrival``).

Every non-settled row of the receipt is marked, not only the disputing agency's: a dispute
puts the whole split in question, so no statement pays any share of it until the lender has
decided (``statements`` list disputed rows apart). Rows a confirmed statement has settled
stay settled; the mismatch says so. The lender resolves the mismatch in the console's queue
like any other; once it is resolved, dismissed or written off the rows go back to
``active`` (``release_decided``, called by gateway.resolutions.actions) unless another
dispute of the receipt is still open.
"""

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.reconciliation.kinds import MismatchDraft
from gateway.store.recon_tables import LenderPayment
from gateway.store.settlement_tables import Attribution
from gateway.store.tables import Mismatch
from schemas.events import AgencyEvent, AttributionDisputed

ATTRIBUTIONS = Attribution.__table__  # type: ignore[attr-defined]
RECEIPTS = LenderPayment.__table__  # type: ignore[attr-defined]
MISMATCHES = Mismatch.__table__  # type: ignore[attr-defined]
A, L, M = ATTRIBUTIONS.c, RECEIPTS.c, MISMATCHES.c

MismatchRow = tuple[str, MismatchDraft, str, int | None, int | None]
"""(dedupe key, draft, agency id, event id, run id): what recorder.insert_mismatches takes."""


def _row(r: Any) -> dict[str, object]:
    return {
        "placement_id": r.placement_id,
        "agency_id": r.agency_id,
        "rule": r.rule,
        "share_bps": r.share_bps,
        "amount_minor": r.amount_minor,
        "currency": r.currency,
        "paid_on": r.paid_on.isoformat(),
        "state": r.state,
        "reason": r.reason,
    }


def dispute_draft(
    event: AttributionDisputed,
    receipt: dict[str, object] | None,
    rows: Sequence[dict[str, object]],
) -> MismatchDraft:
    """The mismatch of one dispute (pure): our receipt and its attribution, their claim."""
    d = event.data
    claimed = d.amount_claimed.amount_minor if d.amount_claimed else None
    credited = sum(int(str(r["amount_minor"])) for r in rows if r["placement_id"] == d.placement_id)
    theirs: dict[str, object] = {
        "placement_id": d.placement_id,
        "receipt_id": d.receipt_id,
        "reason": d.reason,
    }
    if d.amount_claimed is not None:
        theirs["amount_claimed"] = d.amount_claimed.model_dump(mode="json")
    if receipt is None:
        detail = f"dispute of receipt {d.receipt_id}, which the lender's feed does not have"
    elif not rows:
        detail = f"dispute of receipt {d.receipt_id}, not attributed yet (the next run does it)"
    else:
        detail = (
            f"the agency disputes the attribution of receipt {d.receipt_id}: "
            f"{credited} credited to {d.placement_id}"
            + (f", {claimed} claimed" if claimed is not None else "")
            + f" (minor units): {d.reason}"
        )
        if any(r["state"] == "settled" for r in rows):
            detail += "; some of it is already settled on a confirmed statement"
    return MismatchDraft(
        "attribution_disputed",
        d.placement_id,
        detail,
        {"receipt": receipt, "attributions": list(rows), "credited_minor": credited},
        theirs,
        None if claimed is None else claimed - credited,
    )


async def on_arrival(
    conn: AsyncConnection,
    arrived: Sequence[tuple[str, int, AgencyEvent, bool]],
    *,
    now: datetime,
) -> list[MismatchRow]:
    """Mark the disputed rows and return the mismatches for the caller to insert;
    ``arrived`` is (agency id, event id, event, applied) per stored event. An event that
    was not applied (wrong agency, unknown placement) already has its own mismatch."""
    found: list[MismatchRow] = []
    for agency_id, event_id, event, applied in arrived:
        if not applied or not isinstance(event, AttributionDisputed):
            continue
        receipt_row = (
            await conn.execute(
                sa.select(
                    L.id, L.payment_id, L.kind, L.case_id, L.amount_minor, L.currency, L.received_at
                ).where(L.payment_id == event.data.receipt_id)
            )
        ).first()
        receipt: dict[str, object] | None = None
        rows: list[dict[str, object]] = []
        if receipt_row is not None:
            receipt = {
                "receipt_id": receipt_row.payment_id,
                "kind": receipt_row.kind,
                "case_id": receipt_row.case_id,
                "amount_minor": receipt_row.amount_minor,
                "currency": receipt_row.currency,
                "received_at": receipt_row.received_at.isoformat(),
            }
            shares = await conn.execute(
                sa.select(ATTRIBUTIONS).where(A.receipt_id == receipt_row.id).order_by(A.id)
            )
            rows = [_row(r) for r in shares.all()]
            await conn.execute(
                ATTRIBUTIONS.update()
                .where(A.receipt_id == receipt_row.id, A.state == "active")
                .values(state="disputed")
            )
        draft = dispute_draft(event, receipt, rows)
        found.append((f"attribution_disputed:event:{event_id}", draft, agency_id, event_id, None))
    return found


async def release(conn: AsyncConnection, receipt_id: str) -> int:
    """Put a decided receipt's disputed rows back to ``active``; the number of rows."""
    ids = sa.select(L.id).where(L.payment_id == receipt_id).scalar_subquery()
    result = await conn.execute(
        ATTRIBUTIONS.update()
        .where(A.receipt_id == ids, A.state == "disputed")
        .values(state="active")
    )
    return int(result.rowcount or 0)


async def release_decided(conn: AsyncConnection, mismatch_id: int) -> int:
    """Once the lender decided the dispute ``mismatch_id`` (resolved, dismissed, written
    off), put its receipt's rows back to ``active`` unless another dispute of the same
    receipt is still open; the number of rows released."""
    theirs = (
        await conn.execute(sa.select(M.theirs).where(M.id == mismatch_id))
    ).scalar_one_or_none()
    receipt = json.loads(theirs or "{}").get("receipt_id")
    if not receipt:
        return 0
    others = await conn.execute(
        sa.select(M.theirs).where(
            M.kind == "attribution_disputed",
            M.state.in_(("open", "investigating")),
            M.id != mismatch_id,
        )
    )
    if any(json.loads(t or "{}").get("receipt_id") == receipt for (t,) in others.all()):
        return 0
    return await release(conn, str(receipt))


__all__ = ["MismatchRow", "dispute_draft", "on_arrival", "release", "release_decided"]
