"""The register's pure core: an agency's standing on a day, the status transition table,
lapses, expiries and the reminders due, and the gate and share as allocation applies them."""

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, strategies as st

from gateway.allocation.routing import CaseToAllocate
from gateway.allocation.rules import allocate
from gateway.config.agencies import AgencyConfig, WebhookAgency
from gateway.register.standing import (
    STATUSES,
    TRANSITIONS,
    Qualification,
    RegisterEntry,
    due_reminders,
    expiring,
    gate,
    lapse,
    standing,
    transition,
)

DAY = date(2026, 6, 1)
LICENCE = Qualification("business_licence", "a" * 64, date(2020, 1, 1), date(2026, 6, 30))


def entry(**overrides: object) -> RegisterEntry:
    values: dict[str, object] = {
        "agency_id": "AGY",
        "legal_name": "上海测试资产管理有限公司",
        "registration_number": "91310115MA1K3ABC2D",
        "contract_start": date(2026, 1, 1),
        "contract_end": date(2026, 12, 31),
        "qualifications": (LICENCE,),
    }
    values.update(overrides)
    return RegisterEntry(**values)  # type: ignore[arg-type]


def test_an_admitted_agency_within_contract_and_qualifications_may_take_cases() -> None:
    e = entry()
    found = standing(e, e.qualifications, DAY)
    assert found.allowed and found.reasons == ()
    # The licence's last valid day is 30 June: the first day without it is the next lapse.
    assert found.next_lapse == date(2026, 7, 1)
    assert found.verdict() is None


@pytest.mark.parametrize(
    ("overrides", "day", "reason"),
    [
        ({"status": "suspended", "status_reason": "late reports"}, DAY, "suspended (late reports)"),
        ({"status": "blacklisted"}, DAY, "blacklisted"),
        ({"contract_start": date(2026, 7, 1)}, DAY, "contract starts 2026-07-01"),
        ({}, date(2027, 1, 1), "contract ended 2026-12-31"),
        ({}, date(2026, 7, 1), "business_licence expired 2026-06-30"),
        ({"share_bps": 0}, DAY, "allocation share 0"),
    ],
)
def test_each_reason_refuses_and_names_itself(
    overrides: dict[str, object], day: date, reason: str
) -> None:
    e = entry(**overrides)
    found = standing(e, e.qualifications, day)
    assert not found.allowed
    assert reason in found.reasons
    assert found.verdict() == "register: " + "; ".join(found.reasons)


def test_the_last_day_of_a_contract_and_of_a_licence_still_count() -> None:
    e = entry(contract_end=date(2026, 6, 30))
    assert standing(e, e.qualifications, date(2026, 6, 30)).allowed
    assert not standing(e, e.qualifications, date(2026, 7, 1)).allowed


def test_the_latest_document_of_a_kind_stands_and_optional_ones_never_refuse() -> None:
    renewed = Qualification("business_licence", "b" * 64, date(2026, 5, 1), date(2031, 4, 30), id=2)
    old = replace(LICENCE, id=1)
    e = entry(qualifications=(old, renewed))
    assert standing(e, e.qualifications, date(2026, 8, 1)).allowed
    optional = Qualification("iso_27001", "c" * 64, None, date(2026, 1, 1), required=False, id=3)
    e = entry(qualifications=(renewed, optional))
    assert standing(e, e.qualifications, DAY).allowed


def test_transitions_follow_the_table_and_blacklisted_is_final() -> None:
    assert transition("admitted", "suspended") == "suspend"
    assert transition("suspended", "admitted") == "reinstate"
    assert transition("terminated", "admitted") == "admit"
    for target in STATUSES:
        if target != "blacklisted":
            with pytest.raises(ValueError, match="final"):
                transition("blacklisted", target)
    with pytest.raises(ValueError, match="from terminated: admitted, blacklisted"):
        transition("terminated", "suspended")
    with pytest.raises(ValueError, match="unknown status"):
        transition("admitted", "paused")
    # Every status but blacklisted has a way out; nothing enters "admitted" from blacklisted.
    assert {frm for frm, _to in TRANSITIONS} == set(STATUSES) - {"blacklisted"}


def test_a_lapse_is_an_end_or_expiry_or_termination_and_not_a_suspension() -> None:
    assert lapse(entry(), DAY) is None
    assert lapse(entry(status="suspended"), DAY) is None
    assert lapse(entry(contract_start=date(2026, 9, 1)), DAY) is None
    forever = replace(LICENCE, expires_on=None)
    ended = lapse(entry(qualifications=(forever,)), date(2027, 1, 5))
    assert ended is not None
    assert (ended.since, ended.code) == (date(2027, 1, 1), "CONTRACT_END")
    # Several lapses: the earliest (the licence, in July) is the one acted on.
    both = lapse(entry(), date(2027, 1, 5))
    assert both is not None and both.since == date(2026, 7, 1)
    expired = lapse(entry(), date(2026, 7, 2))
    assert expired is not None
    assert (expired.since, expired.code) == (date(2026, 7, 1), "QUALIFICATION_LAPSED")
    at = datetime(2026, 5, 20, 3, tzinfo=UTC)
    gone = lapse(entry(status="blacklisted", status_since=at), DAY)
    assert gone is not None and (gone.since, gone.code) == (date(2026, 5, 20), "AGENCY_BLACKLISTED")


def test_reminders_fire_at_the_threshold_reached_once_per_threshold() -> None:
    e = entry(contract_end=date(2026, 6, 20))  # 19 days after DAY; the licence 29 days
    found = expiring([e, entry(agency_id="GONE", status="terminated")], DAY, 60)
    assert [(x.agency_id, x.subject, x.days_left) for x in found] == [
        ("AGY", "contract", 19),
        ("AGY", "qualification:business_licence", 29),
    ]
    due = due_reminders(found, (60, 30, 7))
    assert [(x.subject, days) for x, days in due] == [
        ("contract", 30),
        ("qualification:business_licence", 30),
    ]
    later = expiring([e], date(2026, 6, 15), 60)
    assert [(x.subject, d) for x, d in due_reminders(later, (60, 30, 7))] == [
        ("contract", 7),
        ("qualification:business_licence", 30),
    ]
    # Past the contract's end there is no reminder (the lapse takes over); the licence, 9
    # days from its end, has passed its 30-day threshold, not yet its 7-day one.
    after = due_reminders(expiring([e], date(2026, 6, 21), 60), (60, 30, 7))
    assert [(x.subject, x.days_left, d) for x, d in after] == [
        ("qualification:business_licence", 9, 30)
    ]


def agencies(*ids: str, weight: float = 1.0) -> list[AgencyConfig]:
    return [
        WebhookAgency.model_validate(
            {
                "id": agency_id,
                "name": agency_id,
                "channel": "webhook",
                "endpoint": {"url": "https://agency.test/hooks"},
                "signing": {"scheme": "v1", "keys": [{"env": "K"}]},
                "inbound": {"scheme": "v1", "keys": [{"env": "K"}]},
                "eligibility": {"buckets": ["M1"], "currencies": ["CNY"]},
                "capacity": {"max_open_placements": 10_000, "weight": weight},
            }
        )
        for agency_id in ids
    ]


def cases(n: int) -> list[CaseToAllocate]:
    return [
        CaseToAllocate(
            case_id=f"C{i:04d}",
            debtor_id=f"D{i:04d}",
            bucket="M1",
            balance_minor=100_000,
            currency="CNY",
            region="CN-31",
            dpd=10,
        )
        for i in range(n)
    ]


def test_allocation_never_places_with_a_barred_agency_and_says_why_per_agency() -> None:
    entries = {
        "OPEN": entry(agency_id="OPEN"),
        "SUSP": entry(agency_id="SUSP", status="suspended", status_reason="audit"),
        "LATER": entry(agency_id="LATER", contract_start=date(2026, 9, 1)),
    }
    ids = ["LATER", "NONE", "OPEN", "SUSP"]
    barred, shares = gate(entries, ids, DAY, enforce=True)
    assert barred == {
        "SUSP": "register: suspended (audit)",
        "LATER": "register: contract starts 2026-09-01",
        "NONE": "register: not in the agency register",
    }
    result = allocate(
        cases(40),
        agencies(*ids),
        open_counts={},
        debtor_agency={},
        seed=1,
        barred=barred,
        shares=shares,
    )
    assert {a.agency_id for a in result.assignments} == {"OPEN"} and len(result.assignments) == 40
    verdicts = {c.agency_id: c.verdict for c in result.decisions[0].candidates}
    assert verdicts == {"OPEN": "eligible", **barred}
    # Without enforcement an agency with no entry takes cases; entries still gate.
    barred, _ = gate(entries, ids, DAY, enforce=False)
    assert set(barred) == {"SUSP", "LATER"}
    # Nobody admitted: every case waits, and its reason names each agency and why.
    result = allocate(
        cases(3),
        agencies("SUSP", "LATER"),
        open_counts={},
        debtor_agency={},
        seed=1,
        barred=gate(entries, ["SUSP", "LATER"], DAY, enforce=True)[0],
    )
    assert not result.assignments
    assert {u.reason for u in result.unallocated} == {
        "no agency can take it (LATER: register: contract starts 2026-09-01; "
        "SUSP: register: suspended (audit))"
    }


def test_the_share_multiplies_the_contract_weight() -> None:
    entries = {"FULL": entry(agency_id="FULL"), "HALF": entry(agency_id="HALF", share_bps=2_500)}
    barred, shares = gate(entries, ["FULL", "HALF"], DAY, enforce=True)
    assert barred == {} and shares == {"FULL": 1.0, "HALF": 0.25}
    result = allocate(
        cases(4000),
        agencies("FULL", "HALF"),
        open_counts={},
        debtor_agency={},
        seed=7,
        shares=shares,
    )
    half = sum(1 for a in result.assignments if a.agency_id == "HALF")
    # Expected share 0.25 / 1.25 = 20%: 800 of 4000 (binomial sd ~25).
    assert 650 < half < 950
    weights = {c.agency_id: c.weight for c in result.decisions[0].candidates}
    assert weights == {"FULL": 1.0, "HALF": 0.25}


@given(
    start=st.dates(date(2020, 1, 1), date(2030, 12, 31)),
    length=st.one_of(st.none(), st.integers(0, 3000)),
    expiries=st.lists(
        st.tuples(
            st.sampled_from(["licence", "certificate"]),
            st.dates(date(2020, 1, 1), date(2035, 12, 31)),
        ),
        max_size=4,
    ),
    day=st.dates(date(2019, 1, 1), date(2036, 12, 31)),
)
def test_an_allowed_agency_stays_allowed_until_its_next_lapse_and_not_on_it(
    start: date, length: int | None, expiries: list[tuple[str, date]], day: date
) -> None:
    docs = tuple(
        Qualification(kind, "d" * 64, None, ends, id=n) for n, (kind, ends) in enumerate(expiries)
    )
    e = entry(
        contract_start=start,
        contract_end=None if length is None else start + timedelta(days=length),
        qualifications=docs,
    )
    found = standing(e, docs, day)
    assert found.allowed == (found.reasons == ())
    if not found.allowed or found.next_lapse is None:
        return
    assert found.next_lapse > day
    assert standing(e, docs, found.next_lapse - timedelta(days=1)).allowed
    after = standing(e, docs, found.next_lapse)
    assert not after.allowed
    assert lapse(e, found.next_lapse) is not None
