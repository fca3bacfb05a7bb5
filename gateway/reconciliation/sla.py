"""SLA checks: expectations past due are breached, each breach raised as a mismatch.

Theory of operation
-------------------
Expectations are written by gateway.reconciliation.recorder (from rule decisions),
gateway.dispatch.hooks (acknowledgement and first activity after a delivery) and
gateway.reconciliation.statement_pass (statements due); arriving events meet them.
``run_sla_checks`` runs on a schedule and as the last pass of a batch reconciliation run: first it
meets every due promise whose instalments in its window add up to its lower bound
(``meet_promises_by_sum``), then it breaches every expectation still open past its due time and
raises one mismatch per breach (``SLA_KINDS``), deduplicated by placement and ref.
"""

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.reconciliation.kinds import MismatchDraft
from gateway.reconciliation.recorder import EXPECTATIONS, E, X, insert_mismatches
from gateway.store.recon_tables import LenderPayment
from gateway.store.settlement_tables import Attribution

_ATTRIBUTIONS = Attribution.__table__  # type: ignore[attr-defined]
_RECEIPTS = LenderPayment.__table__  # type: ignore[attr-defined]
_A, _R = _ATTRIBUTIONS.c, _RECEIPTS.c

SLA_KINDS = {
    "ack": "missing_ack",
    "first_activity": "missing_activity",
    "promise_payment": "broken_promise",
    "statement": "missing_statement",
    "deletion": "deletion_unconfirmed",
}


async def meet_promises_by_sum(conn: AsyncConnection, *, now: datetime) -> int:
    """Meet every due promise (and every instalment of an approved plan) whose payments in
    its window add up to its lower bound: a debtor may keep a promise in several
    instalments. The payments are the agency's reports (less reversals) or, whichever is
    more, the lender's own receipts attributed to the placement (``attributions``, rows
    ``active`` or ``settled``; a disputed one counts once decided) and received in the
    window: under ``lender_collects`` the debtor pays the lender, and an instalment paid
    that way is kept whether or not the agency reports it. The two are never added, so a
    payment both received and reported counts once."""
    signed = sa.case((E.event_type == "payment.reversed", -E.amount_minor), else_=E.amount_minor)
    paid = (
        sa.select(sa.func.coalesce(sa.func.sum(signed), 0))
        .where(
            E.placement_id == X.placement_id,
            E.applied,
            E.event_type.in_(["payment.reported", "payment.reversed"]),
            E.occurred_at >= X.window_start,
            E.occurred_at <= X.due_at,
        )
        .scalar_subquery()
    )
    received = (
        sa.select(sa.func.coalesce(sa.func.sum(_A.amount_minor), 0))
        .select_from(_ATTRIBUTIONS.join(_RECEIPTS, _R.id == _A.receipt_id))
        .where(
            _A.placement_id == X.placement_id,
            _A.state.in_(["active", "settled"]),
            sa.or_(X.currency.is_(None), _A.currency == X.currency),
            _R.received_at >= X.window_start,
            _R.received_at <= X.due_at,
        )
        .scalar_subquery()
    )
    result = await conn.execute(
        EXPECTATIONS.update()
        .where(
            X.state == "open",
            X.kind == "promise_payment",
            X.due_at < now,
            X.amount_lower_minor.is_not(None),
            X.window_start.is_not(None),
            sa.or_(paid >= X.amount_lower_minor, received >= X.amount_lower_minor),
        )
        .values(state="met")
    )
    return int(result.rowcount or 0)


async def run_sla_checks(conn: AsyncConnection, *, now: datetime) -> dict[str, int]:
    """Breach every open expectation past due (after summing instalments towards due
    promises); raise one mismatch per breach."""
    await meet_promises_by_sum(conn, now=now)
    rows = (
        await conn.execute(
            sa.select(X.id, X.placement_id, X.agency_id, X.kind, X.ref, X.due_at, X.amount_minor)
            .where(X.state == "open", X.due_at < now)
            .order_by(X.id)
        )
    ).all()
    if not rows:
        return {}
    await conn.execute(
        EXPECTATIONS.update().where(X.id.in_([r.id for r in rows])).values(state="breached")
    )
    counts: dict[str, int] = {}
    drafts = []
    for r in rows:
        kind = SLA_KINDS[r.kind]
        counts[kind] = counts.get(kind, 0) + 1
        what = {
            "ack": "acknowledgement",
            "first_activity": "first activity",
            "statement": f"inventory statement for {r.ref.partition(':')[2]}",
            "deletion": "confirmation that the case's personal data was deleted (data.deleted)",
        }.get(r.kind, f"payment promised under {r.ref}")
        drafts.append(
            (
                f"{kind}:{r.placement_id}:{r.ref}",
                MismatchDraft(
                    kind,
                    r.placement_id or None,
                    f"{r.agency_id} sent no {what}"
                    + (f" for {r.placement_id}" if r.placement_id else "")
                    + f" by {r.due_at:%Y-%m-%d %H:%M} UTC",
                    {
                        "expected": r.kind,
                        "due_at": r.due_at.isoformat(),
                        "amount_minor": r.amount_minor,
                    },
                    {"received": None},
                    r.amount_minor,
                ),
                r.agency_id,
                None,
                None,
            )
        )
    await insert_mismatches(conn, drafts, now=now)
    return counts


__all__ = ["SLA_KINDS", "meet_promises_by_sum", "run_sla_checks"]
