"""Reconciliation rules (``assess``): each rule of the module docstring with a case that fires
it and one that does not, plus properties over random event sequences."""

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from gateway.lifecycle import OPEN_PLACEMENT_STATES
from gateway.reconciliation.event_rules import Decision, assess, event_money, event_placement_id
from gateway.reconciliation.kinds import MISMATCH_KINDS, SEVERITY, PlacementView
from schemas.events import AgencyEvent, PaymentReported, PaymentReversed
from tests.factories import event, money, placement_view

AGENCY = "AGY_TEST"
PID = "PL-AC0000000001-1"


def kinds(decision: Decision) -> list[str]:
    return [m.kind for m in decision.mismatches]


def after(decision: Decision) -> PlacementView:
    assert decision.placement is not None
    return decision.placement


# 1. unknown_placement


def test_unknown_placement_is_a_mismatch_and_changes_nothing() -> None:
    decision = assess(event("contact.attempted", placement_id="PL-NOPE-1"), AGENCY, None)
    assert not decision.applied
    assert decision.placement is None
    assert kinds(decision) == ["unknown_placement"]
    assert decision.mismatches[0].placement_id == "PL-NOPE-1"
    assert decision.mismatches[0].severity == "high"


def test_known_placement_is_not_unknown() -> None:
    decision = assess(event("contact.attempted"), AGENCY, placement_view())
    assert decision.applied
    assert "unknown_placement" not in kinds(decision)


# 2. wrong_agency


def test_event_for_another_agencys_placement_is_wrong_agency() -> None:
    decision = assess(event("payment.reported"), "AGY_INTRUDER", placement_view())
    assert not decision.applied
    assert decision.placement is None
    assert kinds(decision) == ["wrong_agency"]
    assert decision.mismatches[0].theirs["agency_id"] == "AGY_INTRUDER"
    assert decision.mismatches[0].ours["agency_id"] == AGENCY


def test_event_from_the_holder_is_not_wrong_agency() -> None:
    assert "wrong_agency" not in kinds(assess(event("payment.reported"), AGENCY, placement_view()))


# 3. currency_mismatch


@pytest.mark.parametrize(
    ("event_type", "field"),
    [("payment.reported", "amount"), ("placement.acknowledged", "balance")],
)
def test_amount_in_another_currency_is_a_mismatch(event_type: str, field: str) -> None:
    view = placement_view(state="placed" if event_type.startswith("placement") else "active")
    overrides: dict[str, Any] = {field: money(10_000, "USD")}
    usd = event(event_type, **overrides)
    decision = assess(usd, AGENCY, view)
    assert not decision.applied
    assert kinds(decision) == ["currency_mismatch"]


def test_amount_in_the_placement_currency_is_fine() -> None:
    decision = assess(
        event("payment.reported", amount=money(10_000, "CNY")), AGENCY, placement_view()
    )
    assert decision.applied
    assert "currency_mismatch" not in kinds(decision)


# 4. activity_after_recall


@pytest.mark.parametrize(
    "event_type", ["contact.attempted", "promise.made", "payment.reported", "legal.action"]
)
def test_work_on_a_recalled_placement_is_recorded_not_applied(event_type: str) -> None:
    decision = assess(event(event_type), AGENCY, placement_view(state="recalled"))
    assert not decision.applied
    assert decision.placement is None
    assert kinds(decision) == ["activity_after_recall"]


def test_payment_after_recall_carries_the_amount() -> None:
    decision = assess(
        event("payment.reported", amount=7_700), AGENCY, placement_view(state="recalled")
    )
    assert decision.mismatches[0].delta_minor == 7_700


@pytest.mark.parametrize(
    ("event_type", "new_state"), [("case.returned", "returned"), ("case.closed", "closed")]
)
def test_confirming_the_end_of_a_recalled_placement_is_fine(
    event_type: str, new_state: str
) -> None:
    decision = assess(event(event_type), AGENCY, placement_view(state="recalled"))
    assert decision.applied
    assert decision.mismatches == []
    assert after(decision).state == new_state


def test_late_acknowledgement_of_a_recalled_placement_keeps_it_recalled() -> None:
    decision = assess(event("placement.acknowledged"), AGENCY, placement_view(state="recalled"))
    assert decision.applied
    assert after(decision).state == "recalled"
    assert decision.mismatches == []


# 5. illegal_transition


@pytest.mark.parametrize(
    ("state", "event_type"),
    [
        ("placed", "payment.reported"),
        ("placed", "contact.attempted"),
        ("closed", "contact.attempted"),
        ("returned", "payment.reported"),
        ("rejected", "placement.acknowledged"),
        ("active", "placement.rejected"),
    ],
)
def test_event_not_legal_in_the_state_is_an_illegal_transition(state: str, event_type: str) -> None:
    decision = assess(event(event_type), AGENCY, placement_view(state=state))
    assert not decision.applied
    assert decision.placement is None
    assert kinds(decision) == ["illegal_transition"]
    assert state in decision.mismatches[0].detail


@pytest.mark.parametrize(
    ("state", "event_type", "new_state"),
    [
        ("placed", "placement.acknowledged", "acknowledged"),
        ("placed", "placement.rejected", "rejected"),
        ("acknowledged", "contact.attempted", "active"),
        ("active", "dispute.opened", "disputed"),
        ("disputed", "legal.action", "legal"),
        ("legal", "case.closed", "closed"),
    ],
)
def test_legal_transition_moves_the_state(state: str, event_type: str, new_state: str) -> None:
    decision = assess(event(event_type), AGENCY, placement_view(state=state))
    assert decision.applied
    assert "illegal_transition" not in kinds(decision)
    assert after(decision).state == new_state


# 6. ack_balance_differs


def test_acknowledged_balance_differing_is_applied_with_a_mismatch() -> None:
    view = placement_view(state="placed", acked_balance_minor=None, agency_case_ref=None)
    decision = assess(event("placement.acknowledged", balance=99_000), AGENCY, view)
    assert decision.applied
    assert kinds(decision) == ["ack_balance_differs"]
    assert decision.mismatches[0].delta_minor == -1_000
    assert after(decision).state == "acknowledged"
    assert after(decision).acked_balance_minor == 99_000
    assert "ack" in decision.meets


def test_acknowledged_balance_matching_raises_nothing() -> None:
    view = placement_view(state="placed", acked_balance_minor=None, agency_case_ref=None)
    decision = assess(
        event("placement.acknowledged", balance=100_000, agency_case_ref="EXT-77"), AGENCY, view
    )
    assert decision.applied
    assert decision.mismatches == []
    assert after(decision).agency_case_ref == "EXT-77"
    assert decision.meets == ["ack"]


# 7. conflicting_duplicate / harmless repeat


def test_same_payment_id_with_another_amount_is_a_conflicting_duplicate() -> None:
    view = placement_view(state="active", collected_minor=10_000, payments=(("PAY-1", 10_000),))
    decision = assess(event("payment.reported", payment_id="PAY-1", amount=12_000), AGENCY, view)
    assert not decision.applied
    assert kinds(decision) == ["conflicting_duplicate"]
    assert decision.mismatches[0].delta_minor == 2_000


def test_same_payment_id_with_the_same_amount_is_a_harmless_repeat() -> None:
    view = placement_view(state="active", collected_minor=10_000, payments=(("PAY-1", 10_000),))
    decision = assess(event("payment.reported", payment_id="PAY-1", amount=10_000), AGENCY, view)
    assert decision.applied
    assert decision.mismatches == []
    assert after(decision).collected_minor == 10_000
    assert after(decision).payments == (("PAY-1", 10_000),)


def test_a_new_payment_id_is_added() -> None:
    view = placement_view(state="active", collected_minor=10_000, payments=(("PAY-1", 10_000),))
    decision = assess(event("payment.reported", payment_id="PAY-2", amount=10_000), AGENCY, view)
    assert decision.applied
    assert decision.mismatches == []
    assert after(decision).collected_minor == 20_000
    assert dict(after(decision).payments) == {"PAY-1": 10_000, "PAY-2": 10_000}


# 8. over_collection


def test_payments_beyond_the_balance_are_over_collection_but_applied() -> None:
    view = placement_view(collected_minor=90_000, payments=(("PAY-0", 90_000),))
    decision = assess(event("payment.reported", amount=20_000), AGENCY, view)
    assert decision.applied
    assert kinds(decision) == ["over_collection"]
    assert decision.mismatches[0].delta_minor == 10_000
    assert after(decision).collected_minor == 110_000


def test_collecting_exactly_the_balance_is_not_over_collection() -> None:
    view = placement_view(collected_minor=90_000, payments=(("PAY-0", 90_000),))
    decision = assess(event("payment.reported", amount=10_000), AGENCY, view)
    assert decision.applied
    assert decision.mismatches == []
    assert after(decision).collected_minor == 100_000


# 9. unmatched_reversal / reversals


def test_reversal_removes_the_payment_and_its_amount() -> None:
    view = placement_view(
        state="active", collected_minor=30_000, payments=(("PAY-1", 10_000), ("PAY-2", 20_000))
    )
    decision = assess(event("payment.reversed", payment_id="PAY-2", amount=20_000), AGENCY, view)
    assert decision.applied
    assert decision.mismatches == []
    assert after(decision).collected_minor == 10_000
    assert after(decision).payments == (("PAY-1", 10_000),)


def test_partial_reversal_reduces_the_payment_it_names() -> None:
    view = placement_view(state="active", collected_minor=10_000, payments=(("PAY-1", 10_000),))
    decision = assess(event("payment.reversed", payment_id="PAY-1", amount=4_000), AGENCY, view)
    assert decision.applied
    assert decision.mismatches == []
    assert after(decision).collected_minor == 6_000
    assert after(decision).payments == (("PAY-1", 6_000),)


def test_reversal_of_a_payment_never_reported_is_unmatched() -> None:
    view = placement_view(state="active", collected_minor=10_000, payments=(("PAY-1", 10_000),))
    decision = assess(event("payment.reversed", payment_id="PAY-9", amount=10_000), AGENCY, view)
    assert not decision.applied
    assert decision.placement is None
    assert kinds(decision) == ["unmatched_reversal"]
    assert decision.mismatches[0].delta_minor == 10_000


def test_reversal_of_more_than_was_paid_is_unmatched() -> None:
    view = placement_view(state="active", collected_minor=10_000, payments=(("PAY-1", 10_000),))
    decision = assess(event("payment.reversed", payment_id="PAY-1", amount=10_001), AGENCY, view)
    assert not decision.applied
    assert kinds(decision) == ["unmatched_reversal"]
    assert decision.mismatches[0].delta_minor == 1


def test_reversal_then_repeat_of_the_same_payment_counts_it_again() -> None:
    view = placement_view(state="active", collected_minor=10_000, payments=(("PAY-1", 10_000),))
    reversed_ = after(assess(event("payment.reversed", payment_id="PAY-1"), AGENCY, view))
    again = assess(event("payment.reported", payment_id="PAY-1", amount=10_000), AGENCY, reversed_)
    assert after(again).collected_minor == 10_000


# Expectations and statements


def test_promise_creates_a_payment_expectation_after_a_grace_period() -> None:
    decision = assess(
        event("promise.made", promise_id="PR-9", amount=5_000, promised_date="2026-03-10"),
        AGENCY,
        placement_view(state="active"),
    )
    assert decision.applied
    [expectation] = decision.new_expectations
    assert expectation.kind == "promise_payment"
    assert expectation.ref == "PR-9"
    assert expectation.amount_minor == 5_000
    assert expectation.due_at > datetime(2026, 3, 10, 23, 59, tzinfo=UTC)
    assert "first_activity" in decision.meets


def test_statement_is_accepted_without_touching_any_placement() -> None:
    statement = event("statement.submitted")
    decision = assess(statement, AGENCY, None)
    assert decision.applied
    assert decision.placement is None
    assert decision.mismatches == []
    assert event_placement_id(statement) is None


def test_event_money_finds_amounts_and_balances() -> None:
    amount = event_money(event("payment.reported", amount=123))
    balance = event_money(event("case.returned", balance=money(456, "USD")))
    assert amount is not None and (amount.amount_minor, amount.currency) == (123, "CNY")
    assert balance is not None and (balance.amount_minor, balance.currency) == (456, "USD")
    assert event_money(event("contact.attempted")) is None


def test_every_mismatch_kind_has_a_severity() -> None:
    assert set(MISMATCH_KINDS) == set(SEVERITY)
    assert set(SEVERITY.values()) <= {"low", "medium", "high"}


# Properties over random sequences on one placement

PAYMENT_IDS = ["PAY-1", "PAY-2"]
AMOUNTS = [2_500, 5_000, 40_000, 90_000]


@dataclass(frozen=True)
class Step:
    event: AgencyEvent
    agency_id: str


def _step(kind: str, payment_id: str, amount: int, currency: str, agency_id: str) -> Step:
    if kind in ("payment.reported", "payment.reversed"):
        made = event(kind, payment_id=payment_id, amount=money(amount, currency))
    elif kind == "placement.acknowledged":
        made = event(kind, balance=money(amount, currency))
    else:
        made = event(kind)
    return Step(made, agency_id)


steps = st.builds(
    _step,
    kind=st.sampled_from(
        [
            "placement.acknowledged",
            *["payment.reported"] * 3,
            *["payment.reversed"] * 2,
            "contact.attempted",
            "promise.made",
            "dispute.opened",
            "complaint.received",
            "case.returned",
        ]
    ),
    payment_id=st.sampled_from(PAYMENT_IDS),
    amount=st.sampled_from(AMOUNTS),
    currency=st.sampled_from(["CNY"] * 5 + ["USD"]),
    agency_id=st.sampled_from([AGENCY] * 5 + ["AGY_OTHER"]),
)


def replay(
    sequence: list[Step], *, start: str, recall_at: int | None
) -> tuple[PlacementView, dict[str, int], list[tuple[Step, Decision]]]:
    """Feed the events one by one to a placement in state ``start``, recalling it before
    step ``recall_at``.

    Returns the final view, a model of the payments applied and not reversed, and each
    step with its decision.
    """
    view = placement_view(state=start)
    model: dict[str, int] = {}
    decisions: list[tuple[Step, Decision]] = []
    for n, step in enumerate(sequence):
        if n == recall_at and view.state in OPEN_PLACEMENT_STATES:
            view = replace(view, state="recalled")
        decision = assess(step.event, step.agency_id, view)
        decisions.append((step, decision))
        if decision.applied:
            if isinstance(step.event, PaymentReported):
                model.setdefault(step.event.data.payment_id, step.event.data.amount.amount_minor)
            elif isinstance(step.event, PaymentReversed):
                left = model[step.event.data.payment_id] - step.event.data.amount.amount_minor
                if left:
                    model[step.event.data.payment_id] = left
                else:
                    del model[step.event.data.payment_id]
        if decision.placement is not None:
            view = decision.placement
    return view, model, decisions


@settings(max_examples=400, deadline=None)
@given(
    sequence=st.lists(steps, max_size=25),
    start=st.sampled_from(["placed", "acknowledged", "active"]),
    recall_at=st.none() | st.integers(0, 25),
)
def test_property_rules_never_apply_an_event_they_reject(
    sequence: list[Step], start: str, recall_at: int | None
) -> None:
    _view, _model, decisions = replay(sequence, start=start, recall_at=recall_at)
    for step, decision in decisions:
        unknown = assess(step.event, step.agency_id, None)
        assert (unknown.applied, unknown.placement) == (False, None)
        assert kinds(unknown) == ["unknown_placement"]
        refused = {"unknown_placement", "wrong_agency", "currency_mismatch"} & set(kinds(decision))
        if refused:
            assert not decision.applied
            assert decision.placement is None
        if step.agency_id != AGENCY:
            assert kinds(decision) == ["wrong_agency"]
        if not decision.applied:
            assert decision.mismatches, "an event was dropped without a mismatch"
        if decision.placement is not None:
            assert decision.placement.agency_id == AGENCY


@settings(max_examples=400, deadline=None)
@given(
    sequence=st.lists(steps, max_size=25),
    start=st.sampled_from(["placed", "acknowledged", "active"]),
    recall_at=st.none() | st.integers(0, 25),
)
def test_property_collected_equals_unreversed_applied_payments(
    sequence: list[Step], start: str, recall_at: int | None
) -> None:
    view, model, _decisions = replay(sequence, start=start, recall_at=recall_at)
    assert view.collected_minor == sum(model.values())
    assert dict(view.payments) == model
