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
dispute of the receipt is still open: the attribution is kept.

Or the lender moves the share (``move_share``): accepting the agency's figure on the
mismatch moves the receipt's unsettled shares to the placement the agency named, and
``attributions resolve RECEIPT --move-to PLACEMENT`` to any placement of the receipt's case.
A moved row is credited to the new placement and its agency with the rule ``moved`` and the
reason (who, from where, why), ``active`` again, with an ``attribution`` evidence leaf
holding the row before and after. Rows a confirmed statement has settled never move.
"""

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.errors import SettlementError
from gateway.evidence.log import LeafInput, append_leaves
from gateway.reconciliation.kinds import MismatchDraft
from gateway.store.recon_tables import LenderPayment
from gateway.store.settlement_tables import Attribution
from gateway.store.tables import Mismatch, Placement
from schemas.events import AgencyEvent, AttributionDisputed

ATTRIBUTIONS = Attribution.__table__  # type: ignore[attr-defined]
RECEIPTS = LenderPayment.__table__  # type: ignore[attr-defined]
MISMATCHES = Mismatch.__table__  # type: ignore[attr-defined]
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
A, L, M, P = ATTRIBUTIONS.c, RECEIPTS.c, MISMATCHES.c, PLACEMENTS.c

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


@dataclass(frozen=True, slots=True)
class MovedShare:
    """What ``move_share`` did: the rows moved (their ids, as they were), from where, to
    where, how much."""

    receipt_id: str
    row_ids: tuple[int, ...]
    from_placements: tuple[str, ...]
    to_placement_id: str
    to_agency_id: str
    amount_minor: int
    currency: str

    def as_dict(self) -> dict[str, object]:
        return {
            "receipt_id": self.receipt_id,
            "moved_attribution_ids": list(self.row_ids),
            "from_placements": list(self.from_placements),
            "to_placement_id": self.to_placement_id,
            "to_agency_id": self.to_agency_id,
            "amount_minor": self.amount_minor,
            "currency": self.currency,
        }


async def move_share(
    conn: AsyncConnection,
    receipt_id: str,
    *,
    to_placement_id: str,
    reason: str,
    actor: str,
    now: datetime,
    from_placement_id: str | None = None,
) -> MovedShare:
    """Move the unsettled shares of lender receipt ``receipt_id`` (only the one credited to
    ``from_placement_id`` when given) to ``to_placement_id``, a placement of the receipt's
    case: one row of it (the placement's own row, when it has part of the receipt already,
    takes the moved amount and share), rule ``moved``, the reason, state ``active``; the
    moved rows are gone, and an ``attribution`` evidence leaf holds them as they were.
    SettlementError when the receipt, the placement or a share to move is missing, the
    placement holds another case, or the shares are settled."""
    reason = reason.strip()
    if not reason:
        raise SettlementError(f"receipt {receipt_id}: moving a share needs a reason")
    receipt = (
        await conn.execute(sa.select(L.id, L.currency).where(L.payment_id == receipt_id))
    ).first()
    if receipt is None:
        raise SettlementError(f"no lender receipt {receipt_id!r}")
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.select(A.id).where(A.receipt_id == receipt.id).with_for_update())
    rows = (
        await conn.execute(sa.select(ATTRIBUTIONS).where(A.receipt_id == receipt.id).order_by(A.id))
    ).all()
    if not rows:
        raise SettlementError(f"receipt {receipt_id} is not attributed yet: run reconcile first")
    case_ids = {r.case_id for r in rows if r.case_id}
    target = (
        await conn.execute(
            sa.select(P.id, P.case_id, P.agency_id, P.currency).where(P.id == to_placement_id)
        )
    ).first()
    if target is None:
        raise SettlementError(f"no placement {to_placement_id!r}")
    if target.case_id not in case_ids:
        raise SettlementError(
            f"placement {to_placement_id} holds case {target.case_id}; receipt {receipt_id} "
            f"is of case {', '.join(sorted(case_ids)) or 'unknown'}: a share moves only to a "
            "placement of its own case"
        )
    if target.currency != receipt.currency:
        raise SettlementError(
            f"placement {to_placement_id} is in {target.currency}; receipt {receipt_id} is in "
            f"{receipt.currency}"
        )
    chosen = [
        r
        for r in rows
        if r.placement_id != to_placement_id
        and (from_placement_id is None or r.placement_id == from_placement_id)
    ]
    movable = [r for r in chosen if r.state in ("active", "disputed")]
    if not movable:
        settled = [r for r in chosen if r.state == "settled"]
        raise SettlementError(
            f"receipt {receipt_id}: "
            + (
                "its share is settled on a confirmed statement and cannot move; adjust the "
                "next statements instead"
                if settled
                else f"no share to move{f' from {from_placement_id}' if from_placement_id else ''}"
                f" to {to_placement_id}"
            )
        )
    moved_from = tuple(sorted({str(r.placement_id or "unattributable") for r in movable}))
    note = f"moved from {', '.join(moved_from)} by {actor}: {reason}"[:500]
    # One row per receipt and placement: a share moved to a placement already credited with
    # part of the receipt joins its row (which must not be settled).
    joined = next((r for r in rows if r.placement_id == target.id), None)
    if joined is not None and joined.state == "settled":
        raise SettlementError(
            f"receipt {receipt_id}: the share of {target.id} is settled on a confirmed "
            "statement; a share cannot join it"
        )
    amount = sum(int(r.amount_minor) for r in movable)
    bps = sum(int(r.share_bps) for r in movable)
    values = {"agency_id": target.agency_id, "rule": "moved", "reason": note, "state": "active"}
    if joined is None:
        first, *rest = movable
        await conn.execute(
            ATTRIBUTIONS.update()
            .where(A.id == first.id)
            .values(placement_id=target.id, amount_minor=amount, share_bps=bps, **values)
        )
    else:
        rest = movable
        await conn.execute(
            ATTRIBUTIONS.update()
            .where(A.id == joined.id)
            .values(
                amount_minor=int(joined.amount_minor) + amount,
                share_bps=int(joined.share_bps) + bps,
                **values,
            )
        )
    if rest:
        await conn.execute(ATTRIBUTIONS.delete().where(A.id.in_([r.id for r in rest])))
    body = {
        "receipt_id": receipt_id,
        "actor": actor,
        "reason": reason,
        "moved": [{"id": r.id, **_row(r)} for r in movable],
        "joined": None if joined is None else {"id": joined.id, **_row(joined)},
        "to": {"placement_id": target.id, "agency_id": target.agency_id, "rule": "moved"},
    }
    text = json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    await append_leaves(
        conn,
        [
            LeafInput(
                kind="attribution",
                ref=f"receipt:{receipt_id}",
                fields={
                    "action": "moved",
                    "receipt_id": receipt_id,
                    "rows": len(movable),
                    "to_placement_id": target.id,
                    "actor": actor,
                    "sha256": hashlib.sha256(text.encode()).hexdigest(),
                    "at": now.isoformat(),
                },
            )
        ],
        now=now,
    )
    return MovedShare(
        receipt_id,
        tuple(int(r.id) for r in movable),
        moved_from,
        str(target.id),
        str(target.agency_id),
        amount,
        str(receipt.currency),
    )


async def open_disputes(conn: AsyncConnection, receipt_id: str) -> list[int]:
    """The ids of the open (or investigated) ``attribution_disputed`` mismatches of a
    receipt, oldest first."""
    rows = await conn.execute(
        sa.select(M.id, M.theirs)
        .where(M.kind == "attribution_disputed", M.state.in_(("open", "investigating")))
        .order_by(M.id)
    )
    return [int(i) for i, t in rows.all() if json.loads(t or "{}").get("receipt_id") == receipt_id]


async def disputed_receipt(conn: AsyncConnection, mismatch_id: int) -> tuple[str, str] | None:
    """(receipt id, the disputing agency's placement) of an ``attribution_disputed``
    mismatch, or None."""
    theirs = (
        await conn.execute(sa.select(M.theirs).where(M.id == mismatch_id))
    ).scalar_one_or_none()
    found = json.loads(theirs or "{}")
    receipt, placement = found.get("receipt_id"), found.get("placement_id")
    if not receipt or not placement:
        return None
    return str(receipt), str(placement)


__all__ = [
    "MismatchRow",
    "MovedShare",
    "dispute_draft",
    "disputed_receipt",
    "move_share",
    "on_arrival",
    "open_disputes",
    "release",
    "release_decided",
]
