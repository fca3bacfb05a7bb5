"""The annual evaluation's report model (gateway.evaluation.model): the comparison with peers
within strata against a hand computation, and each recommendation rule at its threshold."""

from dataclasses import replace
from datetime import date
from typing import Any

import pytest
from hypothesis import given, strategies as st

from gateway.config.settings import EvaluationSection
from gateway.evaluation.model import Inputs, RegisterFacts, Stratum, canonical, evaluate

RULES = EvaluationSection()


def inputs(**overrides: Any) -> Inputs:
    base = Inputs(
        agency_id="AGY_A",
        period_start=date(2025, 12, 1),
        period_end=date(2026, 12, 1),
        currency="CNY",
        register=RegisterFacts(status="admitted", share_bps=10_000, allowed=True),
        strata=(
            Stratum("M1", "<5k", "2026-01", 100, 1_000_000, 300_000, 200, 2_000_000, 500_000),
            Stratum("M2", "5k-20k", "2026-02", 50, 2_000_000, 200_000, 50, 1_000_000, 200_000),
        ),
        ack_met=95,
        ack_breached=5,
        activity_met=90,
        activity_breached=10,
    )
    return replace(base, **overrides)


def test_recovery_against_peers_is_the_agencys_mix_at_the_peers_rates() -> None:
    report = evaluate(inputs(), RULES)
    # By hand: M1 peers recover 25%, on our 1,000,000 that is 250,000; M2 peers 20%, on our
    # 2,000,000 that is 400,000; we recovered 500,000 of the expected 650,000.
    assert report.expected_minor == 650_000
    assert report.relative_bps == 500_000 * 10_000 // 650_000 == 7_692
    assert report.placements == 150 and report.recovery_bps == 500_000 * 10_000 // 3_000_000
    assert report.recommendation == "renew" and report.reasons == ()


def test_strata_without_peers_or_too_small_are_left_out_of_both_sides() -> None:
    alone = Stratum("M3", "50k+", "2026-03", 10, 9_000_000, 0, 0, 0, 0)
    small = Stratum("M1", "<5k", "2026-04", 2, 500_000, 0, 1, 400, 400, comparable=False)
    base = evaluate(inputs(), RULES)
    report = evaluate(inputs(strata=(*inputs().strata, alone, small)), RULES)
    assert report.expected_minor == base.expected_minor
    assert report.relative_bps == base.relative_bps
    assert report.placements == 162  # but the agency's own totals count every placement
    lonely = evaluate(inputs(strata=(alone,)), RULES)
    assert lonely.relative_bps is None and lonely.expected_minor is None


@pytest.mark.parametrize(
    ("overrides", "recommendation", "codes"),
    [
        ({"violations": {"third_party_contact": 2}}, "renew", []),
        ({"violations": {"third_party_contact": 3}}, "reduce_share", ["high_violations"]),
        ({"violations": {"third_party_contact": 10}}, "terminate", ["high_violations"]),
        ({"violations": {"missing_activity": 30}}, "renew", []),  # not high severity
        ({"complaints_upheld": 1}, "reduce_share", ["upheld_complaints"]),  # 66 per 10k
        ({"complaints_upheld": 3}, "terminate", ["upheld_complaints"]),  # 200 per 10k
        ({"complaints_overdue": 1}, "reduce_share", ["overdue_complaints"]),
        ({"incidents": {"medium": 2}}, "renew", []),
        ({"incidents": {"high": 1}}, "terminate", ["data_incident"]),
        ({"ack_met": 79, "ack_breached": 21}, "reduce_share", ["sla"]),
        ({"register": RegisterFacts(status="blacklisted")}, "terminate", ["register_status"]),
    ],
)
def test_each_rule_recommends_at_its_threshold(
    overrides: dict[str, Any], recommendation: str, codes: list[str]
) -> None:
    report = evaluate(inputs(high_kinds=frozenset({"third_party_contact"}), **overrides), RULES)
    assert report.recommendation == recommendation
    assert [r.code for r in report.reasons] == codes


def test_below_peers_reduces_share_and_the_strongest_rule_wins() -> None:
    weak = inputs(
        strata=(Stratum("M1", "<5k", "2026-01", 100, 1_000_000, 100_000, 100, 1_000_000, 300_000),),
    )
    report = evaluate(weak, RULES)
    assert report.relative_bps == 3_333
    assert report.recommendation == "reduce_share"
    both = evaluate(replace(weak, incidents={"high": 1}), RULES)
    assert both.recommendation == "terminate"
    assert {r.code for r in both.reasons} == {"recovery_below_peers", "data_incident"}
    (below,) = [r for r in both.reasons if r.code == "recovery_below_peers"]
    zh, en = below.text("zh"), below.text("en")
    assert "3333" in zh and "同业" in zh and "peers" in en


@given(
    st.lists(
        st.tuples(
            st.integers(1, 50),
            st.integers(1, 10**8),
            st.integers(0, 10**8),
            st.integers(0, 50),
            st.integers(0, 10**8),
            st.integers(0, 10**8),
        ),
        max_size=8,
    )
)
def test_relative_is_recovered_over_expected_and_figures_are_canonical(
    cells: list[tuple[int, int, int, int, int, int]],
) -> None:
    strata = tuple(
        Stratum("M1", "<5k", f"2026-{i + 1:02d}", n, placed, min(rec, placed), pn, pp, min(pr, pp))
        for i, (n, placed, rec, pn, pp, pr) in enumerate(cells)
    )
    report = evaluate(inputs(strata=strata), RULES)
    shared = [s for s in strata if s.peer_placed_minor > 0]
    if not shared:
        assert report.relative_bps is None
    else:
        expected = sum(
            s.placed_minor * s.peer_recovered_minor // s.peer_placed_minor for s in shared
        )
        recovered = sum(s.recovered_minor for s in shared)
        assert report.expected_minor == expected
        assert report.relative_bps == (10_000 if expected == 0 else recovered * 10_000 // expected)
    assert canonical(report.figures()) == canonical(
        evaluate(inputs(strata=strata), RULES).figures()
    )
