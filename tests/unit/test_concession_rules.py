"""Waiver, instalment and pause requests without a database: the request's transition table,
the terms asked for, role limits, the four-eyes threshold, schedules, what approved terms
allow, and the ``request.decided`` packet."""

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, strategies as st

from adapters.email.adapter import template_environment
from adapters.email.render import mail_case, render_content
from gateway.concessions.packets import render_decided
from gateway.concessions.rules import (
    REQUEST_TRANSITIONS,
    Instalment,
    Terms,
    add_months,
    build_schedule,
    check_second_person,
    decision_event,
    limit_problems,
    months_between,
    next_state,
    promise_within_terms,
    schedule_problems,
    settlement_within_terms,
    terms_of,
)
from gateway.config.email import DEFAULT_TEMPLATE_NAMES
from gateway.config.settings import ConcessionLimit, ConcessionsSection, FourEyesSection
from gateway.errors import ConcessionRefused
from schemas.events import AGENCY_EVENT_ADAPTER, example_event
from schemas.packets import RequestDecided

TODAY = date(2026, 1, 16)
LIMITS = ConcessionsSection().limits
OPERATOR, ADMIN = LIMITS["operator"], LIMITS["admin"]


def event(event_type: str, **data: Any) -> Any:
    raw = example_event(event_type)
    raw["data"] = {**raw["data"], **data}
    raw["data"] = {k: v for k, v in raw["data"].items() if v is not None}
    return AGENCY_EVENT_ADAPTER.validate_python(raw)


def cny(minor: int) -> dict[str, object]:
    return {"amount_minor": minor, "currency": "CNY"}


def waiver(waive: int, balance: int = 1_000_000) -> Terms:
    return Terms("waiver", "CNY", balance, waive_minor=waive, settle_minor=balance - waive)


# -- the transition table ---------------------------------------------------------------------


def test_a_pending_request_is_approved_proposed_or_rejected_and_a_decided_one_never_moves() -> None:
    assert next_state("pending", "approve", request="A/1") == "approved"
    assert next_state("pending", "propose", request="A/1") == "awaiting_check"
    assert next_state("awaiting_check", "approve", request="A/1") == "approved"
    assert next_state("awaiting_check", "reject", request="A/1") == "rejected"
    for state in ("approved", "rejected"):
        for move in ("approve", "propose", "reject"):
            with pytest.raises(ConcessionRefused, match=f"request A/1 is {state}"):
                next_state(state, move, request="A/1")
    with pytest.raises(ConcessionRefused):
        next_state("awaiting_check", "propose", request="A/1")
    assert set(REQUEST_TRANSITIONS.values()) == {"approved", "awaiting_check", "rejected"}


# -- terms asked for ----------------------------------------------------------------------------


def test_a_settlement_amount_is_a_waiver_of_the_rest_of_the_balance() -> None:
    terms = terms_of(
        event("waiver.requested", settlement_amount=cny(120_000)),
        balance_minor=196_857,
        currency="CNY",
        today=TODAY,
    )
    assert (terms.waive_minor, terms.settle_minor, terms.problems) == (76_857, 120_000, ())
    given_waiver = terms_of(
        event("waiver.requested", settlement_amount=None, waive_amount=cny(50_000)),
        balance_minor=196_857,
        currency="CNY",
        today=TODAY,
    )
    assert (given_waiver.waive_minor, given_waiver.settle_minor) == (50_000, 146_857)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"waive_amount": cny(1)}, "exactly one of waive_amount and settlement_amount"),
        ({"settlement_amount": None}, "exactly one of waive_amount and settlement_amount"),
        ({"settlement_amount": cny(300_000)}, "nothing to waive"),
        ({"settlement_amount": {"amount_minor": 1000, "currency": "USD"}}, "is in USD"),
    ],
)
def test_a_waiver_that_cannot_be_approved_as_asked_says_why(
    data: dict[str, Any], problem: str
) -> None:
    terms = terms_of(
        event("waiver.requested", **data), balance_minor=196_857, currency="CNY", today=TODAY
    )
    assert any(problem in p for p in terms.problems), terms.problems


def test_a_plan_by_first_date_and_frequency_is_equal_instalments_with_the_rest_on_the_last() -> (
    None
):
    terms = terms_of(
        event("instalment.requested", instalments=3, total=cny(100_000)),
        balance_minor=196_857,
        currency="CNY",
        today=TODAY,
    )
    assert terms.schedule == (
        Instalment(date(2026, 2, 10), 33_333),
        Instalment(date(2026, 3, 10), 33_333),
        Instalment(date(2026, 4, 10), 33_334),
    )
    assert (terms.total_minor, terms.problems, terms.size) == (100_000, (), 100_000)


def test_a_monthly_plan_from_the_31st_falls_on_each_months_last_day() -> None:
    days = [i.due_date for i in build_schedule(date(2026, 1, 31), "monthly", 3, 300)]
    assert days == [date(2026, 1, 31), date(2026, 2, 28), date(2026, 3, 31)]
    assert [i.due_date for i in build_schedule(date(2026, 1, 1), "fortnightly", 2, 2)] == [
        date(2026, 1, 1),
        date(2026, 1, 15),
    ]


@given(
    st.dates(date(2026, 1, 1), date(2030, 12, 31)),
    st.sampled_from(["weekly", "fortnightly", "monthly"]),
    st.integers(1, 60),
    st.integers(60, 10**9),
)
def test_a_built_schedule_adds_up_to_its_total_on_increasing_dates(
    first: date, frequency: str, count: int, total: int
) -> None:
    schedule = build_schedule(first, frequency, count, total)
    assert schedule_problems(schedule, count=count, total_minor=total, today=first) == []
    assert all(i.amount_minor > 0 for i in schedule)


def test_a_given_schedule_must_add_up_have_increasing_dates_and_start_today_or_later() -> None:
    good = (Instalment(date(2026, 2, 1), 500), Instalment(date(2026, 3, 1), 500))
    assert schedule_problems(good, count=2, total_minor=1000, today=TODAY) == []
    assert schedule_problems(good, count=2, total_minor=1001, today=TODAY) == [
        "the instalments add up to 1000, not the total 1001"
    ]
    assert schedule_problems(good, count=3, total_minor=1000, today=TODAY) == [
        "the schedule has 2 instalments, not 3"
    ]
    backwards = tuple(reversed(good))
    assert schedule_problems(backwards, count=2, total_minor=1000, today=TODAY) == [
        "due dates must increase: 2026-02-01 follows 2026-03-01"
    ]
    same_day = (good[0], Instalment(date(2026, 2, 1), 500))
    assert (
        "due dates must increase"
        in schedule_problems(same_day, count=2, total_minor=1000, today=TODAY)[0]
    )
    assert schedule_problems(good, count=2, total_minor=1000, today=date(2026, 2, 2)) == [
        "the first instalment is due 2026-02-01, in the past"
    ]


def test_a_plan_with_a_schedule_and_a_first_date_cannot_be_approved() -> None:
    both = event(
        "instalment.requested",
        instalments=2,
        schedule=[
            {"due_date": "2026-02-01", "amount": cny(500)},
            {"due_date": "2026-03-01", "amount": cny(500)},
        ],
        total=cny(1000),
    )
    terms = terms_of(both, balance_minor=196_857, currency="CNY", today=TODAY)
    assert terms.problems == ("give either schedule, or first_due_date and frequency (not both)",)
    alone = event(
        "instalment.requested",
        instalments=2,
        first_due_date=None,
        frequency=None,
        schedule=[
            {"due_date": "2026-02-01", "amount": cny(500)},
            {"due_date": "2026-03-01", "amount": cny(400)},
        ],
        total=cny(1000),
    )
    assert terms_of(alone, balance_minor=1, currency="CNY", today=TODAY).problems == (
        "the instalments add up to 900, not the total 1000",
    )


def test_a_pause_ending_before_it_starts_cannot_be_approved() -> None:
    terms = terms_of(
        event("pause.requested", pause_from="2026-02-10", pause_until="2026-02-01"),
        balance_minor=1,
        currency="CNY",
        today=TODAY,
    )
    assert terms.problems == ("pause_until 2026-02-01 is before pause_from 2026-02-10",)
    ok = terms_of(event("pause.requested"), balance_minor=1, currency="CNY", today=TODAY)
    assert (ok.pause_days, ok.problems, ok.size) == (28, (), 0)


# -- limits by role ---------------------------------------------------------------------------


def test_a_waiver_is_limited_by_amount_and_by_share_of_the_balance() -> None:
    assert limit_problems(waiver(200_000), OPERATOR, role="operator", today=TODAY) == []
    [amount] = limit_problems(waiver(200_001, 10**7), OPERATOR, role="operator", today=TODAY)
    assert "above operator's max_waiver_minor 200000" in amount
    [share] = limit_problems(waiver(30_000, 100_000), OPERATOR, role="operator", today=TODAY)
    assert "30.00% of the balance is above operator's max_waiver_bps 2000 (20.00%)" in share
    assert limit_problems(waiver(30_000, 100_000), ADMIN, role="admin", today=TODAY) == []
    assert limit_problems(waiver(1), None, role="viewer", today=TODAY) == [
        "role viewer may not approve concessions ([concessions.limits] has no viewer)"
    ]


def test_a_plan_is_limited_by_instalments_and_months_and_a_pause_by_days() -> None:
    limit = ConcessionLimit(max_instalments=3, max_instalment_months=2, max_pause_days=10)
    plan = Terms(
        "instalment",
        "CNY",
        1000,
        schedule=build_schedule(date(2026, 2, 1), "monthly", 4, 1000),
        total_minor=1000,
    )
    problems = limit_problems(plan, limit, role="operator", today=TODAY)
    assert problems == [
        "4 instalments is above operator's max_instalments 3",
        "the last instalment is 4 months out, above operator's max_instalment_months 2",
    ]
    pause = Terms("pause", "CNY", 1, pause_from=date(2026, 2, 1), pause_until=date(2026, 2, 11))
    assert limit_problems(pause, limit, role="operator", today=TODAY) == [
        "a pause of 11 days is above operator's max_pause_days 10"
    ]
    assert months_between(date(2026, 1, 16), date(2026, 2, 16)) == 1
    assert months_between(date(2026, 1, 16), date(2026, 2, 17)) == 2
    assert add_months(date(2024, 1, 31), 1) == date(2024, 2, 29)


# -- four eyes --------------------------------------------------------------------------------


def test_above_the_threshold_the_first_approval_asks_for_a_second_person() -> None:
    four_eyes = FourEyesSection()
    above = four_eyes.concession_approval.above
    assert decision_event(waiver(above), "pending", four_eyes) == "approve"
    assert decision_event(waiver(above + 1), "pending", four_eyes) == "propose"
    assert decision_event(waiver(above + 1), "awaiting_check", four_eyes) == "approve"
    off = FourEyesSection.model_validate({"concession_approval": {"enabled": False}})
    assert decision_event(waiver(above + 1), "pending", off) == "approve"
    pause = Terms("pause", "CNY", 1, pause_from=TODAY, pause_until=TODAY)
    always = FourEyesSection.model_validate({"concession_approval": {"above": 0}})
    assert decision_event(pause, "pending", always) == "approve"


def test_the_second_person_is_never_the_first_and_of_a_checker_role() -> None:
    four_eyes = FourEyesSection()
    check_second_person(four_eyes, first="li", second="wang", role="operator", request="A/1")
    with pytest.raises(ConcessionRefused, match="li approved it first and cannot also check"):
        check_second_person(four_eyes, first="li", second="li", role="admin", request="A/1")
    with pytest.raises(ConcessionRefused, match="wang is viewer"):
        check_second_person(four_eyes, first="li", second="wang", role="viewer", request="A/1")


# -- what approved terms allow ------------------------------------------------------------------


def test_a_promise_below_the_balance_needs_approved_terms_it_matches() -> None:
    plan = Terms(
        "instalment",
        "CNY",
        1000,
        schedule=(Instalment(date(2026, 2, 1), 400), Instalment(date(2026, 3, 1), 600)),
        total_minor=1000,
    )
    args: dict[str, Any] = {"outstanding_minor": 1000, "collected_minor": 0}
    assert promise_within_terms(1000, date(2026, 9, 1), approved=[], **args)
    # No terms approved: a promise of part of the balance is an ordinary promise to pay.
    assert promise_within_terms(400, date(2026, 2, 1), approved=[], **args)
    assert promise_within_terms(400, date(2026, 2, 1), approved=[(plan, None)], **args)
    assert not promise_within_terms(399, date(2026, 2, 1), approved=[(plan, None)], **args)
    assert not promise_within_terms(600, date(2026, 3, 2), approved=[(plan, None)], **args)
    settle = waiver(300, 1000)
    valid = date(2026, 2, 15)
    assert promise_within_terms(700, date(2026, 2, 15), approved=[(settle, valid)], **args)
    assert not promise_within_terms(700, date(2026, 2, 16), approved=[(settle, valid)], **args)
    assert not promise_within_terms(699, date(2026, 2, 1), approved=[(settle, valid)], **args)


def test_a_settled_close_below_the_balance_needs_an_approved_waiver_that_was_paid() -> None:
    assert settlement_within_terms(balance_minor=1000, collected_minor=1000, approved=[])
    assert not settlement_within_terms(balance_minor=1000, collected_minor=700, approved=[])
    assert settlement_within_terms(
        balance_minor=1000, collected_minor=700, approved=[waiver(300, 1000)]
    )
    assert not settlement_within_terms(
        balance_minor=1000, collected_minor=699, approved=[waiver(300, 1000)]
    )


# -- the packet -------------------------------------------------------------------------------


def test_the_decision_packet_carries_exactly_the_approved_terms_or_the_reason() -> None:
    at = datetime(2026, 1, 20, 3, 0, tzinfo=UTC)
    plan = Terms(
        "instalment",
        "CNY",
        1000,
        schedule=(Instalment(date(2026, 2, 1), 400), Instalment(date(2026, 3, 1), 600)),
        total_minor=1000,
    )
    common: dict[str, Any] = {
        "agency_id": "acme",
        "placement_id": "PL-C1-1",
        "case_id": "C1",
        "version": 1,
        "request_id": "RQ-1",
        "decided_at": at,
    }
    approved = render_decided(
        kind="instalment",
        decision="approved",
        terms=plan,
        reason=None,
        valid_until=date(2026, 3, 1),
        **common,
    )
    packet = RequestDecided.model_validate_json(approved.payload)
    assert packet.data.terms is not None and packet.data.terms.schedule is not None
    assert [(i.due_date, i.amount.amount_minor) for i in packet.data.terms.schedule] == [
        (date(2026, 2, 1), 400),
        (date(2026, 3, 1), 600),
    ]
    assert json.loads(approved.payload)["data"]["terms"].keys() == {"schedule", "total"}
    rejected = render_decided(
        kind="waiver",
        decision="rejected",
        terms=None,
        reason="above policy",
        valid_until=None,
        **common,
    )
    data = json.loads(rejected.payload)["data"]
    assert (data["decision"], data["reason"], "terms" in data) == (
        "rejected",
        "above policy",
        False,
    )
    assert rejected.dedupe_key == approved.dedupe_key  # one decision per request, ever


TEMPLATES = Path(__file__).resolve().parents[2] / "config" / "templates" / "email"


def test_a_law_firm_reads_the_decision_in_its_letter_in_both_languages() -> None:
    at = datetime(2026, 1, 20, 3, 0, tzinfo=UTC)
    plan = Terms(
        "instalment",
        "CNY",
        1000,
        schedule=(Instalment(date(2026, 2, 1), 400), Instalment(date(2026, 3, 1), 600)),
        total_minor=1000,
    )
    common: dict[str, Any] = {
        "agency_id": "firm",
        "placement_id": "PL-C1-1",
        "case_id": "C1",
        "version": 1,
        "decided_at": at,
    }
    approved = render_decided(
        request_id="ZY-I1",
        kind="instalment",
        decision="approved",
        terms=plan,
        reason=None,
        valid_until=date(2026, 3, 1),
        **common,
    )
    rejected = render_decided(
        request_id="ZY-W1",
        kind="waiver",
        decision="rejected",
        terms=None,
        reason="债务人有财产",
        valid_until=None,
        **common,
    )

    def letter(payload: bytes, language: str) -> Any:
        return render_content(
            template_environment(TEMPLATES),
            template=DEFAULT_TEMPLATE_NAMES["request.decided"],
            language=language,
            cases=[mail_case(payload, frozenset())],
            firm_name="正义律师事务所",
            sender_name="贷方法务部",
            case_file_kind="csv",
        )

    zh = letter(approved.payload, "zh")
    assert zh.subject == "[案件 PL-C1-1] 申请已批准：ZY-I1（C1）"
    assert "有效期至 2026-03-01" in zh.text
    assert "分期计划：2026-02-01 4.00; 2026-03-01 6.00" in zh.text
    assert "分期总额：10.00" in zh.text
    no = letter(rejected.payload, "zh")
    assert no.subject == "[案件 PL-C1-1] 申请未批准：ZY-W1（C1）"
    assert "未获批准：债务人有财产" in no.text
    en = letter(rejected.payload, "en")
    assert en.subject == "[Case PL-C1-1] Request rejected: ZY-W1 (C1)"
    assert "We reject your waiver request ZY-W1: 债务人有财产." in en.text
