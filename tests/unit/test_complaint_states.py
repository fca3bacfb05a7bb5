"""The complaint core (gateway.complaints.states, lender_channel): the state table, deadlines
in the lender's time zone, who held the case at a moment, and the lender's rows."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, strategies as st

from gateway.complaints.lender_channel import LenderComplaint, RowProblem, read_csv
from gateway.complaints.states import (
    MOVES,
    STATES,
    STILL_ACTIONS,
    TRANSITIONS,
    Held,
    answer_days,
    deadline,
    holder_at,
    is_overdue,
    next_state,
    on_time,
)
from gateway.errors import ComplaintRefused

SHANGHAI = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_the_whole_machine_and_what_it_refuses() -> None:
    walk = ["investigate", "resolve", "close", "reopen", "resolve", "reopen"]
    state = "open"
    seen = []
    for action in walk:
        state = next_state(state, action, ref="C1")
        seen.append(state)
    assert seen == [
        "investigating",
        "resolved",
        "closed",
        "investigating",
        "resolved",
        "investigating",
    ]
    with pytest.raises(
        ComplaintRefused, match=r"open: it cannot close \(it can: investigate, resolve\)"
    ):
        next_state("open", "close", ref="C1")
    with pytest.raises(ComplaintRefused, match="reopen it first to assign"):
        next_state("closed", "assign", ref="C1")
    assert next_state("resolved", "hold", ref="C1") == "resolved"


@given(st.sampled_from(STATES), st.sampled_from(sorted(MOVES | STILL_ACTIONS)))
def test_every_state_and_action_either_moves_by_the_table_or_is_refused(
    state: str, action: str
) -> None:
    try:
        after = next_state(state, action, ref="C1")
    except ComplaintRefused:
        assert (state, action) not in TRANSITIONS
        assert action in MOVES or state == "closed"
        return
    assert after == TRANSITIONS.get((state, action), state)
    assert after in STATES


def test_the_deadline_is_the_end_of_the_lenders_day() -> None:
    # 23:30 UTC on 2 March is 07:30 on 3 March in Shanghai: day 3 + 15 = 18 March.
    late = datetime(2026, 3, 2, 23, 30, tzinfo=UTC)
    due = deadline(late, 15, SHANGHAI)
    assert due.astimezone(SHANGHAI).isoformat() == "2026-03-18T23:59:59+08:00"
    assert (
        answer_days(
            "regulator", "fees", default=15, by_channel={"regulator": 10}, by_category={"fees": 7}
        )
        == 7
    )
    assert (
        answer_days("app", "other", default=15, by_channel={"regulator": 10}, by_category={}) == 15
    )
    assert is_overdue("investigating", due, due + timedelta(seconds=1))
    assert not is_overdue("resolved", due, due + timedelta(days=9))
    assert not is_overdue("open", due, due)
    assert on_time(due, due) is True and on_time(due, None) is None


def test_the_case_is_held_by_the_placement_that_had_it_at_the_moment() -> None:
    old = Held("PL-1", "A", T0, T0 + timedelta(days=10))
    new = Held("PL-2", "B", T0 + timedelta(days=12))
    assert holder_at([old, new], T0 + timedelta(days=5)) == old
    assert holder_at([old, new], T0 + timedelta(days=13)) == new
    # Between the two: the agency that worked it last.
    assert holder_at([old, new], T0 + timedelta(days=11)) == old
    assert holder_at([old, new], T0 - timedelta(days=1)) is None


def test_the_lenders_rows_are_read_with_line_and_field() -> None:
    text = (
        "complaint_id,case_id,received_at,channel,category\n"
        "LC-1,ACC-1,2026-03-03T10:00:00+08:00,hotline,Fees\n"
        "LC-2,,2026-03-03T10:00:00+08:00,hotline,\n"
        "LC-3,ACC-1,2026-03-03,hotline,\n"
    )
    found = list(read_csv(text))
    assert found[0] == (
        2,
        LenderComplaint(
            complaint_id="LC-1",
            case_id="ACC-1",
            received_at=datetime(2026, 3, 3, 2, 0, tzinfo=UTC),
            channel="hotline",
            category="fees",
        ),
    )
    problems = [str(p) for p in found[1:] if isinstance(p, RowProblem)]
    assert problems[0] == "line 3: (row): Value error, give case_id or placement_id"
    assert problems[1].startswith("line 4: received_at:")
    [header] = list(read_csv("complaint_id,case,received_at\n"))
    assert isinstance(header, RowProblem)
    assert "unknown columns case" in header.reason and "missing columns channel" in header.reason
