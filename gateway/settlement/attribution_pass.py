"""The attribution step of a reconciliation run: every lender receipt not yet attributed is
credited to the placement that held its case (gateway.settlement.attribution decides), and
the rows are written to ``attributions`` in the payments pass's transaction, with one
``attribution`` evidence leaf for the batch and the agencies' packets.

Incremental: a receipt with any ``attributions`` row is never looked at again, so running
again (or resuming) changes nothing. A receipt imported after the run's ``upto_payment_id``
waits for the next run.

Packets (``lender_collects`` agencies only; ``agency_remits`` agencies keep the three-way
pass's ``payment.direct`` after ``report_days``): the placement that held the case when the
lender received a debtor's money gets ``payment.direct`` in the same run, carrying what it is
credited (rule, share, amount; zero when the grace window credits the old agency wholly); an
agency credited under grace on a placement that has since ended gets ``payment.attributed``.
"""

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.config.agencies import AgencyConfig
from gateway.dispatch.packets import (
    RenderedPacket,
    render_attributed_payment,
    render_direct_payment,
)
from gateway.dispatch.queue import queue_packets
from gateway.evidence.log import LeafInput, append_leaves
from gateway.lifecycle import OPEN_PLACEMENT_STATES
from gateway.settlement.attribution import (
    GraceTerms,
    Receipt,
    Share,
    Tenure,
    attribute,
    check_shares,
    unaccounted,
)
from gateway.store.driver_sql import execute_rows
from gateway.store.recon_tables import LenderPayment
from gateway.store.settlement_tables import Attribution
from gateway.store.tables import Case, Placement

ATTRIBUTIONS = Attribution.__table__  # type: ignore[attr-defined]
RECEIPTS = LenderPayment.__table__  # type: ignore[attr-defined]
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
CASES = Case.__table__  # type: ignore[attr-defined]
A, L, P, C = ATTRIBUTIONS.c, RECEIPTS.c, PLACEMENTS.c, CASES.c
_CHUNK = 2_000


@dataclass(frozen=True, slots=True)
class _Held:
    tenure: Tenure
    case_id: str
    state: str
    version: int


@dataclass(slots=True)
class AttributionOutcome:
    """What the step decided; ``record`` writes it."""

    shares: list[Share] = field(default_factory=list)
    packets: list[tuple[AgencyConfig, str, RenderedPacket]] = field(default_factory=list)
    receipts: int = 0

    def counts(self) -> Counter[str]:
        found: Counter[str] = Counter(s.rule for s in self.shares)
        found["receipts"] = self.receipts
        found["packets"] = len(self.packets)
        return found


def grace_terms(agencies: Iterable[AgencyConfig]) -> dict[str, GraceTerms]:
    """Each agency's grace window, from its ``[settlement]`` section."""
    return {
        a.id: GraceTerms(
            a.settlement.grace_days, a.settlement.grace_rule, a.settlement.grace_share_bps
        )
        for a in agencies
    }


def unattributed(*, upto: int) -> sa.Select[Any]:
    """Receipts with no attribution yet, with the case of their placement when they name
    only the placement."""
    done = sa.select(A.receipt_id).where(A.receipt_id == L.id).exists()
    return (
        sa.select(
            L.id,
            L.payment_id,
            L.kind,
            sa.func.coalesce(L.case_id, P.case_id).label("case_id"),
            L.amount_minor,
            L.currency,
            L.received_at,
        )
        .select_from(RECEIPTS.outerjoin(PLACEMENTS, P.id == L.placement_id))
        .where(L.id <= upto, ~done)
        .order_by(L.id)
    )


async def _tenures(
    conn: AsyncConnection, case_ids: Sequence[str]
) -> tuple[dict[str, list[_Held]], set[str]]:
    """Every placement of the cases (by case id), and which of the cases exist."""
    found: dict[str, list[_Held]] = {}
    known: set[str] = set()
    for start in range(0, len(case_ids), _CHUNK):
        chunk = list(case_ids[start : start + _CHUNK])
        known.update((await conn.execute(sa.select(C.id).where(C.id.in_(chunk)))).scalars())
        rows = await conn.execute(
            sa.select(
                P.id,
                P.case_id,
                P.agency_id,
                P.currency,
                P.placed_at,
                P.state,
                P.recalled_at,
                P.updated_at,
                P.version,
            ).where(P.case_id.in_(chunk))
        )
        for r in rows.all():
            end: datetime | None = None
            ended_by: str | None = None
            if r.recalled_at is not None:
                # ended by our recall, even if the agency confirmed a return or close later
                end, ended_by = r.recalled_at, "recalled"
            elif r.state not in OPEN_PLACEMENT_STATES:
                # returned, closed, rejected: the agency's event moved it last
                end, ended_by = r.updated_at, r.state
            tenure = Tenure(r.id, r.agency_id, r.currency, r.placed_at, end, ended_by)
            found.setdefault(r.case_id, []).append(_Held(tenure, r.case_id, r.state, r.version))
    return found, known


async def attribute_receipts(
    conn: AsyncConnection,
    agencies: Mapping[str, AgencyConfig],
    *,
    upto_payment_id: int,
    zone: tzinfo,
    now: datetime,
) -> AttributionOutcome:
    """Attribute every receipt up to ``upto_payment_id`` not attributed yet (no writes)."""
    rows = (await conn.execute(unattributed(upto=upto_payment_id))).all()
    out = AttributionOutcome(receipts=len(rows))
    if not rows:
        return out
    case_ids = sorted({r.case_id for r in rows if r.case_id})
    held, known = await _tenures(conn, case_ids)
    grace = grace_terms(agencies.values())
    # Packets go to ``lender_collects`` agencies only (_packets): a case none of them ever
    # held needs no look at its holders for them.
    collecting = {a.id for a in agencies.values() if a.settlement.money_model == "lender_collects"}
    by_placement = {h.tenure.placement_id: h for hs in held.values() for h in hs}
    for row in rows:
        received = _aware(row.received_at)
        receipt = Receipt(
            row.id,
            row.kind,
            row.case_id,
            row.amount_minor,
            row.currency,
            received,
            received.astimezone(zone).date(),
        )
        tenures = None
        if row.case_id in known:
            tenures = [h.tenure for h in held.get(row.case_id, [])]
        ended_on = {
            t.placement_id: _aware(t.end).astimezone(zone).date()
            for t in tenures or ()
            if t.end is not None
        }
        shares = attribute(receipt, tenures, grace, ended_on=ended_on)
        check_shares(receipt, shares)
        out.shares.extend(shares)
        if receipt.kind == "debtor" and tenures and any(t.agency_id in collecting for t in tenures):
            out.packets.extend(
                _packets(receipt, row.payment_id, shares, tenures, by_placement, agencies, now)
            )
    return out


def _packets(
    receipt: Receipt,
    payment_id: str,
    shares: Sequence[Share],
    tenures: Sequence[Tenure],
    by_placement: Mapping[str, _Held],
    agencies: Mapping[str, AgencyConfig],
    now: datetime,
) -> list[tuple[AgencyConfig, str, RenderedPacket]]:
    """``payment.direct`` to the holder, ``payment.attributed`` to an ended placement
    credited under grace; only to ``lender_collects`` agencies."""
    credited = {s.placement_id: s for s in shares if s.placement_id is not None}
    holders = sorted((t for t in tenures if t.holds(receipt.received_at)), key=lambda t: t.start)
    targets = dict.fromkeys([*(t.placement_id for t in holders[-1:]), *credited])
    out = []
    for pid in targets:
        h = by_placement[pid]
        agency = agencies.get(h.tenure.agency_id)
        if agency is None or agency.settlement.money_model != "lender_collects":
            continue
        share = credited.get(pid)
        terms = (share.rule, share.share_bps, share.amount_minor) if share else None
        if terms is None and shares[0].rule in ("grace_old", "grace_shared"):
            terms = (shares[0].rule, 0, 0)  # the old agency keeps it all: this one gets 0
        common: dict[str, Any] = {
            "agency_id": agency.id,
            "placement_id": pid,
            "case_id": h.case_id,
            "version": h.version,
            "payment_id": payment_id,
            "amount_minor": receipt.amount_minor,
            "currency": receipt.currency,
            "paid_at": receipt.received_at,
            "at": now,
        }
        if h.state in OPEN_PLACEMENT_STATES:
            out.append((agency, pid, render_direct_payment(**common, attribution=terms)))
        elif terms is not None and terms[2] > 0:
            out.append((agency, pid, render_attributed_payment(**common, attribution=terms)))
    return out


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _row(s: Share, run_id: int | None, now: datetime) -> dict[str, object]:
    return {
        "receipt_id": s.receipt_id,
        "case_id": s.case_id,
        "placement_id": s.placement_id,
        "agency_id": s.agency_id,
        "amount_minor": s.amount_minor,
        "currency": s.currency,
        "share_bps": s.share_bps,
        "paid_on": s.paid_on,
        "rule": s.rule,
        "reason": s.reason,
        "state": "active",
        "run_id": run_id,
        "created_at": now,
    }


def leaf(shares: Sequence[Share], run_id: int | None) -> LeafInput:
    """The batch's evidence: which receipts, how many rows, and the digest of the rows."""
    body = [
        [s.receipt_id, s.placement_id, s.agency_id, s.amount_minor, s.currency, s.share_bps,
         s.paid_on.isoformat(), s.rule, s.reason]
        for s in shares
    ]  # fmt: skip
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    first, last = shares[0].receipt_id, shares[-1].receipt_id
    return LeafInput(
        kind="attribution",
        ref=f"attributions:{first}-{last}",
        fields={
            "run_id": run_id,
            "receipts": len({s.receipt_id for s in shares}),
            "rows": len(shares),
            "sha256": hashlib.sha256(text.encode()).hexdigest(),
        },
    )


async def record(
    conn: AsyncConnection, outcome: AttributionOutcome, *, run_id: int | None, now: datetime
) -> None:
    """Write the rows, their evidence leaf and the packets, in the caller's transaction."""
    if not outcome.shares:
        return
    # One driver executemany (gateway.store.driver_sql): a run attributes tens of thousands
    # of receipts, and SQLAlchemy's per-row parameter handling cost more than the inserts.
    await execute_rows(conn, ATTRIBUTIONS.insert(), [_row(s, run_id, now) for s in outcome.shares])
    await append_leaves(conn, [leaf(outcome.shares, run_id)], now=now)
    if outcome.packets:
        await queue_packets(conn, outcome.packets, now=now)


async def attributions_of(
    conn: AsyncConnection,
    *,
    agency_id: str | None = None,
    month: date | None = None,
    receipt_id: int | None = None,
    case_id: str | None = None,
) -> list[dict[str, Any]]:
    """Stored attributions (newest receipt first), with the lender's receipt id."""
    query = (
        sa.select(ATTRIBUTIONS, L.payment_id)
        .select_from(ATTRIBUTIONS.join(RECEIPTS, L.id == A.receipt_id))
        .order_by(A.paid_on.desc(), A.receipt_id.desc(), A.id)
    )
    if agency_id is not None:
        query = query.where(A.agency_id == agency_id)
    if month is not None:
        end = date(month.year + month.month // 12, month.month % 12 + 1, 1)
        query = query.where(A.paid_on >= month.replace(day=1), A.paid_on < end)
    if receipt_id is not None:
        query = query.where(A.receipt_id == receipt_id)
    if case_id is not None:
        query = query.where(A.case_id == case_id)
    return [dict(r._mapping) for r in (await conn.execute(query)).all()]


async def unaccounted_receipts(conn: AsyncConnection) -> dict[str, str]:
    """The lender's receipt id → why, for every receipt in the store that is neither
    attributed exactly nor named unattributable (gateway.settlement.attribution.unaccounted);
    empty after a run has seen the whole feed."""
    receipts = {r.id: (r.payment_id, r.amount_minor) for r in await conn.execute(
        sa.select(L.id, L.payment_id, L.amount_minor))}  # fmt: skip
    rows = [
        (i, amount) for i, amount in await conn.execute(sa.select(A.receipt_id, A.amount_minor))
    ]
    found = unaccounted({i: amount for i, (_, amount) in receipts.items()}, rows)
    return {receipts[i][0] if i in receipts else f"#{i}": why for i, why in found.items()}


__all__ = [
    "AttributionOutcome",
    "attribute_receipts",
    "attributions_of",
    "grace_terms",
    "leaf",
    "record",
    "unaccounted_receipts",
    "unattributed",
]
