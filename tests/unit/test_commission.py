"""The pure commission core and the [commission] schedule's validation."""

from datetime import date
from pathlib import Path

import pytest
from hypothesis import given, strategies as st
from pydantic import ValidationError

from gateway.config.agencies import load_agency
from gateway.config.commission import CommissionPeriod, CommissionSection, LegalFees
from gateway.errors import ConfigError
from gateway.settlement.commission import (
    CommissionError,
    LineFacts,
    compute_month,
    half_up,
    reimbursed,
)


def period(**overrides: object) -> CommissionPeriod:
    raw: dict[str, object] = {
        "from": date(2026, 1, 1),
        "to": date(2026, 12, 31),
        "rules": [
            {"name": "legal", "legal": True, "rate_bps": 2500},
            {"name": "early", "buckets": ["M1"], "age_max_days": 30, "rate_bps": 1200},
            {"name": "deep", "dpd_min": 91, "rate_bps": 1800},
            {"name": "base", "rate_bps": 1000},
        ],
        **overrides,
    }
    return CommissionPeriod.model_validate(raw)


def facts(n: int, amount: int, **overrides: object) -> LineFacts:
    base: dict[str, object] = {
        "line_no": n,
        "amount_minor": amount,
        "currency": "CNY",
        "paid_on": date(2026, 3, 10),
        "bucket": "M2",
        "dpd_at_placement": 45,
        "age_days": 40,
        "legal": False,
    }
    return LineFacts(**(base | overrides))  # type: ignore[arg-type]


def test_first_matching_rule_decides_and_rounds_half_up_per_line() -> None:
    out = compute_month(
        period(),
        [
            facts(1, 10_005, legal=True),  # 2500 bps: 2501.25 -> 2501
            facts(2, 10_002, bucket="M1", age_days=3),  # 1200 bps: 1200.24 -> 1200
            facts(3, 10_050, dpd_at_placement=120),  # 1800 bps: 1809.0
            facts(4, 5, age_days=90),  # 1000 bps: 0.5 -> 1 (half up)
        ],
    )
    assert [(r.rule, r.rate_bps, r.commission_minor) for r in out.lines] == [
        ("legal", 2500, 2501),
        ("early", 1200, 1200),
        ("deep", 1800, 1809),
        ("base", 1000, 1),
    ]
    assert out.commission_minor == 2501 + 1200 + 1809 + 1


def test_half_up_rounds_halves_away_from_zero() -> None:
    assert [half_up(n, 10) for n in (4, 5, 15, -5, -4, -15)] == [0, 1, 2, -1, 0, -2]


def test_tiers_apply_to_the_whole_month_not_marginally() -> None:
    tiered = period(
        tiers=[{"from_minor": 0, "bonus_bps": 0}, {"from_minor": 100_000, "bonus_bps": 200}]
    )
    below = compute_month(tiered, [facts(1, 60_000, age_days=90), facts(2, 39_999, age_days=90)])
    assert below.tier is not None and below.tier.bonus_bps == 0
    assert below.commission_minor == 6_000 + 4_000  # 3999.9 -> 4000
    above = compute_month(tiered, [facts(1, 60_000, age_days=90), facts(2, 40_000, age_days=90)])
    # Whole amount: both lines at 1200 bps, not only the part above 100 000.
    assert [r.rate_bps for r in above.lines] == [1200, 1200]
    assert above.commission_minor == 7_200 + 4_800


def test_line_cap_minimum_and_maximum() -> None:
    capped = compute_month(period(line_cap_minor=500), [facts(1, 100_000, age_days=90)])
    assert capped.lines[0].commission_minor == 500 and capped.lines[0].capped
    floor = compute_month(period(monthly_minimum_minor=10_000), [facts(1, 1_000, age_days=90)])
    assert (floor.lines_minor, floor.floor_topup_minor, floor.commission_minor) == (
        100,
        9_900,
        10_000,
    )
    ceiling = compute_month(period(monthly_maximum_minor=150), [facts(1, 2_000, age_days=90)])
    assert (ceiling.ceiling_cut_minor, ceiling.commission_minor) == (50, 150)


def test_no_matching_rule_or_foreign_currency_is_refused_naming_the_line() -> None:
    strict = period(rules=[{"name": "m1", "buckets": ["M1"], "rate_bps": 100}])
    with pytest.raises(CommissionError, match="line 7: no commission rule matches"):
        compute_month(strict, [facts(7, 100)])
    with pytest.raises(CommissionError, match="line 2: currency USD"):
        compute_month(period(), [facts(2, 100, currency="USD")])


def test_legal_fees_at_cost_or_capped() -> None:
    assert reimbursed(LegalFees(), "court", 123_456) == 123_456
    capped = LegalFees(mode="capped", court_cap_minor=100_000)
    assert reimbursed(capped, "court", 123_456) == 100_000
    assert reimbursed(capped, "lawyer", 123_456) == 123_456


amounts = st.integers(min_value=0, max_value=10**10)
line_facts = st.builds(
    facts,
    st.just(1),
    amounts,
    bucket=st.sampled_from(["M1", "M2", "M3", "LEGAL"]),
    dpd_at_placement=st.integers(0, 400),
    age_days=st.integers(0, 400),
    legal=st.booleans(),
)
schedules = st.builds(
    lambda cap, floor, extra: period(
        line_cap_minor=cap,
        monthly_minimum_minor=floor,
        monthly_maximum_minor=None if extra is None else floor + extra,
        tiers=[{"from_minor": 0, "bonus_bps": 0}, {"from_minor": 10**6, "bonus_bps": 300}],
    ),
    st.none() | st.integers(0, 10**7),
    st.integers(0, 10**6),
    st.none() | st.integers(0, 10**8),
)


@given(schedules, st.lists(line_facts, max_size=20))
def test_totals_are_the_sum_of_lines_within_caps_minimum_and_maximum(
    schedule: CommissionPeriod, lines: list[LineFacts]
) -> None:
    lines = [facts(i, f.amount_minor, bucket=f.bucket, legal=f.legal) for i, f in enumerate(lines)]
    out = compute_month(schedule, lines)
    assert out.lines_minor == sum(r.commission_minor for r in out.lines)
    assert out.recovered_minor == sum(f.amount_minor for f in lines)
    if schedule.line_cap_minor is not None:
        assert all(r.commission_minor <= schedule.line_cap_minor for r in out.lines)
    assert out.commission_minor >= schedule.monthly_minimum_minor
    if schedule.monthly_maximum_minor is not None:
        assert out.commission_minor <= schedule.monthly_maximum_minor
    assert not (out.floor_topup_minor and out.ceiling_cut_minor)


@given(line_facts, st.integers(0, 10**6))
def test_commission_is_monotonic_in_amount_within_a_tier(line: LineFacts, more: int) -> None:
    schedule = period(line_cap_minor=50_000)  # one tier: nothing to cross
    low = compute_month(schedule, [line])
    high = compute_month(
        schedule,
        [
            facts(
                1,
                line.amount_minor + more,
                bucket=line.bucket,
                legal=line.legal,
                dpd_at_placement=line.dpd_at_placement,
                age_days=line.age_days,
            )
        ],
    )
    assert high.commission_minor >= low.commission_minor


def test_periods_run_in_whole_months_and_never_overlap() -> None:
    with pytest.raises(ValidationError, match="first day of a month"):
        period(**{"from": date(2026, 1, 2)})
    with pytest.raises(ValidationError, match="last day of a month"):
        period(to=date(2026, 12, 30))
    with pytest.raises(ValidationError, match="periods overlap"):
        CommissionSection(periods=(period(), period(**{"from": date(2026, 6, 1)})))


def test_check_config_names_the_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "acme.toml"
    path.write_text(
        """
id = "ACME"
name = "Acme"
channel = "email"
[email]
to = "intake@firm.example"
[eligibility]
buckets = ["M1"]
[capacity]
max_open_placements = 10
[[commission.periods]]
from = 2026-01-01
to = 2026-12-31
[[commission.periods.rules]]
name = "base"
rate_bps = 20000
""",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as err:
        load_agency(path)
    assert any(
        p.startswith(f"{path}: commission.periods.0.rules.0.rate_bps:") for p in err.value.problems
    ), err.value.problems
