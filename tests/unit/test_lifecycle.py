"""The state tables: reachability, terminal states, recall, and table consistency."""

from collections import deque

import pytest

from gateway.lifecycle import (
    ACTIVITY_EVENTS,
    ENDED_PLACEMENT_STATES,
    MISMATCH_TRANSITIONS,
    OPEN_PLACEMENT_STATES,
    OUTBOX_TRANSITIONS,
    PLACEMENT_TRANSITIONS,
    TERMINAL_PLACEMENT_STATES,
    can_transition,
    next_placement_state,
)
from schemas.events import EVENT_TYPES

WORKING_EVENTS = frozenset(EVENT_TYPES) - {
    "complaint.received",
    "statement.submitted",
    "data.deleted",
    "attribution.disputed",
}
"""Events that report work or a change of status (complaints, statements, deletion
confirmations and disputes of attribution change nothing)."""


def reachable(table: dict[str, set[str]], start: str) -> set[str]:
    seen, queue = {start}, deque([start])
    while queue:
        for target in table.get(queue.popleft(), set()):
            if target not in seen:
                seen.add(target)
                queue.append(target)
    return seen


def placement_graph() -> dict[str, set[str]]:
    graph = {state: set(events.values()) for state, events in PLACEMENT_TRANSITIONS.items()}
    # Our own recall moves any open placement to ``recalled`` (not an agency event).
    for state in OPEN_PLACEMENT_STATES:
        graph[state].add("recalled")
    return graph


def test_every_placement_state_is_reachable_from_placed() -> None:
    assert reachable(placement_graph(), "placed") == set(PLACEMENT_TRANSITIONS)


def test_every_placement_state_is_open_terminal_or_recalled() -> None:
    assert OPEN_PLACEMENT_STATES | TERMINAL_PLACEMENT_STATES | {"recalled"} == set(
        PLACEMENT_TRANSITIONS
    )
    assert not OPEN_PLACEMENT_STATES & TERMINAL_PLACEMENT_STATES


def test_placement_transitions_name_only_known_states_and_events() -> None:
    for state, events in PLACEMENT_TRANSITIONS.items():
        assert set(events) <= set(EVENT_TYPES), state
        assert set(events.values()) <= set(PLACEMENT_TRANSITIONS), state


@pytest.mark.parametrize("state", sorted(TERMINAL_PLACEMENT_STATES))
def test_terminal_states_accept_no_working_event(state: str) -> None:
    for event_type in WORKING_EVENTS:
        assert next_placement_state(state, event_type) is None, (state, event_type)
    # Whatever they do accept (a late complaint) leaves them where they are.
    assert all(target == state for target in PLACEMENT_TRANSITIONS[state].values())


def test_a_deletion_is_confirmed_only_once_the_placement_has_ended() -> None:
    for state in PLACEMENT_TRANSITIONS:
        ended = state in ENDED_PLACEMENT_STATES
        assert next_placement_state(state, "data.deleted") == (state if ended else None), state
    assert ENDED_PLACEMENT_STATES == TERMINAL_PLACEMENT_STATES | {"recalled"}


def test_recalled_allows_only_return_close_and_noop_acknowledgement() -> None:
    moves = {
        event: target
        for event, target in PLACEMENT_TRANSITIONS["recalled"].items()
        if target != "recalled"
    }
    assert moves == {"case.returned": "returned", "case.closed": "closed"}
    assert next_placement_state("recalled", "placement.acknowledged") == "recalled"
    for event_type in ACTIVITY_EVENTS | {"dispute.opened", "payment.reversed"}:
        assert next_placement_state("recalled", event_type) is None, event_type


def test_a_new_placement_must_be_acknowledged_or_rejected_first() -> None:
    assert next_placement_state("placed", "placement.acknowledged") == "acknowledged"
    assert next_placement_state("placed", "placement.rejected") == "rejected"
    for event_type in ACTIVITY_EVENTS:
        assert next_placement_state("placed", event_type) is None


def test_rejection_is_only_possible_before_acknowledgement() -> None:
    for state in PLACEMENT_TRANSITIONS.keys() - {"placed"}:
        assert next_placement_state(state, "placement.rejected") is None, state


@pytest.mark.parametrize("state", sorted(OPEN_PLACEMENT_STATES - {"placed"}))
def test_open_working_states_can_end_by_return_or_close(state: str) -> None:
    assert next_placement_state(state, "case.returned") == "returned"
    assert next_placement_state(state, "case.closed") == "closed"


def test_unknown_state_or_event_is_illegal_not_an_error() -> None:
    assert next_placement_state("no-such-state", "case.closed") is None
    assert next_placement_state("active", "no.such.event") is None


@pytest.mark.parametrize(
    ("table", "start", "finals"),
    [
        (OUTBOX_TRANSITIONS, "pending", set()),  # a bounce can still kill a delivered mail
        (MISMATCH_TRANSITIONS, "open", {"resolved", "dismissed", "written_off"}),
    ],
    ids=["outbox", "mismatch"],
)
def test_status_tables_are_closed_and_reachable(
    table: dict[str, frozenset[str]], start: str, finals: set[str]
) -> None:
    for state, targets in table.items():
        assert targets <= set(table), f"{state} moves to an unknown state"
        assert state not in targets, f"{state} lists itself"
    assert reachable({k: set(v) for k, v in table.items()}, start) == set(table)
    assert {state for state, targets in table.items() if not targets} == finals


def test_outbox_rules_ops_can_resend_and_only_a_bounce_undoes_delivered() -> None:
    assert can_transition(OUTBOX_TRANSITIONS, "pending", "leased")
    assert not can_transition(OUTBOX_TRANSITIONS, "pending", "delivered")
    assert can_transition(OUTBOX_TRANSITIONS, "dead", "pending")
    assert can_transition(OUTBOX_TRANSITIONS, "unknown", "pending")
    assert not can_transition(OUTBOX_TRANSITIONS, "delivered", "pending")
    assert OUTBOX_TRANSITIONS["delivered"] == {"dead"}
    assert not can_transition(OUTBOX_TRANSITIONS, "no-such-state", "pending")


def test_mismatch_can_be_reopened_from_investigation_but_not_after_resolution() -> None:
    assert can_transition(MISMATCH_TRANSITIONS, "investigating", "open")
    assert not can_transition(MISMATCH_TRANSITIONS, "resolved", "open")
    assert not can_transition(MISMATCH_TRANSITIONS, "dismissed", "investigating")
