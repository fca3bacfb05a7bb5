"""Allocation through tiers, explained: screening, the tier a case is due for, never the same
agency twice, cool-off, escalation, mixed debtors, true reasons and the decision record."""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from hypothesis import given, settings, strategies as st

from gateway.allocation.routing import REASONS, PastPlacement, Policy
from gateway.allocation.rules import (
    AllocationResult,
    CaseToAllocate,
    Decision,
    allocate,
)
from gateway.config.agencies import AgencyConfig
from tests.factories import agency_config, case_to_allocate

NOW = datetime(2026, 3, 20, 9, 0, tzinfo=UTC)
SEED = 20260101

EARLY = agency_config(id="AGY_EARLY", tier="primary", eligibility={"buckets": ["M1", "M2", "M3"]})
EARLY2 = agency_config(id="AGY_EARLY2", tier="primary", eligibility={"buckets": ["M1", "M2"]})
LATE = agency_config(
    id="AGY_LATE", tier="secondary", eligibility={"buckets": ["M2", "M3", "M4-6", "M6+"]}
)
FIRM = agency_config(id="LAW_FIRM", tier="legal", eligibility={"buckets": ["LEGAL"]})
ALL = [EARLY, EARLY2, LATE, FIRM]


def run(
    cases: Sequence[CaseToAllocate],
    agencies: Sequence[AgencyConfig] = ALL,
    *,
    open_counts: dict[str, int] | None = None,
    debtor_agency: dict[str, str] | None = None,
    mixed: Literal["worst", "split"] = "worst",
    cool_off_days: int = 7,
    seed: int = SEED,
    factors: dict[tuple[str, str], float] | None = None,
) -> AllocationResult:
    return allocate(
        cases,
        agencies,
        open_counts=open_counts or {},
        debtor_agency=debtor_agency or {},
        seed=seed,
        factors=factors,
        policy=Policy(cool_off_days=cool_off_days, mixed_debtors=mixed),
        now=NOW,
    )


def placed(result: AllocationResult) -> dict[str, str]:
    return {a.case_id: a.agency_id for a in result.assignments}


def reasons(result: AllocationResult) -> dict[str, tuple[str, str]]:
    return {u.case_id: (u.code, u.reason) for u in result.unallocated}


def returned(case_id: str, *history: tuple[str, str | None, str], **overrides: Any) -> Any:
    """A case that came back: ``history`` is (agency, tier, state) per earlier placement."""
    values: dict[str, Any] = {
        "case_id": case_id,
        "debtor_id": f"CU-{case_id}",
        "status": "returned",
        "placements": tuple(PastPlacement(a, t, s) for a, t, s in history),
        "last_event": "return",
        "came_back_at": NOW - timedelta(days=30),
    }
    values.update(overrides)
    return case_to_allocate(**values)


def decision_of(result: AllocationResult, case_id: str) -> Decision:
    [found] = [d for d in result.decisions if case_id in d.case_ids]
    return found


def verdicts(decision: Decision) -> dict[str, str]:
    return {c.agency_id: c.verdict for c in decision.candidates}


# -- tiers ----------------------------------------------------------------------------------


def test_a_new_case_goes_to_the_first_tier_whose_contract_takes_it() -> None:
    result = run(
        [
            case_to_allocate(case_id="AC_M2", debtor_id="CU1", bucket="M2"),
            case_to_allocate(case_id="AC_M6", debtor_id="CU2", bucket="M6+"),
            case_to_allocate(case_id="AC_LG", debtor_id="CU3", bucket="LEGAL"),
        ]
    )
    where = placed(result)
    assert where["AC_M2"] in {"AGY_EARLY", "AGY_EARLY2"}  # primary, though LATE takes M2 too
    assert where["AC_M6"] == "AGY_LATE"  # no primary agency takes M6+
    assert where["AC_LG"] == "LAW_FIRM"
    assert {a.case_id: a.tier for a in result.assignments} == {
        "AC_M2": "primary",
        "AC_M6": "secondary",
        "AC_LG": "legal",
    }


def test_a_full_first_tier_makes_the_case_wait_rather_than_fall_through() -> None:
    result = run(
        [case_to_allocate(case_id="AC1", bucket="M2")],
        open_counts={"AGY_EARLY": 1000, "AGY_EARLY2": 1000},
    )
    assert placed(result) == {}
    assert reasons(result) == {
        "AC1": ("tier_full", "tier primary is full: waiting for room at AGY_EARLY, AGY_EARLY2")
    }
    decision = decision_of(result, "AC1")
    assert decision.tier == "primary"
    assert verdicts(decision)["AGY_EARLY"] == "at capacity 1000/1000"
    assert verdicts(decision)["AGY_LATE"] == "tier secondary: the case is due for primary"


def test_a_returned_case_goes_to_the_next_tier_and_never_back() -> None:
    heavy_early2 = agency_config(
        id="AGY_EARLY2", tier="primary", capacity={"weight": 1e6}, eligibility={"buckets": ["M2"]}
    )
    cases = [
        returned(f"AC{n}", ("AGY_EARLY", "primary", "returned"), bucket="M2") for n in range(30)
    ]
    result = run(cases, [EARLY, heavy_early2, LATE, FIRM])
    # Not the other primary agency either, however heavy: the case moves on a tier.
    assert set(placed(result).values()) == {"AGY_LATE"}
    assert {a.tier for a in result.assignments} == {"secondary"}
    assert verdicts(decision_of(result, "AC0"))["AGY_EARLY"] == "had this case before"
    assert verdicts(decision_of(result, "AC0"))["AGY_EARLY2"] == (
        "tier primary: the case has been through it"
    )


def test_never_to_an_agency_that_had_the_case_whatever_became_of_it() -> None:
    late2 = agency_config(id="AGY_LATE2", tier="secondary", eligibility={"buckets": ["M2"]})
    heavy_late = agency_config(
        id="AGY_LATE", tier="secondary", capacity={"weight": 1e6}, eligibility={"buckets": ["M2"]}
    )
    for state in ("recalled", "returned", "closed"):
        case = returned(
            "AC1",
            ("AGY_EARLY", "primary", "returned"),
            ("AGY_LATE", "secondary", state),
            bucket="M2",
            # A legal-tier firm that takes M2 gives the case somewhere to go after secondary.
        )
        firm_m2 = agency_config(id="LAW_FIRM", tier="legal", eligibility={"buckets": ["M2"]})
        result = run([case], [EARLY, heavy_late, late2, firm_m2])
        assert placed(result) == {"AC1": "LAW_FIRM"}, state


def test_a_case_its_agency_rejected_may_go_to_another_agency_of_the_same_tier() -> None:
    case = returned("AC1", ("AGY_EARLY", "primary", "rejected"), bucket="M2", last_event="reject")
    result = run([case])
    assert placed(result) == {"AC1": "AGY_EARLY2"}
    # Rejected by the only primary agency that takes it: on to the next tier.
    lone = returned("AC2", ("AGY_EARLY", "primary", "rejected"), bucket="M3", last_event="reject")
    assert placed(run([lone])) == {"AC2": "AGY_LATE"}


def test_old_placements_without_a_recorded_tier_count_in_the_agencys_tier() -> None:
    case = returned("AC1", ("AGY_EARLY", None, "returned"), bucket="M2")
    assert placed(run([case])) == {"AC1": "AGY_LATE"}


def test_no_next_tier_is_a_reason_of_its_own() -> None:
    case = returned(
        "AC1",
        ("AGY_EARLY", "primary", "returned"),
        ("AGY_LATE", "secondary", "returned"),
        bucket="M3",
    )
    result = run([case])
    assert reasons(result) == {
        "AC1": ("no_next_tier", "no agency after tier secondary can take it")
    }
    assert verdicts(decision_of(result, "AC1"))["LAW_FIRM"] == "bucket M3 not in contract"


def test_an_escalated_case_goes_to_the_legal_tier_at_once() -> None:
    case = returned(
        "AC1",
        ("AGY_EARLY", "primary", "recalled"),
        bucket="LEGAL",
        last_event="escalate",
        came_back_at=NOW - timedelta(hours=1),  # no cool-off for an escalation
    )
    result = run([case])
    assert placed(result) == {"AC1": "LAW_FIRM"}
    decision = decision_of(result, "AC1")
    assert decision.tier == "legal"


def test_an_escalated_case_whose_bucket_no_firm_takes_waits_with_that_reason() -> None:
    case = returned("AC1", ("AGY_EARLY", "primary", "recalled"), bucket="M3", last_event="escalate")
    result = run([case])
    assert placed(result) == {}
    code, detail = reasons(result)["AC1"]
    assert code == "no_eligible_agency"
    assert detail == "escalated to legal, but no agency of that tier can take it"
    # Not placed in the secondary tier, which would take M3.
    assert verdicts(decision_of(result, "AC1"))["AGY_LATE"] == (
        "tier secondary: escalated cases go to legal"
    )


# -- screening and cool-off -----------------------------------------------------------------


def test_a_returned_case_cools_off_before_the_next_tier_takes_it() -> None:
    case = returned(
        "AC1",
        ("AGY_EARLY", "primary", "returned"),
        bucket="M2",
        came_back_at=datetime(2026, 3, 15, 12, 0, tzinfo=UTC),
    )
    result = run([case])
    assert reasons(result) == {"AC1": ("cooling_off", "cooling off until 2026-03-22")}
    assert result.decisions == []  # never reached an agency
    assert placed(run([case], cool_off_days=4)) == {"AC1": "AGY_LATE"}
    assert placed(run([case], cool_off_days=0)) == {"AC1": "AGY_LATE"}


def test_an_expired_case_cools_off_as_a_returned_one() -> None:
    case = returned(
        "AC1",
        ("AGY_EARLY", "primary", "recalled"),
        bucket="M2",
        last_event="expire",
        came_back_at=NOW - timedelta(days=6, hours=23),
    )
    assert reasons(run([case]))["AC1"][0] == "cooling_off"
    later = returned(
        "AC1",
        ("AGY_EARLY", "primary", "recalled"),
        bucket="M2",
        last_event="expire",
        came_back_at=NOW - timedelta(days=7),
    )
    assert placed(run([later])) == {"AC1": "AGY_LATE"}


def test_held_not_overdue_nothing_owed_and_unallocatable_cases_are_never_placed() -> None:
    result = run(
        [
            case_to_allocate(case_id="AC_HELD", debtor_id="CU1", holds=("DECEASED", "DISPUTE")),
            case_to_allocate(case_id="AC_DPD0", debtor_id="CU2", dpd=0, bucket="M1"),
            case_to_allocate(case_id="AC_ZERO", debtor_id="CU3", balance_minor=0),
            case_to_allocate(case_id="AC_PLACED", debtor_id="CU4", status="placed"),
            case_to_allocate(case_id="AC_OK", debtor_id="CU5"),
        ]
    )
    assert set(placed(result)) == {"AC_OK"}
    assert reasons(result) == {
        "AC_HELD": ("held", "on hold: DECEASED, DISPUTE"),
        "AC_DPD0": ("not_overdue", "not overdue (0 days past due)"),
        "AC_ZERO": ("nothing_owed", "nothing owed (balance 0.00)"),
        "AC_PLACED": ("not_allocatable", "the case is placed"),
    }


def test_a_held_account_does_not_hold_back_the_debtors_other_accounts() -> None:
    result = run(
        [
            case_to_allocate(case_id="AC1", debtor_id="CU1", holds=("BANKRUPT",)),
            case_to_allocate(case_id="AC2", debtor_id="CU1"),
        ]
    )
    assert set(placed(result)) == {"AC2"}
    assert decision_of(result, "AC2").case_ids == ("AC2",)


# -- mixed debtors and stickiness -----------------------------------------------------------

MIXED = [
    case_to_allocate(case_id="AC_M1", debtor_id="CU_MIX", bucket="M1"),
    case_to_allocate(case_id="AC_LG", debtor_id="CU_MIX", bucket="LEGAL"),
]


def test_worst_lets_the_worst_account_decide_for_all() -> None:
    result = run(MIXED, mixed="worst")
    assert placed(result) == {"AC_M1": "LAW_FIRM", "AC_LG": "LAW_FIRM"}
    [decision] = result.decisions
    assert (decision.rule, decision.bucket, decision.tier) == ("worst", "LEGAL", "legal")
    assert decision.case_ids == ("AC_LG", "AC_M1")
    assert decision.reason == "mixed buckets M1, LEGAL: the worst, LEGAL, decides for all"


def test_split_places_each_bucket_on_its_own_and_says_so() -> None:
    result = run(MIXED, mixed="split")
    assert placed(result)["AC_LG"] == "LAW_FIRM"
    assert placed(result)["AC_M1"] in {"AGY_EARLY", "AGY_EARLY2"}
    by_bucket = {d.bucket: d for d in result.decisions}
    assert {d.rule for d in result.decisions} == {"split"}
    assert by_bucket["M1"].case_ids == ("AC_M1",) and by_bucket["M1"].tier == "primary"
    assert by_bucket["LEGAL"].reason == (
        "mixed buckets M1, LEGAL: split by bucket, LEGAL placed on its own"
    )


def test_mixed_debtors_were_stranded_before_and_are_placed_now() -> None:
    """The demo's shape: agencies by bucket range, no single one taking M1 and LEGAL."""
    debtors = [
        [
            case_to_allocate(case_id=f"AC{d}A", debtor_id=f"CU{d}", bucket="M1"),
            case_to_allocate(case_id=f"AC{d}B", debtor_id=f"CU{d}", bucket="LEGAL"),
        ]
        for d in range(40)
    ]
    cases = [c for pair in debtors for c in pair]
    for mixed in ("worst", "split"):
        result = run(cases, mixed=mixed)
        assert len(placed(result)) == 80 and result.unallocated == [], mixed


def test_new_accounts_follow_the_debtors_agency_when_it_can_take_them() -> None:
    result = run(
        [case_to_allocate(case_id="AC1", debtor_id="CU1", bucket="M3")],
        debtor_agency={"CU1": "AGY_LATE"},  # secondary, though primary AGY_EARLY takes M3
    )
    assert placed(result) == {"AC1": "AGY_LATE"}
    decision = decision_of(result, "AC1")
    assert decision.draw is None and decision.tier == "secondary"
    assert verdicts(decision)["AGY_EARLY"] == "debtor's accounts are with AGY_LATE"
    assert decision.reason == "follows the debtor's other accounts at AGY_LATE"


def test_worst_names_the_agency_that_holds_the_debtors_other_accounts() -> None:
    case = case_to_allocate(case_id="AC1", debtor_id="CU1", bucket="LEGAL")
    result = run([case], debtor_agency={"CU1": "AGY_EARLY"})
    assert reasons(result) == {
        "AC1": (
            "debtor_elsewhere",
            "debtor's other accounts are with AGY_EARLY, which cannot take LEGAL",
        )
    }
    assert (
        verdicts(decision_of(result, "AC1"))["LAW_FIRM"] == "debtor's accounts are with AGY_EARLY"
    )


def test_when_no_agency_at_all_takes_the_cases_that_is_the_reason_given() -> None:
    case = case_to_allocate(case_id="AC1", debtor_id="CU1", currency="USD")
    result = run([case], debtor_agency={"CU1": "AGY_EARLY"})
    assert reasons(result)["AC1"][0] == "no_eligible_agency"


def test_split_places_what_the_debtors_agency_cannot_take_on_its_own() -> None:
    case = case_to_allocate(case_id="AC1", debtor_id="CU1", bucket="LEGAL")
    # A debtor with one bucket is a "single" group, so split the debtor by giving it two.
    other = case_to_allocate(case_id="AC2", debtor_id="CU1", bucket="M1")
    result = run([case, other], debtor_agency={"CU1": "AGY_EARLY"}, mixed="split")
    assert placed(result) == {"AC1": "LAW_FIRM", "AC2": "AGY_EARLY"}
    assert decision_of(result, "AC1").reason == (
        "mixed buckets M1, LEGAL: split by bucket, LEGAL placed on its own; debtor's other "
        "accounts are with AGY_EARLY, which cannot take LEGAL: placed on their own"
    )


def test_a_returned_case_moves_on_even_when_the_debtors_other_accounts_stay() -> None:
    case = returned("AC1", ("AGY_EARLY", "primary", "returned"), bucket="M2", debtor_id="CU1")
    result = run([case], debtor_agency={"CU1": "AGY_EARLY"})
    assert placed(result) == {"AC1": "AGY_LATE"}
    assert "debtor's other accounts are with AGY_EARLY" in (decision_of(result, "AC1").reason or "")


def test_a_debtors_accounts_in_two_currencies_are_two_groups() -> None:
    usd = agency_config(id="AGY_USD", eligibility={"currencies": ["USD"]})
    result = run(
        [
            case_to_allocate(case_id="AC1", debtor_id="CU1", currency="CNY"),
            case_to_allocate(case_id="AC2", debtor_id="CU1", currency="USD"),
        ],
        [EARLY, usd],
    )
    assert placed(result) == {"AC1": "AGY_EARLY", "AC2": "AGY_USD"}
    assert len(result.decisions) == 2


# -- the explanation ------------------------------------------------------------------------


def test_the_decision_lists_every_agency_with_its_verdict() -> None:
    off = agency_config(id="AGY_OFF", enabled=False)
    usd = agency_config(id="AGY_USD", eligibility={"currencies": ["USD"]})
    rich = agency_config(id="AGY_RICH", eligibility={"min_balance_minor": 1_000_000})
    north = agency_config(id="AGY_NORTH", eligibility={"regions": ["CN-11"]})
    full = agency_config(id="AGY_FULL", capacity={"max_open_placements": 10})
    weighted = agency_config(id="AGY_W", capacity={"weight": 3.0})
    case = returned(
        "AC1", ("AGY_EARLY2", "primary", "rejected"), bucket="M2", balance_minor=250_000
    )
    agencies = [off, usd, rich, north, full, weighted, EARLY, EARLY2, LATE, FIRM]
    result = run([case], agencies, open_counts={"AGY_FULL": 10}, factors={("AGY_W", "CNY"): 1.5})
    decision = decision_of(result, "AC1")
    assert verdicts(decision) == {
        "AGY_EARLY": "eligible",
        "AGY_EARLY2": "had this case before",
        "AGY_FULL": "at capacity 10/10",
        "AGY_LATE": "tier secondary: the case is due for primary",
        "AGY_NORTH": "region CN-31 not in contract",
        "AGY_OFF": "disabled",
        "AGY_RICH": "balance 2,500.00 below 10,000.00",
        "AGY_USD": "currency CNY not in contract",
        "AGY_W": "eligible",
        "LAW_FIRM": "bucket M2 not in contract",
    }
    assert [c.agency_id for c in decision.candidates] == sorted(a.id for a in agencies)
    eligible = {c.agency_id: (c.weight, c.factor) for c in decision.candidates if c.weight}
    assert eligible == {"AGY_EARLY": (1.0, 1.0), "AGY_W": (3.0, 1.5)}
    assert {c.tier for c in decision.candidates if c.agency_id == "LAW_FIRM"} == {"legal"}
    # The draw picks the agency: the first whose share of the summed weights passes it.
    assert decision.draw is not None and 0 <= decision.draw < 1
    expected = "AGY_EARLY" if decision.draw < 1.0 / (1.0 + 4.5) else "AGY_W"
    assert decision.chosen == expected == placed(result)["AC1"]
    assert (decision.rule, decision.strategy, decision.code) == ("single", "champion", None)


def test_every_reason_code_has_a_label() -> None:
    codes = {
        "held",
        "not_overdue",
        "nothing_owed",
        "cooling_off",
        "no_next_tier",
        "no_eligible_agency",
        "tier_full",
        "debtor_elsewhere",
    }
    assert codes <= set(REASONS) and all(REASONS.values())


# -- properties -----------------------------------------------------------------------------

TIERS = ("primary", "secondary", "legal")
agencies_strategy = st.lists(
    st.builds(
        lambda i, tier, cap, buckets: agency_config(
            id=f"AGY_{i}",
            tier=tier,
            capacity={"max_open_placements": cap},
            eligibility={"buckets": buckets},
        ),
        i=st.integers(0, 7),
        tier=st.sampled_from(TIERS),
        cap=st.integers(0, 40),
        buckets=st.lists(
            st.sampled_from(["M1", "M2", "M3", "M4-6", "M6+", "LEGAL"]), min_size=1, unique=True
        ),
    ),
    min_size=1,
    max_size=5,
    unique_by=lambda a: a.id,
)
past_strategy = st.lists(
    st.tuples(
        st.sampled_from([f"AGY_{i}" for i in range(8)]),
        st.sampled_from(TIERS),
        st.sampled_from(["returned", "rejected", "recalled"]),
    ),
    max_size=2,
)
cases_strategy = st.lists(
    st.builds(
        lambda n, debtor, bucket, past: case_to_allocate(
            case_id=f"AC{n:05d}",
            debtor_id=f"CU{debtor:02d}",
            bucket=bucket,
            status="returned" if past else "open",
            placements=tuple(PastPlacement(*p) for p in past),
        ),
        n=st.integers(0, 10**5),
        debtor=st.integers(0, 20),
        bucket=st.sampled_from(["M1", "M2", "M3", "M4-6", "M6+", "LEGAL"]),
        past=past_strategy,
    ),
    max_size=60,
    unique_by=lambda c: c.case_id,
)


@settings(max_examples=150)
@given(
    cases=cases_strategy,
    agencies=agencies_strategy,
    mixed=st.sampled_from(["worst", "split"]),
    seed=st.integers(0, 2**31),
)
def test_property_tiers_history_and_capacity_hold(
    cases: list[CaseToAllocate],
    agencies: list[AgencyConfig],
    mixed: Literal["worst", "split"],
    seed: int,
) -> None:
    result = run(cases, agencies, mixed=mixed, seed=seed)
    by_id = {a.id: a for a in agencies}
    where = placed(result)
    assert set(where) | set(reasons(result)) == {c.case_id for c in cases}
    assert not set(where) & set(reasons(result))
    load: dict[str, int] = {}
    for case in cases:
        agency_id = where.get(case.case_id)
        if agency_id is None:
            continue
        load[agency_id] = load.get(agency_id, 0) + 1
        # Never back to an agency that had it; never to a tier it has been through.
        assert agency_id not in {p.agency_id for p in case.placements}
        tier = TIERS.index(by_id[agency_id].tier)
        for past in case.placements:
            assert tier >= TIERS.index(str(past.tier)) + (past.state != "rejected")
    assert all(n <= by_id[a].capacity.max_open_placements for a, n in load.items())
    # Every placed case is explained by exactly one decision naming its agency.
    for assignment in result.assignments:
        assert decision_of(result, assignment.case_id).chosen == assignment.agency_id
    assert run(list(reversed(cases)), list(reversed(agencies)), mixed=mixed, seed=seed) == result
