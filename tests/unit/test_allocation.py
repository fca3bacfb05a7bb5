"""Allocation rules: debtors stay together, stickiness, eligibility, exclusions, capacity,
determinism and weights."""

import random
from collections import Counter
from collections.abc import Sequence

import pytest
from hypothesis import given, settings, strategies as st

from gateway.allocation.performance import Recovery, performance_factors
from gateway.allocation.routing import fit_verdict, worst_bucket
from gateway.allocation.rules import (
    REASONS,
    AllocationResult,
    CaseToAllocate,
    allocate,
    eligible,
)
from gateway.config.agencies import AgencyConfig
from tests.factories import agency_config, case_to_allocate

SEED = 20260101

ALPHA = agency_config(id="AGY_ALPHA", capacity={"weight": 1.0})
BETA = agency_config(id="AGY_BETA", capacity={"weight": 1.0})


def run(
    cases: Sequence[CaseToAllocate],
    agencies: Sequence[AgencyConfig],
    *,
    open_counts: dict[str, int] | None = None,
    debtor_agency: dict[str, str] | None = None,
    seed: int = SEED,
) -> AllocationResult:
    return allocate(
        cases,
        agencies,
        open_counts=open_counts or {},
        debtor_agency=debtor_agency or {},
        seed=seed,
    )


def placed(result: AllocationResult) -> dict[str, str]:
    return {a.case_id: a.agency_id for a in result.assignments}


def unplaced(result: AllocationResult) -> dict[str, str]:
    return {u.case_id: u.reason for u in result.unallocated}


def many_cases(debtors: int, *, accounts_per_debtor: int = 1) -> list[CaseToAllocate]:
    return [
        case_to_allocate(case_id=f"AC{d:06d}{n}", debtor_id=f"CU{d:06d}")
        for d in range(debtors)
        for n in range(accounts_per_debtor)
    ]


def test_every_case_is_either_placed_or_reported_unallocated() -> None:
    cases = many_cases(50, accounts_per_debtor=2)
    result = run(cases, [agency_config(id="AGY_SMALL", capacity={"max_open_placements": 30})])
    assert len(placed(result)) == 30
    assert set(placed(result)) | set(unplaced(result)) == {c.case_id for c in cases}
    assert not set(placed(result)) & set(unplaced(result))


def test_a_debtors_accounts_go_to_one_agency() -> None:
    cases = many_cases(200, accounts_per_debtor=3)
    result = run(cases, [ALPHA, BETA])
    by_debtor: dict[str, set[str]] = {}
    for case in cases:
        by_debtor.setdefault(case.debtor_id, set()).add(placed(result)[case.case_id])
    assert all(len(agencies) == 1 for agencies in by_debtor.values())
    # Both agencies were used, so "together" is not an accident of a single candidate.
    assert {next(iter(a)) for a in by_debtor.values()} == {"AGY_ALPHA", "AGY_BETA"}


def test_a_debtor_group_is_not_split_when_one_account_is_ineligible() -> None:
    """If one account cannot go to an agency, none of the debtor's accounts go there."""
    m1_only = agency_config(id="AGY_EARLY", eligibility={"buckets": ["M1"]})
    late = agency_config(id="AGY_LATE", eligibility={"buckets": ["M1", "M6+"]})
    cases = [
        case_to_allocate(case_id="AC1", debtor_id="CU1", bucket="M1"),
        case_to_allocate(case_id="AC2", debtor_id="CU1", bucket="M6+"),
    ]
    for seed in range(20):
        assert placed(run(cases, [m1_only, late], seed=seed)) == {
            "AC1": "AGY_LATE",
            "AC2": "AGY_LATE",
        }


def test_new_accounts_follow_the_debtors_existing_agency() -> None:
    heavy = agency_config(id="AGY_HEAVY", capacity={"weight": 1000.0})
    cases = many_cases(30)
    sticky = {c.debtor_id: "AGY_LIGHT" for c in cases}
    light = agency_config(id="AGY_LIGHT", capacity={"weight": 0.001})
    result = run(cases, [heavy, light], debtor_agency=sticky)
    assert set(placed(result).values()) == {"AGY_LIGHT"}


def test_sticky_agency_without_room_leaves_the_case_unallocated_rather_than_splitting() -> None:
    full = agency_config(id="AGY_FULL", capacity={"max_open_placements": 5})
    result = run(
        [case_to_allocate(case_id="AC9", debtor_id="CU9")],
        [full, ALPHA],
        open_counts={"AGY_FULL": 5},
        debtor_agency={"CU9": "AGY_FULL"},
    )
    assert placed(result) == {}
    assert "AGY_FULL" in unplaced(result)["AC9"]


def test_eligibility_bucket() -> None:
    agency = agency_config(eligibility={"buckets": ["M1", "M2"]})
    assert eligible(agency, case_to_allocate(bucket="M2"))
    assert not eligible(agency, case_to_allocate(bucket="M3"))


def test_eligibility_balance_range_is_inclusive() -> None:
    agency = agency_config(
        eligibility={"min_balance_minor": 10_000, "max_balance_minor": 1_000_000}
    )
    assert not eligible(agency, case_to_allocate(balance_minor=9_999))
    assert eligible(agency, case_to_allocate(balance_minor=10_000))
    assert eligible(agency, case_to_allocate(balance_minor=1_000_000))
    assert not eligible(agency, case_to_allocate(balance_minor=1_000_001))


def test_eligibility_without_maximum_takes_any_large_balance() -> None:
    agency = agency_config(eligibility={"min_balance_minor": 0})
    assert eligible(agency, case_to_allocate(balance_minor=10**12))


def test_eligibility_region() -> None:
    agency = agency_config(eligibility={"regions": ["CN-31", "CN-32"]})
    assert eligible(agency, case_to_allocate(region="CN-32"))
    assert not eligible(agency, case_to_allocate(region="CN-44"))
    assert eligible(agency_config(eligibility={"regions": []}), case_to_allocate(region="CN-44"))


def test_eligibility_currency() -> None:
    agency = agency_config(eligibility={"currencies": ["CNY"]})
    assert eligible(agency, case_to_allocate(currency="CNY"))
    assert not eligible(agency, case_to_allocate(currency="USD"))


def test_disabled_agency_gets_nothing() -> None:
    off = agency_config(id="AGY_OFF", enabled=False, capacity={"weight": 1000.0})
    result = run(many_cases(40), [off, ALPHA])
    assert set(placed(result).values()) == {"AGY_ALPHA"}


def test_ineligible_cases_are_unallocated_with_a_reason() -> None:
    agency = agency_config(eligibility={"buckets": ["M1"]})
    result = run([case_to_allocate(case_id="AC7", bucket="LEGAL")], [agency])
    # The true reason, not "no eligible agency with free capacity" (issue 16).
    assert unplaced(result) == {
        "AC7": "no agency can take it (AGY_TEST: bucket LEGAL not in contract)"
    }
    assert [u.code for u in result.unallocated] == ["no_eligible_agency"]


def test_never_back_to_an_agency_that_returned_the_case() -> None:
    cases = [
        case_to_allocate(
            case_id=f"AC{n}", debtor_id=f"CU{n}", excluded_agencies=frozenset({"AGY_ALPHA"})
        )
        for n in range(100)
    ]
    heavy_alpha = agency_config(id="AGY_ALPHA", capacity={"weight": 1000.0})
    result = run(cases, [heavy_alpha, BETA])
    assert set(placed(result).values()) == {"AGY_BETA"}


def test_excluded_from_the_only_agency_means_unallocated() -> None:
    case = case_to_allocate(case_id="AC1", excluded_agencies=frozenset({"AGY_ALPHA"}))
    result = run([case], [ALPHA])
    assert placed(result) == {}
    assert list(unplaced(result)) == ["AC1"]


def test_exclusion_of_one_account_keeps_the_whole_debtor_away() -> None:
    cases = [
        case_to_allocate(case_id="AC1", debtor_id="CU1"),
        case_to_allocate(
            case_id="AC2", debtor_id="CU1", excluded_agencies=frozenset({"AGY_ALPHA"})
        ),
    ]
    for seed in range(20):
        assert set(placed(run(cases, [ALPHA, BETA], seed=seed)).values()) == {"AGY_BETA"}


def test_capacity_counts_existing_open_placements() -> None:
    small = agency_config(id="AGY_SMALL", capacity={"max_open_placements": 10})
    result = run(many_cases(25), [small], open_counts={"AGY_SMALL": 7})
    assert len(placed(result)) == 3
    assert len(unplaced(result)) == 22


def test_zero_capacity_agency_gets_nothing() -> None:
    closed = agency_config(id="AGY_ZERO", capacity={"max_open_placements": 0, "weight": 100.0})
    result = run(many_cases(20), [closed, ALPHA])
    assert set(placed(result).values()) == {"AGY_ALPHA"}


def test_a_group_larger_than_the_remaining_room_goes_elsewhere_whole() -> None:
    tight = agency_config(id="AGY_TIGHT", capacity={"max_open_placements": 2, "weight": 1e6})
    cases = many_cases(1, accounts_per_debtor=3)
    assert set(placed(run(cases, [tight, ALPHA])).values()) == {"AGY_ALPHA"}


cases_strategy = st.lists(
    st.builds(
        case_to_allocate,
        case_id=st.integers(0, 10**6).map(lambda n: f"AC{n:07d}"),
        debtor_id=st.integers(0, 40).map(lambda n: f"CU{n:03d}"),
        bucket=st.sampled_from(["M1", "M2", "M3", "M4-6", "M6+", "LEGAL"]),
        balance_minor=st.integers(0, 5_000_000),
        region=st.sampled_from(["CN-31", "CN-32", "CN-44"]),
    ),
    max_size=120,
    unique_by=lambda c: c.case_id,
)
agencies_strategy = st.lists(
    st.builds(
        lambda i, cap, weight, buckets: agency_config(
            id=f"AGY_{i}",
            capacity={"max_open_placements": cap, "weight": weight},
            eligibility={"buckets": buckets},
        ),
        i=st.integers(0, 9),
        cap=st.integers(0, 60),
        weight=st.floats(0.1, 10),
        buckets=st.lists(
            st.sampled_from(["M1", "M2", "M3", "M4-6", "M6+", "LEGAL"]), min_size=1, unique=True
        ),
    ),
    min_size=1,
    max_size=4,
    unique_by=lambda a: a.id,
)


@settings(max_examples=150)
@given(
    cases=cases_strategy,
    agencies=agencies_strategy,
    preload=st.integers(0, 30),
    seed=st.integers(0, 2**31),
)
def test_property_capacity_never_exceeded_and_groups_kept(
    cases: list[CaseToAllocate], agencies: list[AgencyConfig], preload: int, seed: int
) -> None:
    open_counts = {a.id: min(preload, a.capacity.max_open_placements) for a in agencies}
    result = run(cases, agencies, open_counts=open_counts, seed=seed)
    load = Counter(placed(result).values())
    for agency in agencies:
        assert open_counts[agency.id] + load[agency.id] <= agency.capacity.max_open_placements
    by_id = {a.id: a for a in agencies}
    where = placed(result)
    codes = {u.case_id: u.code for u in result.unallocated}
    assert set(where) | set(codes) == {c.case_id for c in cases}
    assert set(codes.values()) <= set(REASONS)
    # Under "worst" the debtor's worst owed account decides eligibility for all of them.
    worst: dict[str, str] = {}
    for case in cases:
        if case.balance_minor > 0:
            worst[case.debtor_id] = worst_bucket([case.bucket, worst.get(case.debtor_id, "M1")])
    debtor_agencies: dict[str, set[str | None]] = {}
    for case in cases:
        agency_id = where.get(case.case_id)
        if case.balance_minor <= 0:
            assert codes[case.case_id] == "nothing_owed"
            continue
        debtor_agencies.setdefault(case.debtor_id, set()).add(agency_id)
        if agency_id is not None:
            assert fit_verdict(by_id[agency_id], [case], worst[case.debtor_id]) is None
    # All of a debtor's owed accounts are placed with one agency, or none is placed.
    assert all(len(found) == 1 for found in debtor_agencies.values())


@settings(max_examples=100)
@given(
    cases=cases_strategy,
    agencies=agencies_strategy,
    seed=st.integers(0, 2**31),
    shuffle_seed=st.integers(0, 2**31),
)
def test_property_input_order_does_not_matter(
    cases: list[CaseToAllocate], agencies: list[AgencyConfig], seed: int, shuffle_seed: int
) -> None:
    shuffled_cases, shuffled_agencies = list(cases), list(agencies)
    rng = random.Random(shuffle_seed)
    rng.shuffle(shuffled_cases)
    rng.shuffle(shuffled_agencies)
    first = run(cases, agencies, seed=seed)
    second = run(shuffled_cases, shuffled_agencies, seed=seed)
    assert placed(first) == placed(second)
    assert unplaced(first) == unplaced(second)


def test_same_seed_same_result() -> None:
    cases = many_cases(300, accounts_per_debtor=2)
    assert placed(run(cases, [ALPHA, BETA])) == placed(run(cases, [ALPHA, BETA]))


def test_another_seed_gives_another_split() -> None:
    cases = many_cases(300)
    assert placed(run(cases, [ALPHA, BETA], seed=1)) != placed(run(cases, [ALPHA, BETA], seed=2))


def test_weights_are_roughly_respected_on_a_large_input() -> None:
    three = agency_config(id="AGY_THREE", capacity={"weight": 3.0, "max_open_placements": 10**6})
    one = agency_config(id="AGY_ONE", capacity={"weight": 1.0, "max_open_placements": 10**6})
    shares = Counter(placed(run(many_cases(8000), [three, one])).values())
    assert 0.70 <= shares["AGY_THREE"] / 8000 <= 0.80


def test_capacity_overflow_spills_to_the_other_agency() -> None:
    """A heavily weighted agency that fills up stops receiving; the rest go elsewhere."""
    favourite = agency_config(id="AGY_FAV", capacity={"weight": 100.0, "max_open_placements": 50})
    result = run(many_cases(200), [favourite, ALPHA])
    counts = Counter(placed(result).values())
    assert counts == {"AGY_FAV": 50, "AGY_ALPHA": 150}


# -- performance weighting and champion/challenger ---------------------------------------

ROOMY = [
    agency_config(id=a, capacity={"weight": 1.0, "max_open_placements": 100_000})
    for a in ("AGY_ALPHA", "AGY_BETA")
]


def test_performance_factors_compare_each_agency_with_its_peers_in_a_currency() -> None:
    factors = performance_factors(
        [
            Recovery("AGY_ALPHA", "CNY", 100, 1_000_000, 300_000),  # 30 %
            Recovery("AGY_BETA", "CNY", 100, 1_000_000, 100_000),  # 10 %
            Recovery("AGY_GAMMA", "CNY", 10, 1_000_000, 900_000),  # too few to score
            Recovery("AGY_ALPHA", "USD", 80, 500_000, 0),  # the only one scored in USD
        ],
        min_placements=50,
        floor=0.5,
        cap=2.0,
    )
    assert factors == pytest.approx(
        {
            ("AGY_ALPHA", "CNY"): 1.5,  # 30 % over a mean of 20 %
            ("AGY_BETA", "CNY"): 0.5,
            ("AGY_ALPHA", "USD"): 1.0,  # the mean of nothing recovered: no basis to favour
        }
    )


def test_performance_factors_are_clamped() -> None:
    factors = performance_factors(
        [
            Recovery("AGY_ALPHA", "CNY", 100, 1_000, 1_000),
            Recovery("AGY_BETA", "CNY", 100, 1_000, 10),
            Recovery("AGY_GAMMA", "CNY", 100, 1_000, 10),
        ],
        min_placements=1,
        floor=0.5,
        cap=2.0,
    )
    assert factors[("AGY_ALPHA", "CNY")] == 2.0 and factors[("AGY_BETA", "CNY")] == 0.5


def test_champion_draws_follow_the_performance_factors() -> None:
    cases = many_cases(2000)
    plain = Counter(placed(run(cases, ROOMY)).values())
    favoured = allocate(
        cases,
        ROOMY,
        open_counts={},
        debtor_agency={},
        seed=SEED,
        factors={("AGY_ALPHA", "CNY"): 2.0, ("AGY_BETA", "CNY"): 0.5},
    )
    weighted = Counter(placed(favoured).values())
    assert abs(plain["AGY_ALPHA"] - 1000) < 150
    # Weights 2 : 0.5, so about four in five go to AGY_ALPHA.
    assert abs(weighted["AGY_ALPHA"] - 1600) < 150
    assert {a.strategy for a in favoured.assignments} == {"champion"}


def test_challengers_are_drawn_by_contract_weights_and_recorded() -> None:
    cases = many_cases(2000, accounts_per_debtor=2)
    factors = {("AGY_ALPHA", "CNY"): 10.0, ("AGY_BETA", "CNY"): 0.1}
    result = allocate(
        cases,
        ROOMY,
        open_counts={},
        debtor_agency={},
        seed=SEED,
        factors=factors,
        challenger_share=0.25,
    )
    by_strategy = Counter(a.strategy for a in result.assignments)
    assert abs(by_strategy["challenger"] - 1000) < 150  # a quarter of 4000 accounts
    challengers = Counter(a.agency_id for a in result.assignments if a.strategy == "challenger")
    champions = Counter(a.agency_id for a in result.assignments if a.strategy == "champion")
    assert abs(challengers["AGY_ALPHA"] - challengers["AGY_BETA"]) < 0.2 * by_strategy["challenger"]
    assert champions["AGY_BETA"] < 0.05 * by_strategy["champion"]
    # A debtor's accounts share one strategy, and the split is the same on every run.
    strategy_of: dict[str, set[str]] = {}
    by_case = {a.case_id: a.strategy for a in result.assignments}
    for case in cases:
        strategy_of.setdefault(case.debtor_id, set()).add(by_case[case.case_id])
    assert all(len(s) == 1 for s in strategy_of.values())
    again = allocate(
        list(reversed(cases)),
        list(reversed(ROOMY)),
        open_counts={},
        debtor_agency={},
        seed=SEED,
        factors=factors,
        challenger_share=0.25,
    )
    assert sorted(again.assignments, key=lambda a: a.case_id) == sorted(
        result.assignments, key=lambda a: a.case_id
    )
