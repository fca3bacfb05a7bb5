"""The three-way pass: what we placed, what agencies say they collected, what the lender
received. Loads the still-unmatched records of both sides, matches them
(gateway.reconciliation.matching), and writes the outcome in one transaction:

* every match as ``payment_matches`` links, so its records are consumed for good;
* every finding inside a match (``amount_mismatch``, ``currency_mismatch``,
  ``date_out_of_window``, ``remittance_short``) and every ambiguity (``ambiguous_match``)
  as a break;
* once a record has waited longer than the agency's ``settlement.report_days``: an agency
  payment the lender never received (``payment_not_received``), and money the lender
  received that no agency reported (``payment_not_reported``). A receipt from the debtor on
  a placement an agency still holds is a *direct pay*: a ``payment.direct`` packet is
  queued to that agency, with its evidence leaf, in the same transaction.

Under an agency's ``settlement.money_model = "lender_collects"`` (the Chinese default) the
debtor is meant to pay the lender: a direct pay on its placement is no break (the attribution
pass, gateway.settlement.attribution_pass, credits it and sends ``payment.direct`` at once),
and its own ``payment.reported`` events are activity reports: matched to the receipts when
they meet one (findings inside a match still count), informational otherwise (never
``payment_not_received``). ``agency_remits`` keeps the rules above.
"""

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any, NamedTuple, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.config.agencies import AgencyConfig
from gateway.dispatch.packets import RenderedPacket, render_direct_payment
from gateway.dispatch.queue import queue_packets
from gateway.lifecycle import OPEN_PLACEMENT_STATES
from gateway.reconciliation.event_audit import Break
from gateway.reconciliation.kinds import MismatchDraft
from gateway.reconciliation.match_inputs import AgencyPayment, Contract, LenderReceipt, Tolerance
from gateway.reconciliation.matching import MatchResult, match
from gateway.reconciliation.sources import (
    PLACEMENTS,
    lender_receipts,
    matched_events,
    unmatched_payments,
)
from gateway.store.recon_tables import PaymentMatch
from gateway.store.row_stream import all_rows, insert_rows

MATCHES = PaymentMatch.__table__  # type: ignore[attr-defined]
LINK_COLUMNS = (
    "match_key",
    "run_id",
    "pass_name",
    "lender_payment_id",
    "event_id",
    "expected_minor",
    "received_minor",
)
DAY = 86_400
_EPOCH = date(1970, 1, 1)


@dataclass(slots=True)
class ThreeWayOutcome:
    """What the pass found; ``links`` and ``packets`` are written by ``write``."""

    result: MatchResult
    breaks: list[tuple[str, Break]] = field(default_factory=list)
    links: list[tuple[str, int, str, int, int, int, int]] = field(default_factory=list)
    packets: list[tuple[AgencyConfig, str, RenderedPacket]] = field(default_factory=list)
    feeds: set[int] = field(default_factory=set)
    activity_reports: int = 0
    """Unmatched payments reported by ``lender_collects`` agencies (informational)."""

    def counts(self) -> Counter[str]:
        found: Counter[str] = Counter(m.pass_name for m in self.result.matches)
        found["direct_pay_notices"] = len(self.packets)
        if self.activity_reports:
            found["activity_reports"] = self.activity_reports
        return found


def lender_collects(agencies: Mapping[str, AgencyConfig], agency_id: str | None) -> bool:
    """Whether the agency works under the ``lender_collects`` money model."""
    agency = agencies.get(agency_id or "")
    return agency is not None and agency.settlement.money_model == "lender_collects"


def _day(value: date) -> int:
    return (value - _EPOCH).days


class SeenPayments(Protocol):
    """What the events pass saw of the agency's payments: gateway.reconciliation.columnar's
    ``EventPass``, or the pure reference audit (gateway.reconciliation.event_audit)."""

    @property
    def payments(self) -> Mapping[tuple[str, str], AgencyPayment]: ...

    def knows(self, placement_id: str) -> bool: ...


async def agency_payments(
    conn: AsyncConnection, audit: SeenPayments, *, after_event_id: int, agency_ids: list[str]
) -> list[AgencyPayment]:
    """The agency side: the payments the events pass saw (net of reversals, as of the
    run), plus, in an incremental run, older payments on placements it did not load; less
    whatever a match already consumed."""
    seen = [p for p in audit.payments.values() if p.amount_minor > 0]
    consumed: set[int] = set()
    ids = [p.id for p in seen]
    if ids and (await conn.execute(sa.select(MATCHES.c.id).limit(1))).first() is not None:
        for start in range(0, len(ids), 5_000):
            consumed.update(
                (await conn.execute(matched_events(ids[start : start + 5_000]))).scalars()
            )
    payments = [p for p in seen if p.id not in consumed] if consumed else seen
    if after_event_id:
        rows = await all_rows(
            conn, unmatched_payments(conn.dialect.name, agency_ids, upto=after_event_id)
        )
        payments += [
            AgencyPayment(eid, agency, pid, ref or "", amount, currency, (paid_s or 0) // DAY)
            for eid, agency, pid, ref, amount, currency, paid_s in rows
            if amount > 0 and not audit.knows(pid)
        ]
    return payments


class ReceiptMeta(NamedTuple):
    feed_id: int
    payment_id: str
    received_s: int


async def lender_side(
    conn: AsyncConnection, *, upto_payment_id: int
) -> tuple[list[LenderReceipt], dict[int, ReceiptMeta]]:
    """The unmatched receipts, and what else we know of each."""
    receipts = []
    meta = {}
    rows = await all_rows(conn, lender_receipts(conn.dialect.name, upto=upto_payment_id))
    for rid, kind, pid, agency, ref, amount, currency, received_s, start, end, feed, lid in rows:
        period = None
        if start is not None and end is not None:
            period = (_day(_as_date(start)), _day(_as_date(end)))
        receipts.append(
            LenderReceipt(rid, kind, pid, agency, ref, amount, currency, received_s // DAY, period)
        )
        meta[rid] = ReceiptMeta(feed, lid, received_s)
    return receipts, meta


def _as_date(value: object) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


async def judge(
    conn: AsyncConnection,
    payments: list[AgencyPayment],
    *,
    run_id: int,
    upto_payment_id: int,
    tolerance: Tolerance,
    agencies: Mapping[str, AgencyConfig],
    as_of: datetime,
    now: datetime,
) -> ThreeWayOutcome:
    """Match ``payments`` with the unmatched receipts and judge (no writes)."""
    receipts, meta = await lender_side(conn, upto_payment_id=upto_payment_id)
    contracts = {
        a.id: Contract(a.settlement.commission_bps, a.settlement.remittance)
        for a in agencies.values()
    }
    result = match(payments, receipts, tolerance=tolerance, contracts=contracts)
    out = ThreeWayOutcome(result, feeds={meta[r.id].feed_id for r in receipts})
    by_p = {p.id: p for p in payments}
    by_r = {r.id: r for r in receipts}
    links = out.links
    for m in result.matches:
        key = f"{run_id}:{m.key}"
        for rid in m.lender_ids:
            received = by_r[rid].amount_minor
            for eid in m.agency_ids:
                links.append((key, run_id, m.pass_name, rid, eid, by_p[eid].amount_minor, received))
        if not m.findings:
            continue
        first = by_p[m.agency_ids[0]]
        for f in m.findings:
            draft = MismatchDraft(
                f.kind,
                first.placement_id,
                f.detail,
                {"lender_receipts": [_receipt(by_r[i]) for i in m.lender_ids]},
                {"agency_payments": [_payment(by_p[i]) for i in m.agency_ids]},
                f.delta_minor,
            )
            out.breaks.append((f"{f.kind}:match:{m.key}", Break(first.id, first.agency_id, draft)))
    for a in result.ambiguities:
        subject = by_r[a.id] if a.side == "lender" else by_p[a.id]
        others = [(by_p if a.side == "lender" else by_r)[i] for i in a.candidates]
        draft = MismatchDraft(
            "ambiguous_match",
            subject.placement_id,
            f"{a.side} record {a.id} has {len(a.candidates)} equally good counterparts in the "
            f"{a.pass_name} pass; nothing was matched (ids {list(a.candidates)})",
            {"record": _describe(subject)},
            {"candidates": [_describe(o) for o in others]},
        )
        agency = subject.agency_id or (others[0].agency_id if others else "") or ""
        event_id = subject.id if a.side == "agency" else None
        out.breaks.append(
            (f"ambiguous_match:{a.side}:{a.id}", Break(event_id, agency, draft, a.side))
        )
    today = int(as_of.timestamp()) // DAY
    held_p, held_r = result.ambiguous_ids("agency"), result.ambiguous_ids("lender")

    def waited(agency_id: str | None, day: int) -> bool:
        agency = agencies.get(agency_id or "")
        return day + (agency.settlement.report_days if agency else 3) < today

    for p in result.unmatched_agency:
        if lender_collects(agencies, p.agency_id):
            out.activity_reports += 1
            continue
        if p.id not in held_p and waited(p.agency_id, p.day):
            draft = MismatchDraft(
                "payment_not_received",
                p.placement_id,
                f"{p.agency_id} reported payment {p.ref} of {p.amount_minor} {p.currency} "
                f"(minor units); the lender has not received it",
                {"lender_receipts": []},
                {"agency_payments": [_payment(p)]},
                -p.amount_minor,
            )
            out.breaks.append(
                (f"payment_not_received:event:{p.id}", Break(p.id, p.agency_id, draft))
            )
    unreported = [
        r for r in result.unmatched_lender if r.id not in held_r and waited(r.agency_id, r.day)
    ]
    await _unreported(conn, unreported, meta, agencies, out, now)
    return out


async def _unreported(
    conn: AsyncConnection,
    receipts: list[LenderReceipt],
    meta: Mapping[int, ReceiptMeta],
    agencies: Mapping[str, AgencyConfig],
    out: ThreeWayOutcome,
    now: datetime,
) -> None:
    pids = sorted({r.placement_id for r in receipts if r.placement_id})
    held: dict[str, Any] = {}
    if pids:
        P = PLACEMENTS.c
        rows = await conn.execute(
            sa.select(P.id, P.case_id, P.agency_id, P.state, P.version).where(P.id.in_(pids))
        )
        held = {r.id: r for r in rows.all()}
    for r in receipts:
        if r.kind == "debtor" and r.placement_id is None:
            continue  # money on a case we never placed: not an agency matter
        placement = held.get(r.placement_id or "")
        direct = r.kind == "debtor" and placement is not None
        if placement is not None and direct and lender_collects(agencies, placement.agency_id):
            continue  # the debtor was meant to pay the lender: attributed, not a break
        what = "a direct payment from the debtor" if direct else f"a {r.kind}"
        draft = MismatchDraft(
            "payment_not_reported",
            r.placement_id,
            f"the lender received {what} of {r.amount_minor} {r.currency} (minor units, "
            f"receipt {meta[r.id].payment_id}) that {r.agency_id or 'no agency'} has not reported",
            {"lender_receipts": [_receipt(r)]},
            {"agency_payments": []},
            r.amount_minor,
        )
        out.breaks.append(
            (f"payment_not_reported:receipt:{r.id}", Break(None, r.agency_id or "", draft))
        )
        if placement is None or not direct or placement.state not in OPEN_PLACEMENT_STATES:
            continue
        agency = agencies.get(placement.agency_id)
        if agency is not None:
            packet = render_direct_payment(
                agency_id=agency.id,
                placement_id=placement.id,
                case_id=placement.case_id,
                version=placement.version,
                payment_id=meta[r.id].payment_id,
                amount_minor=r.amount_minor,
                currency=r.currency,
                paid_at=datetime.fromtimestamp(meta[r.id].received_s, UTC),
                at=now,
            )
            out.packets.append((agency, placement.id, packet))


async def write(conn: AsyncConnection, out: ThreeWayOutcome, *, now: datetime) -> None:
    """Store the links and queue the direct-pay packets (breaks are written by the caller)."""
    await insert_rows(conn, MATCHES, LINK_COLUMNS, out.links)
    if out.packets:
        await queue_packets(conn, out.packets, now=now)


@lru_cache(maxsize=4096)
def _day_text(day: int) -> str:
    return (_EPOCH + timedelta(days=day)).isoformat()


def _payment(p: AgencyPayment) -> dict[str, object]:
    return {
        "event_id": p.id,
        "agency_id": p.agency_id,
        "placement_id": p.placement_id,
        "payment_id": p.ref,
        "amount_minor": p.amount_minor,
        "currency": p.currency,
        "paid_on": _day_text(p.day),
    }


def _receipt(r: LenderReceipt) -> dict[str, object]:
    found: dict[str, object] = {
        "receipt_id": r.id,
        "kind": r.kind,
        "placement_id": r.placement_id,
        "agency_id": r.agency_id,
        "agency_payment_ref": r.ref,
        "amount_minor": r.amount_minor,
        "currency": r.currency,
        "received_on": _day_text(r.day),
    }
    if r.period is not None:
        found["period"] = [_day_text(d) for d in r.period]
    return found


def _describe(record: AgencyPayment | LenderReceipt) -> dict[str, object]:
    return _payment(record) if isinstance(record, AgencyPayment) else _receipt(record)


__all__ = [
    "SeenPayments",
    "ThreeWayOutcome",
    "agency_payments",
    "judge",
    "lender_collects",
    "lender_side",
    "write",
]
