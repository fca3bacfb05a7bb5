"""The pure conduct rules (gateway.reconciliation.conduct_rules) and the QA sample's draw and
states (gateway.conduct.sampling)."""

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings, strategies as st

from gateway.conduct.sampling import Candidate, draw, month_bounds, next_state
from gateway.errors import GatewayError, QaRefused
from gateway.reconciliation.conduct_rules import (
    ContactSeen,
    HoldSpan,
    contact_rule_breaks,
    judge_contact,
)
from gateway.reconciliation.contact_rules import ContactRules

SHANGHAI = ZoneInfo("Asia/Shanghai")
AT = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
RULES = ContactRules(SHANGHAI, time(22, 0), time(8, 0), max_effective_calls_per_day=2)


def contact(event_id: int = 1, **overrides: object) -> ContactSeen:
    fields: dict[str, object] = {
        "event_id": event_id,
        "agency_id": "AGY_A",
        "placement_id": "PL-1",
        "case_id": "CASE-1",
        "attempted_at": AT,
        "channel": "call",
        "effective": True,
    }
    fields.update(overrides)
    return ContactSeen(**fields)  # type: ignore[arg-type]


def kinds(c: ContactSeen, holds: tuple[HoldSpan, ...] = ()) -> list[str]:
    return [b.draft.kind for b in judge_contact(c, holds)]


def test_a_third_party_may_be_contacted_only_to_locate_the_debtor() -> None:
    assert kinds(contact(party="debtor")) == []
    assert kinds(contact(party="guarantor")) == []
    assert kinds(contact(party="third_party", purpose="locate")) == []
    [about] = judge_contact(contact(party="third_party", purpose="debt", collector_id="C-9"))
    assert about.draft.kind == "third_party_contact" and about.draft.severity == "high"
    assert about.dedupe_key == "third_party_contact:event:1"
    assert "collector C-9" in about.draft.detail and "about the debt" in about.draft.detail
    [unsaid] = judge_contact(contact(party="third_party"))
    assert "without saying" in unsaid.draft.detail
    # The purpose of a debtor's own contact means nothing.
    assert kinds(contact(party="debtor", purpose="debt")) == []


def test_a_contact_during_a_standing_hold_is_a_violation() -> None:
    pause = HoldSpan("CASE-1", "PAUSE", AT - timedelta(days=1), AT + timedelta(days=1))
    released = HoldSpan("CASE-1", "DECEASED", AT - timedelta(days=3), AT - timedelta(seconds=1))
    later = HoldSpan("CASE-1", "DISPUTE", AT + timedelta(seconds=1))
    assert kinds(contact(), (released, later)) == []
    [b] = judge_contact(contact(), (pause, released, later))
    assert b.draft.kind == "contact_during_hold" and b.draft.ours["holds"] == ["PAUSE"]
    # A hold placed at the very moment stands; one released at it does not.
    assert kinds(contact(), (HoldSpan("CASE-1", "X", AT),)) == ["contact_during_hold"]
    assert kinds(contact(), (HoldSpan("CASE-1", "X", AT - timedelta(hours=1), AT),)) == []


def test_a_contact_while_disputed_counts_only_from_the_dispute_on() -> None:
    assert kinds(contact(disputed=True)) == ["contact_during_dispute"]
    since = AT + timedelta(minutes=5)
    assert kinds(contact(disputed=True, disputed_since=since)) == []
    assert kinds(contact(disputed=True, disputed_since=AT)) == ["contact_during_dispute"]
    # Everything at once: three kinds, one key each.
    every = judge_contact(
        contact(party="third_party", disputed=True),
        (HoldSpan("CASE-1", "PAUSE", AT - timedelta(hours=1)),),
    )
    assert [b.dedupe_key for b in every] == [
        "third_party_contact:event:1",
        "contact_during_hold:event:1",
        "contact_during_dispute:event:1",
    ]


def _at_local(hh: int, mm: int, day: int = 2) -> datetime:
    return datetime(2026, 3, day, hh, mm, tzinfo=SHANGHAI).astimezone(UTC)


def test_quiet_hours_across_midnight_in_the_lenders_zone() -> None:
    debtors = {"PL-1": "D-1"}
    inside = [
        (1, _at_local(22, 0)),
        (2, _at_local(23, 59)),
        (3, _at_local(0, 0, 3)),
        (4, _at_local(7, 59, 3)),
    ]
    outside = [(5, _at_local(21, 59)), (6, _at_local(8, 0, 3)), (7, _at_local(12, 0))]
    new = [contact(n, attempted_at=at, effective=False).facts() for n, at in inside + outside]
    found = contact_rule_breaks(new, [], debtors, RULES)
    assert [(b.event_id, b.rule) for b in found] == [(n, "quiet_hours") for n, _ in inside]
    assert found[0].dedupe_key == "contact_rule_violation:event:1:quiet_hours"
    # Letters and email are not intrusive, at any hour.
    letter = contact(9, attempted_at=_at_local(23, 0), channel="letter").facts()
    assert contact_rule_breaks([letter], [], debtors, RULES) == []


def test_the_cap_counts_the_stored_attempts_and_judges_only_the_new_ones() -> None:
    debtors = {"PL-1": "D-1", "PL-2": "D-1", "PL-3": "D-2"}
    stored = [
        contact(1, attempted_at=AT).facts(),
        contact(2, placement_id="PL-2", attempted_at=AT + timedelta(hours=1)).facts(),
        contact(3, placement_id="PL-3", attempted_at=AT).facts(),
    ]
    third = contact(4, attempted_at=AT + timedelta(hours=2)).facts()
    other_debtor = contact(5, placement_id="PL-3", attempted_at=AT + timedelta(hours=2)).facts()
    next_day = contact(6, attempted_at=AT + timedelta(days=1)).facts()
    found = contact_rule_breaks([third, other_debtor, next_day], stored, debtors, RULES)
    assert [(b.event_id, b.rule) for b in found] == [(4, "daily_effective_calls")]
    # The stored ones are never judged again, even when they break a rule.
    late = contact(7, attempted_at=_at_local(23, 0)).facts()
    found = contact_rule_breaks([third], [*stored, late], debtors, RULES)
    assert [(b.event_id, b.rule) for b in found] == [(4, "daily_effective_calls")]
    assert contact_rule_breaks([], [late], debtors, RULES) == []


def candidate(n: int, collector: str | None, effective: bool = True) -> Candidate:
    return Candidate(n, f"PL-{n}", collector, f"rec/{n}", AT + timedelta(minutes=n), effective)


def test_the_draw_is_reproducible_and_stratified_by_collector() -> None:
    pool = [candidate(n, f"C-{n % 4}" if n % 5 else None, n % 3 == 0) for n in range(1, 41)]
    first = draw(pool, 10, agency_id="AGY_A", month="2026-03")
    assert first == draw(list(reversed(pool)), 10, agency_id="AGY_A", month="2026-03")
    assert first != draw(pool, 10, agency_id="AGY_A", month="2026-04")
    assert first != draw(pool, 10, agency_id="AGY_B", month="2026-03")
    strata = {c.collector_id for c in pool}
    assert len(strata) == 5  # four collectors and the unnamed
    assert {c.collector_id for c in first[:5]} == strata
    # Effective calls first within each collector.
    for who in strata:
        mine = [c.effective for c in first if c.collector_id == who]
        assert mine == sorted(mine, reverse=True)
    assert draw(pool[:3], 10, agency_id="AGY_A", month="2026-03").__len__() == 3
    assert draw([], 10, agency_id="AGY_A", month="2026-03") == []


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["C-1", "C-2", None]), st.booleans()), max_size=30),
    st.integers(min_value=1, max_value=40),
)
def test_the_draw_takes_distinct_candidates_up_to_the_size(
    specs: list[tuple[str | None, bool]], size: int
) -> None:
    pool = [candidate(n, who, eff) for n, (who, eff) in enumerate(specs)]
    drawn = draw(pool, size, agency_id="AGY_A", month="2026-03")
    assert len(drawn) == min(size, len(pool))
    assert len({c.event_id for c in drawn}) == len(drawn)


def test_qa_states_and_months() -> None:
    assert next_state("drawn", "request", item=1) == "requested"
    assert next_state("requested", "unavailable", item=1) == "unavailable"
    assert next_state("drawn", "pass", item=1) == "passed"
    with pytest.raises(QaRefused, match="QA item 7 is passed"):
        next_state("passed", "fail", item=7)
    with pytest.raises(QaRefused, match="cannot take 'request'"):
        next_state("requested", "request", item=7)
    start, end = month_bounds("2026-12", SHANGHAI)
    assert (start.isoformat(), end.isoformat()) == (
        "2026-12-01T00:00:00+08:00",
        "2027-01-01T00:00:00+08:00",
    )
    with pytest.raises(GatewayError, match="YYYY-MM"):
        month_bounds("2026-13", SHANGHAI)
