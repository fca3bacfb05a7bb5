"""The rules of ops actions on mismatches (pure): which action applies when, what accepting
the agency's figure does, and how a filter becomes SQL."""

from dataclasses import replace

import pytest
import sqlalchemy as sa
from hypothesis import given, strategies as st

from gateway.lifecycle import MISMATCH_TRANSITIONS, can_transition
from gateway.resolutions.rules import (
    ACCEPT_RULES,
    ACTIONS,
    ActionRequest,
    Adjustment,
    MismatchFacts,
    MismatchFilter,
    available_actions,
    refusal,
)


def facts(**overrides: object) -> MismatchFacts:
    """An open ack_balance_differs on an acknowledged CNY 1,000.00 placement loaded at 1,050."""
    base = MismatchFacts(
        id=7,
        kind="ack_balance_differs",
        state="open",
        agency_id="AGY_TEST",
        placement_id="PL-AC0000000001-1",
        delta_minor=5_000,
        case_id="AC0000000001",
        placement_state="acknowledged",
        currency="CNY",
        version=1,
        balance_minor=100_000,
        acked_balance_minor=105_000,
        collected_minor=0,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


def request(action: str, **overrides: object) -> ActionRequest:
    values: dict[str, object] = {"action": action, "actor": "olga", "reason": "checked the file"}
    values.update(overrides)
    return ActionRequest(**values)  # type: ignore[arg-type]


def test_every_action_moves_along_the_mismatch_state_machine() -> None:
    for spec in ACTIONS.values():
        for state in spec.from_states:
            assert state in MISMATCH_TRANSITIONS
            if spec.to_state is not None and spec.to_state != state:
                assert can_transition(MISMATCH_TRANSITIONS, state, spec.to_state), (spec, state)


@given(
    state=st.sampled_from(sorted(MISMATCH_TRANSITIONS)),
    action=st.sampled_from(sorted(ACTIONS)),
    kind=st.sampled_from(["ack_balance_differs", "dead_delivery", "missing_ack", "x"]),
    placement_state=st.sampled_from([None, "acknowledged", "recalled", "closed"]),
    resendable=st.sampled_from([(), (4,)]),
)
def test_an_allowed_action_is_always_a_legal_transition(
    state: str, action: str, kind: str, placement_state: str | None, resendable: tuple[int, ...]
) -> None:
    f = facts(state=state, kind=kind, placement_state=placement_state, resendable=resendable)
    spec = ACTIONS[action]
    if refusal(spec, f, request(action, assignee="ada")) is None:
        assert (
            spec.to_state is None
            or spec.to_state == state
            or can_transition(MISMATCH_TRANSITIONS, state, spec.to_state)
        )


def test_closed_mismatches_only_take_comments() -> None:
    for state in ("resolved", "dismissed", "written_off"):
        assert available_actions(facts(state=state)) == ["comment"]


def test_an_open_balance_difference_offers_accept_amend_and_recall_but_not_resend() -> None:
    available = available_actions(facts())
    assert {"investigate", "assign", "comment", "accept", "recall", "amend"} <= set(available)
    assert {"dismiss", "write_off"} <= set(available)
    assert "resend" not in available and "reopen" not in available
    assert refusal(ACTIONS["resend"], facts()) == (
        "no dead or unknown packet of this placement to resend"
    )


def test_investigating_can_be_reopened_but_not_investigated_again() -> None:
    available = available_actions(facts(state="investigating"))
    assert "reopen" in available and "investigate" not in available


def test_accepting_a_loaded_balance_sets_our_balance_to_the_agencys() -> None:
    assert ACCEPT_RULES["ack_balance_differs"](facts()) == Adjustment(balance_minor=105_000)


def test_nothing_is_left_to_accept_once_our_record_matches() -> None:
    matched = facts(balance_minor=105_000)
    assert "accept" not in available_actions(matched)
    why = refusal(ACTIONS["accept"], matched)
    assert why is not None and "already matches" in why


def test_accepting_a_re_reported_payment_counts_the_difference_and_applies_the_event() -> None:
    f = facts(
        kind="conflicting_duplicate",
        delta_minor=2_000,
        collected_minor=10_000,
        event_id=42,
        event_type="payment.reported",
        event_applied=False,
    )
    assert ACCEPT_RULES["conflicting_duplicate"](f) == Adjustment(
        collected_minor=12_000, apply_event=True
    )
    assert ACCEPT_RULES["conflicting_duplicate"](replace(f, event_applied=True)) is None


def test_a_payment_reported_after_recall_can_be_accepted_as_collected() -> None:
    f = facts(
        kind="activity_after_recall",
        placement_state="recalled",
        collected_minor=0,
        event_type="payment.reported",
        event_applied=False,
        event_amount_minor=3_000,
    )
    assert ACCEPT_RULES["activity_after_recall"](f) == Adjustment(
        collected_minor=3_000, apply_event=True
    )
    contact = replace(f, event_type="contact.attempted", event_amount_minor=None)
    assert "accept" not in available_actions(contact)


def test_accepting_a_statement_drift_moves_our_balance_to_their_outstanding() -> None:
    drift = facts(kind="statement_balance_drift", delta_minor=-2_500, collected_minor=10_000)
    assert ACCEPT_RULES["statement_balance_drift"](drift) == Adjustment(balance_minor=97_500)
    other_currency = replace(drift, delta_minor=None)
    assert "accept" not in available_actions(other_currency)


def test_kinds_without_an_agency_figure_cannot_be_accepted() -> None:
    why = refusal(ACTIONS["accept"], facts(kind="missing_ack"))
    assert why == "missing_ack has no agency figure to accept; dismiss or write it off"


def test_a_dead_packet_can_be_resent() -> None:
    dead = facts(kind="dead_delivery", resendable=(9,), acked_balance_minor=None)
    assert "resend" in available_actions(dead)
    assert "accept" not in available_actions(dead)


def test_recall_and_amend_need_an_open_placement() -> None:
    for placement_state in ("recalled", "closed", None):
        f = facts(placement_state=placement_state)
        assert "recall" not in available_actions(f)
        assert "amend" not in available_actions(f)
    why = refusal(ACTIONS["recall"], facts(placement_id=None, placement_state=None))
    assert why == "recall needs an open placement; none is linked"


@pytest.mark.parametrize("action", ["accept", "recall", "amend", "dismiss", "write_off", "comment"])
def test_closing_actions_and_comments_need_a_reason(action: str) -> None:
    why = refusal(ACTIONS[action], facts(), request(action, reason="   "))
    assert why == f"{action} needs a reason (who and why are recorded)"


def test_investigating_needs_no_reason() -> None:
    assert refusal(ACTIONS["investigate"], facts(), request("investigate", reason="")) is None


def test_request_details_are_checked() -> None:
    assert refusal(ACTIONS["assign"], facts(), request("assign")) == (
        "assign needs the name of a person (empty to unassign)"
    )
    assert refusal(ACTIONS["assign"], facts(), request("assign", assignee="")) is None
    assert refusal(ACTIONS["amend"], facts(), request("amend", balance_minor=-1)) == (
        "the amended balance cannot be negative"
    )
    bad_code = refusal(ACTIONS["recall"], facts(), request("recall", recall_code="paid"))
    assert bad_code is not None and "recall code" in bad_code
    assert refusal(ACTIONS["recall"], facts(), request("recall", recall_code="PAID_DIRECT")) is None


def _sql(f: MismatchFilter) -> str:
    from gateway.store.tables import Mismatch

    query = sa.select(Mismatch.__table__.c.id).where(*f.clauses())  # type: ignore[attr-defined]
    return str(query.compile(compile_kwargs={"literal_binds": True}))


def test_a_filter_says_what_it_selects() -> None:
    sql = _sql(MismatchFilter(kinds=("dead_delivery",), agencies=("AGY_A", "AGY_B")))
    assert "mismatches.state IN ('open', 'investigating')" in sql
    assert "mismatches.kind IN ('dead_delivery')" in sql
    assert "mismatches.agency_id IN ('AGY_A', 'AGY_B')" in sql
    assert "WHERE" not in _sql(MismatchFilter(states=()))


def test_unassigned_and_search_filters() -> None:
    unassigned = _sql(MismatchFilter(assignee=""))
    assert "NOT IN (SELECT mismatch_assignments.mismatch_id" in unassigned
    assigned = _sql(MismatchFilter(assignee="olga"))
    assert "mismatch_assignments.assignee = 'olga'" in assigned
    # A wildcard typed into the search box is a literal character, not a pattern.
    search = _sql(MismatchFilter(search="AC_1%"))
    assert "LIKE 'AC\\_1\\%%'" in search and "LIKE 'PL-AC\\_1\\%%'" in search
