"""Event rules: one agency event against the record of what was sent (pure).

Theory of operation
-------------------
``assess`` takes an event, the agency that sent it and our view of the placement it names,
and returns a ``Decision``: whether the event may change the placement, the new state and
figures, the expectations it meets or creates, and the mismatches it raises. Rules run in a
fixed order, each with a name and a version (gateway.reconciliation.kinds) recorded on every
mismatch it raises:

1. ``unknown_placement``: the placement does not exist. Nothing changes.
2. ``wrong_agency``: the placement is held by another agency. Nothing changes.
3. ``currency_mismatch``: an amount in another currency than the placement's. Nothing changes.
4. ``activity_after_recall``: work reported on a recalled placement. Recorded, not applied.
5. ``illegal_transition``: the event is not legal in the placement's state (see
   gateway.lifecycle). Nothing changes.
6. ``ack_balance_differs``: the agency loaded another balance than we sent. Applied.
7. ``conflicting_duplicate``: a payment id reported again with another amount. Not applied.
   The same payment id with the same amount is a harmless repeat and changes nothing.
8. ``over_collection``: reported payments exceed the balance placed. Applied (money is money).
9. ``unmatched_reversal``: a reversal of a payment never reported, or of more than was paid.
   Not applied. A partial reversal reduces the payment it names.
10. ``date_out_of_window``: a payment dated before we placed the case, or more than a day
    after the agency reported it. Applied.
11. ``status_conflict``: the agency's own reports disagree: a payment on a case it reported
    disputed, a close as ``paid_in_full`` with less collected than placed, a return for
    ``recalled`` that we never recalled. Applied.

A promise to pay creates a payment expectation with bounds: met by payments in
[promise made, promised date + grace] totalling at least the promised amount less
``PROMISE_TOLERANCE_BPS`` (see gateway.reconciliation.recorder and gateway.reconciliation.sla).

The batch engine re-derives rules 1-4 and 7-11 set-based from the stored events
(gateway.reconciliation.event_audit), with the same dedupe keys, so nothing is raised twice.

The caller (gateway.reconciliation.recorder) applies decisions in order inside the inbound
transaction, so several events for one placement in one batch see each other's effects.
"""

import functools
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from typing import Any

from pydantic import BaseModel

from gateway.lifecycle import ACTIVITY_EVENTS, next_placement_state
from gateway.reconciliation.kinds import MismatchDraft, NewExpectation, PlacementView
from schemas.base import Money, money_text
from schemas.events import (
    AgencyEvent,
    CaseClosed,
    CaseReturned,
    PaymentReported,
    PaymentReversed,
    PlacementAcknowledged,
    PromiseMade,
    SettlementConfirmed,
    SettlementDisputed,
    StatementSubmitted,
)

PROMISE_GRACE = timedelta(days=2)
PLACEMENT_DATE_GRACE = timedelta(days=1)
"""Agencies often report a payment date without a time; read at local midnight it can fall
up to a day before the placement instant without being wrong."""
PROMISE_TOLERANCE_BPS = 100
FUTURE_SKEW = timedelta(days=1)


@dataclass(slots=True)
class Decision:
    applied: bool
    placement: PlacementView | None = None
    mismatches: list[MismatchDraft] = field(default_factory=list)
    meets: list[str] = field(default_factory=list)
    new_expectations: list[NewExpectation] = field(default_factory=list)


@functools.cache
def _money_fields(model: type[BaseModel]) -> tuple[str, ...]:
    # Asked once per event class: a pydantic model answers a missing attribute slowly.
    return tuple(name for name in ("amount", "balance") if name in model.model_fields)


def event_money(event: AgencyEvent) -> Money | None:
    data = event.data
    for name in _money_fields(type(data)):
        value = getattr(data, name)
        if isinstance(value, Money):
            return value
    return None


def event_placement_id(event: AgencyEvent) -> str | None:
    if isinstance(event, StatementSubmitted | SettlementConfirmed | SettlementDisputed):
        return None  # agency-wide: an inventory, or an answer to a settlement statement
    return event.data.placement_id


def assess(event: AgencyEvent, agency_id: str, placement: PlacementView | None) -> Decision:
    """Apply the rules in the module docstring to one event."""
    if isinstance(event, StatementSubmitted | SettlementConfirmed | SettlementDisputed):
        return Decision(applied=True)  # settlement answers: gateway.settlement.answers
    pid = event.data.placement_id
    theirs: dict[str, object] = {"type": event.type, "placement_id": pid}
    if placement is None:
        return Decision(
            applied=False,
            mismatches=[
                MismatchDraft(
                    "unknown_placement",
                    pid,
                    f"{agency_id} reported {event.type} for placement {pid}, which we never placed",
                    {"placement": None},
                    theirs,
                )
            ],
        )
    ours: dict[str, object] = {
        "agency_id": placement.agency_id,
        "state": placement.state,
        "balance": money_text(placement.balance_minor, placement.currency),
    }
    if placement.agency_id != agency_id:
        return Decision(
            applied=False,
            mismatches=[
                MismatchDraft(
                    "wrong_agency",
                    pid,
                    f"{agency_id} reported {event.type} for {pid}, which is held by "
                    f"{placement.agency_id}",
                    ours,
                    {**theirs, "agency_id": agency_id},
                )
            ],
        )
    money = event_money(event)
    if money is not None:
        theirs["amount"] = str(money)
        if money.currency != placement.currency:
            return Decision(
                applied=False,
                mismatches=[
                    MismatchDraft(
                        "currency_mismatch",
                        pid,
                        f"{event.type} in {money.currency} on a {placement.currency} placement",
                        ours,
                        theirs,
                    )
                ],
            )
    if placement.state == "recalled" and event.type in ACTIVITY_EVENTS:
        return Decision(
            applied=False,
            mismatches=[
                MismatchDraft(
                    "activity_after_recall",
                    pid,
                    f"{agency_id} reported {event.type} on {pid} after it was recalled",
                    ours,
                    theirs,
                    money.amount_minor if money else None,
                )
            ],
        )
    new_state = next_placement_state(placement.state, event.type)
    if new_state is None:
        return Decision(
            applied=False,
            mismatches=[
                MismatchDraft(
                    "illegal_transition",
                    pid,
                    f"{event.type} is not allowed while {pid} is {placement.state}",
                    ours,
                    theirs,
                )
            ],
        )
    decision = Decision(applied=True)
    # What changes on the placement, applied with one ``replace`` at the end.
    updated: dict[str, Any] = {"state": new_state}
    if isinstance(event, PlacementAcknowledged):
        decision.meets.append("ack")
        acked = event.data.balance.amount_minor
        updated["acked_balance_minor"] = acked
        updated["agency_case_ref"] = event.data.agency_case_ref
        if acked != placement.balance_minor:
            decision.mismatches.append(
                MismatchDraft(
                    "ack_balance_differs",
                    pid,
                    f"{agency_id} loaded {event.data.balance}, we sent "
                    f"{money_text(placement.balance_minor, placement.currency)}",
                    ours,
                    theirs,
                    acked - placement.balance_minor,
                )
            )
    if event.type in ACTIVITY_EVENTS:
        decision.meets.append("first_activity")
    if event.type == "data.deleted":
        decision.meets.append("deletion")
    if isinstance(event, PromiseMade):
        due = datetime.combine(
            event.data.promised_date, time(23, 59, 59), tzinfo=event.timestamp.tzinfo
        )
        promised = event.data.amount.amount_minor
        decision.new_expectations.append(
            NewExpectation(
                "promise_payment",
                event.data.promise_id,
                due + PROMISE_GRACE,
                promised,
                amount_lower_minor=promised - promised * PROMISE_TOLERANCE_BPS // 10_000,
                currency=event.data.amount.currency,
                window_start=event.timestamp,
            )
        )
    if isinstance(event, PaymentReported):
        payments = dict(placement.payments)
        amount = event.data.amount.amount_minor
        previous = payments.get(event.data.payment_id)
        if previous == amount:
            return Decision(applied=True, placement=placement)  # a harmless repeat
        if previous is not None:
            return Decision(
                applied=False,
                mismatches=[
                    MismatchDraft(
                        "conflicting_duplicate",
                        pid,
                        f"payment {event.data.payment_id} reported again with another amount",
                        {**ours, "amount_minor": previous},
                        theirs,
                        amount - previous,
                    )
                ],
            )
        payments[event.data.payment_id] = amount
        collected = placement.collected_minor + amount
        updated["collected_minor"] = collected
        updated["payments"] = tuple(payments.items())
        decision.meets.append("promise_payment")
        decision.mismatches.extend(_payment_conflicts(event, agency_id, placement, ours, theirs))
        if collected > placement.balance_minor:
            decision.mismatches.append(
                MismatchDraft(
                    "over_collection",
                    pid,
                    f"{agency_id} reports {collected} collected on a balance of "
                    f"{placement.balance_minor} (minor units, {placement.currency})",
                    {**ours, "collected_minor": placement.collected_minor},
                    theirs,
                    collected - placement.balance_minor,
                )
            )
    if isinstance(event, PaymentReversed):
        payments = dict(placement.payments)
        paid = payments.get(event.data.payment_id)
        amount = event.data.amount.amount_minor
        if paid is None or amount > paid:
            return Decision(
                applied=False,
                mismatches=[
                    MismatchDraft(
                        "unmatched_reversal",
                        pid,
                        f"reversal of payment {event.data.payment_id} "
                        + ("which was never reported" if paid is None else f"exceeds its {paid}"),
                        {**ours, "payment_minor": paid},
                        theirs,
                        amount - (paid or 0),
                    )
                ],
            )
        if amount == paid:
            del payments[event.data.payment_id]
        else:
            payments[event.data.payment_id] = paid - amount  # a partial reversal
        updated["collected_minor"] = placement.collected_minor - amount
        updated["payments"] = tuple(payments.items())
    if isinstance(event, CaseClosed | CaseReturned):
        decision.mismatches.extend(_ending_conflicts(event, agency_id, placement, ours, theirs))
    decision.placement = replace(placement, **updated)
    return decision


def _payment_conflicts(
    event: PaymentReported,
    agency_id: str,
    placement: PlacementView,
    ours: dict[str, object],
    theirs: dict[str, object],
) -> list[MismatchDraft]:
    pid = placement.id
    paid_at = event.data.paid_at
    found = []
    if placement.placed_at is not None and paid_at < placement.placed_at - PLACEMENT_DATE_GRACE:
        found.append(
            MismatchDraft(
                "date_out_of_window",
                pid,
                f"{agency_id} reports payment {event.data.payment_id} paid "
                f"{paid_at:%Y-%m-%d %H:%M} UTC, before the case was placed "
                f"({placement.placed_at:%Y-%m-%d %H:%M} UTC)",
                {**ours, "placed_at": placement.placed_at.isoformat()},
                {**theirs, "paid_at": paid_at.isoformat()},
            )
        )
    elif paid_at > event.timestamp + FUTURE_SKEW:
        found.append(
            MismatchDraft(
                "date_out_of_window",
                pid,
                f"{agency_id} reports payment {event.data.payment_id} paid in the future "
                f"({paid_at:%Y-%m-%d %H:%M} UTC, reported {event.timestamp:%Y-%m-%d %H:%M})",
                ours,
                {**theirs, "paid_at": paid_at.isoformat()},
            )
        )
    if placement.state == "disputed":
        found.append(
            MismatchDraft(
                "status_conflict",
                pid,
                f"{agency_id} reports a payment on {pid}, which it reported disputed",
                ours,
                theirs,
                event.data.amount.amount_minor,
            )
        )
    return found


def _ending_conflicts(
    event: CaseClosed | CaseReturned,
    agency_id: str,
    placement: PlacementView,
    ours: dict[str, object],
    theirs: dict[str, object],
) -> list[MismatchDraft]:
    reason = event.data.reason
    pid = placement.id
    theirs = {**theirs, "reason": reason}
    if (
        isinstance(event, CaseClosed)
        and reason == "paid_in_full"
        and placement.state != "recalled"
        and placement.collected_minor < placement.balance_minor
    ):
        return [
            MismatchDraft(
                "status_conflict",
                pid,
                f"{agency_id} closed {pid} as paid in full with {placement.collected_minor} of "
                f"{placement.balance_minor} collected (minor units, {placement.currency})",
                {**ours, "collected_minor": placement.collected_minor},
                theirs,
                placement.collected_minor - placement.balance_minor,
            )
        ]
    if isinstance(event, CaseReturned) and reason == "recalled" and placement.state != "recalled":
        return [
            MismatchDraft(
                "status_conflict",
                pid,
                f"{agency_id} returned {pid} as recalled, but we never recalled it",
                ours,
                theirs,
            )
        ]
    return []


__all__ = [
    "FUTURE_SKEW",
    "PLACEMENT_DATE_GRACE",
    "PROMISE_TOLERANCE_BPS",
    "Decision",
    "assess",
    "event_money",
    "event_placement_id",
]
