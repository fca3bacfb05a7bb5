"""Payment matching (``gateway.reconciliation.matching``): each pass with a case that matches and
one that does not, ambiguity never resolved by guessing, and properties over random inputs: every
record ends in exactly one place, nothing is consumed twice, order never matters."""

import random
from collections import Counter
from typing import Any

from hypothesis import given, settings, strategies as st

from gateway.reconciliation.match_inputs import (
    AgencyPayment,
    Contract,
    LenderReceipt,
    ReceiptKind,
    Tolerance,
)
from gateway.reconciliation.matching import MatchResult, match

TOL = Tolerance(amount_minor=100, amount_bps=0, days=3)
CONTRACTS = {"AGA": Contract(commission_bps=1_500, remittance="net")}


def pay(id_: int, **overrides: Any) -> AgencyPayment:
    values: dict[str, Any] = {
        "id": id_,
        "agency_id": "AGA",
        "placement_id": "PL-1",
        "ref": f"P{id_}",
        "amount_minor": 10_000,
        "currency": "CNY",
        "day": 100,
    }
    values.update(overrides)
    return AgencyPayment(**values)


def rec(id_: int, **overrides: Any) -> LenderReceipt:
    values: dict[str, Any] = {
        "id": id_,
        "kind": "debtor",
        "placement_id": "PL-1",
        "agency_id": "AGA",
        "ref": None,
        "amount_minor": 10_000,
        "currency": "CNY",
        "day": 101,
        "period": None,
    }
    values.update(overrides)
    return LenderReceipt(**values)


def run(payments: list[AgencyPayment], receipts: list[LenderReceipt]) -> MatchResult:
    return match(payments, receipts, tolerance=TOL, contracts=CONTRACTS)


def pairs(result: MatchResult) -> list[tuple[str, tuple[int, ...], tuple[int, ...]]]:
    return [(m.pass_name, m.lender_ids, m.agency_ids) for m in result.matches]


# exact and keyed


def test_a_receipt_naming_the_payment_with_the_same_amount_is_an_exact_match() -> None:
    result = run([pay(1)], [rec(10, ref="P1")])
    assert pairs(result) == [("exact", (10,), (1,))]
    assert result.matches[0].findings == ()
    assert not result.unmatched_agency and not result.unmatched_lender


def test_a_keyed_pair_within_tolerance_is_still_exact() -> None:
    result = run([pay(1)], [rec(10, ref="P1", amount_minor=9_950)])
    assert pairs(result) == [("exact", (10,), (1,))]


def test_a_keyed_pair_beyond_tolerance_is_matched_with_an_amount_mismatch() -> None:
    result = run([pay(1)], [rec(10, ref="P1", amount_minor=9_000)])
    assert pairs(result) == [("keyed", (10,), (1,))]
    (finding,) = result.matches[0].findings
    assert (finding.kind, finding.delta_minor) == ("amount_mismatch", -1_000)


def test_a_keyed_pair_outside_the_date_window_is_flagged() -> None:
    result = run([pay(1, day=100)], [rec(10, ref="P1", day=110)])
    assert pairs(result) == [("keyed", (10,), (1,))]
    assert [f.kind for f in result.matches[0].findings] == ["date_out_of_window"]


def test_a_keyed_pair_in_another_currency_is_a_currency_mismatch() -> None:
    result = run([pay(1)], [rec(10, ref="P1", currency="USD")])
    assert [f.kind for f in result.matches[0].findings] == ["currency_mismatch"]


def test_two_payments_with_one_key_are_ambiguous_and_nothing_is_consumed() -> None:
    payments = [pay(1, ref="DUP", placement_id="PL-1"), pay(2, ref="DUP", placement_id="PL-2")]
    result = run(payments, [rec(10, ref="DUP")])
    assert result.matches == []
    assert [(a.side, a.id, a.candidates) for a in result.ambiguities] == [("lender", 10, (1, 2))]
    assert [p.id for p in result.unmatched_agency] == [1, 2]


def test_a_receipt_held_by_an_ambiguity_is_not_matched_by_a_later_pass() -> None:
    # The key is ambiguous; the tolerance pass alone would have paired 10 with 1.
    payments = [pay(1, ref="DUP"), pay(2, ref="DUP", placement_id="PL-2")]
    result = run(payments, [rec(10, ref="DUP")])
    assert result.matches == []


# tolerance


def test_an_unkeyed_receipt_matches_the_one_payment_within_tolerance() -> None:
    result = run([pay(1, amount_minor=10_000)], [rec(10, amount_minor=10_080)])
    assert pairs(result) == [("tolerance", (10,), (1,))]


def test_basis_points_allow_more_than_the_absolute_tolerance_on_large_amounts() -> None:
    tol = Tolerance(amount_minor=100, amount_bps=50, days=3)
    payments = [pay(1, amount_minor=1_000_000)]
    near = match(payments, [rec(10, amount_minor=1_004_000)], tolerance=tol, contracts={})
    far = match(payments, [rec(10, amount_minor=1_006_000)], tolerance=tol, contracts={})
    assert pairs(near) == [("tolerance", (10,), (1,))]
    assert far.matches == []


def test_amount_or_date_beyond_tolerance_does_not_match() -> None:
    assert run([pay(1)], [rec(10, amount_minor=10_200)]).matches == []
    assert run([pay(1, day=100)], [rec(10, day=104)]).matches == []


def test_two_candidate_payments_make_the_receipt_ambiguous() -> None:
    result = run([pay(1), pay(2)], [rec(10)])
    assert result.matches == []
    assert [(a.side, a.id, a.candidates) for a in result.ambiguities] == [("lender", 10, (1, 2))]


def test_two_receipts_for_one_payment_make_the_payment_ambiguous() -> None:
    result = run([pay(1)], [rec(10), rec(11)])
    assert result.matches == []
    assert [(a.side, a.id, a.candidates) for a in result.ambiguities] == [("agency", 1, (10, 11))]


def test_records_on_other_placements_are_never_candidates() -> None:
    result = run([pay(1, placement_id="PL-1"), pay(2, placement_id="PL-2")], [rec(10)])
    assert pairs(result) == [("tolerance", (10,), (1,))]


# grouped


def test_a_split_settlement_matches_one_payment_to_several_receipts() -> None:
    receipts = [rec(10, ref="P1", amount_minor=6_000), rec(11, ref="P1", amount_minor=4_000)]
    result = run([pay(1)], receipts)
    assert pairs(result) == [("grouped", (10, 11), (1,))]


def test_a_split_that_does_not_add_up_is_ambiguous() -> None:
    receipts = [rec(10, ref="P1"), rec(11, ref="P1")]
    result = run([pay(1)], receipts)
    assert result.matches == []
    assert [(a.side, a.id) for a in result.ambiguities] == [("agency", 1)]


def remittance(id_: int, amount: int, period: tuple[int, int] = (90, 110)) -> LenderReceipt:
    return rec(id_, kind="remittance", placement_id=None, amount_minor=amount, period=period)


def test_a_net_remittance_matches_the_agencys_payments_of_the_period_less_commission() -> None:
    payments = [pay(1, amount_minor=10_000), pay(2, amount_minor=20_000, placement_id="PL-2")]
    # 30,000 gross, 15 % commission (1,500 + 3,000) = 25,500 net.
    result = run(payments, [remittance(10, 25_500)])
    assert pairs(result) == [("grouped", (10,), (1, 2))]
    assert result.matches[0].expected_minor == 25_500
    assert result.matches[0].findings == ()


def test_a_short_remittance_is_consumed_with_its_delta() -> None:
    payments = [pay(1, amount_minor=10_000), pay(2, amount_minor=20_000, placement_id="PL-2")]
    result = run(payments, [remittance(10, 25_000)])
    (finding,) = result.matches[0].findings
    assert (finding.kind, finding.delta_minor) == ("remittance_short", -500)


def test_a_gross_remittance_is_not_netted() -> None:
    result = match(
        [pay(1, amount_minor=10_000)],
        [remittance(10, 10_000)],
        tolerance=TOL,
        contracts={"AGA": Contract(commission_bps=1_500, remittance="gross")},
    )
    assert result.matches[0].findings == ()


def test_payments_outside_the_period_are_not_in_the_group() -> None:
    payments = [pay(1, day=100), pay(2, day=120, placement_id="PL-2")]
    result = run(payments, [remittance(10, 8_500)])
    assert pairs(result) == [("grouped", (10,), (1,))]
    assert [p.id for p in result.unmatched_agency] == [2]


def test_overlapping_remittances_are_ambiguous() -> None:
    result = run([pay(1)], [remittance(10, 8_500, (90, 110)), remittance(11, 8_500, (105, 130))])
    assert result.matches == []
    assert sorted(a.id for a in result.ambiguities) == [10, 11]


def test_a_remittance_with_nothing_reported_stays_unmatched() -> None:
    result = run([], [remittance(10, 8_500)])
    assert [r.id for r in result.unmatched_lender] == [10]


# properties

AGENCIES = ("AGA", "AGB")
PLACEMENTS = ("PL-1", "PL-2", "PL-3")
REFS = ("R1", "R2", "R3", "R4")
AMOUNTS = (5_000, 5_050, 5_200, 10_000, 10_000, 12_000)


@st.composite
def universe(draw: st.DrawFn) -> tuple[list[AgencyPayment], list[LenderReceipt]]:
    n_p = draw(st.integers(0, 8))
    n_r = draw(st.integers(0, 8))
    payments = [
        AgencyPayment(
            id=i + 1,
            agency_id=draw(st.sampled_from(AGENCIES)),
            placement_id=draw(st.sampled_from(PLACEMENTS)),
            ref=draw(st.sampled_from(REFS)),
            amount_minor=draw(st.sampled_from(AMOUNTS)),
            currency=draw(st.sampled_from(("CNY", "CNY", "USD"))),
            day=draw(st.integers(95, 105)),
        )
        for i in range(n_p)
    ]
    receipts = []
    for i in range(n_r):
        kind: ReceiptKind = draw(st.sampled_from(("debtor", "debtor", "remittance")))
        start = draw(st.integers(90, 105))
        receipts.append(
            LenderReceipt(
                id=100 + i,
                kind=kind,
                placement_id=None if kind == "remittance" else draw(st.sampled_from(PLACEMENTS)),
                agency_id=draw(st.sampled_from(AGENCIES)),
                ref=draw(st.sampled_from((None, *REFS))) if kind == "debtor" else None,
                amount_minor=draw(st.sampled_from((*AMOUNTS, 8_500, 17_000))),
                currency=draw(st.sampled_from(("CNY", "CNY", "USD"))),
                day=draw(st.integers(95, 105)),
                period=(start, start + draw(st.integers(0, 10))) if kind == "remittance" else None,
            )
        )
    return payments, receipts


TOLERANCES = st.builds(
    Tolerance,
    amount_minor=st.sampled_from((0, 50, 100)),
    amount_bps=st.sampled_from((0, 100)),
    days=st.integers(0, 3),
)


@settings(max_examples=300, deadline=None)
@given(universe(), TOLERANCES)
def test_every_record_ends_in_exactly_one_place(
    data: tuple[list[AgencyPayment], list[LenderReceipt]], tol: Tolerance
) -> None:
    payments, receipts = data
    result = match(payments, receipts, tolerance=tol, contracts=CONTRACTS)
    used_p = Counter(i for m in result.matches for i in m.agency_ids)
    used_r = Counter(i for m in result.matches for i in m.lender_ids)
    assert all(n == 1 for n in used_p.values()), "an agency payment was consumed twice"
    assert all(n == 1 for n in used_r.values()), "a receipt was consumed twice"
    assert sorted([*used_p, *(p.id for p in result.unmatched_agency)]) == sorted(
        p.id for p in payments
    )
    assert sorted([*used_r, *(r.id for r in result.unmatched_lender)]) == sorted(
        r.id for r in receipts
    )


@settings(max_examples=300, deadline=None)
@given(universe(), TOLERANCES)
def test_an_ambiguous_record_is_never_matched(
    data: tuple[list[AgencyPayment], list[LenderReceipt]], tol: Tolerance
) -> None:
    payments, receipts = data
    result = match(payments, receipts, tolerance=tol, contracts=CONTRACTS)
    matched_p = {i for m in result.matches for i in m.agency_ids}
    matched_r = {i for m in result.matches for i in m.lender_ids}
    assert not (result.ambiguous_ids("agency") & matched_p)
    assert not (result.ambiguous_ids("lender") & matched_r)


@settings(max_examples=300, deadline=None)
@given(universe(), TOLERANCES, st.randoms(use_true_random=False))
def test_the_outcome_does_not_depend_on_input_order(
    data: tuple[list[AgencyPayment], list[LenderReceipt]], tol: Tolerance, rnd: random.Random
) -> None:
    payments, receipts = data
    first = match(payments, receipts, tolerance=tol, contracts=CONTRACTS)
    shuffled_p, shuffled_r = list(payments), list(receipts)
    rnd.shuffle(shuffled_p)
    rnd.shuffle(shuffled_r)
    assert match(shuffled_p, shuffled_r, tolerance=tol, contracts=CONTRACTS) == first


@settings(max_examples=300, deadline=None)
@given(universe(), TOLERANCES)
def test_matches_respect_their_pass_rules(
    data: tuple[list[AgencyPayment], list[LenderReceipt]], tol: Tolerance
) -> None:
    payments, receipts = data
    by_p = {p.id: p for p in payments}
    by_r = {r.id: r for r in receipts}
    result = match(payments, receipts, tolerance=tol, contracts=CONTRACTS)
    for m in result.matches:
        ps = [by_p[i] for i in m.agency_ids]
        rs = [by_r[i] for i in m.lender_ids]
        if m.pass_name in ("exact", "keyed"):
            assert len(ps) == len(rs) == 1
            assert (rs[0].agency_id, rs[0].ref) == (ps[0].agency_id, ps[0].ref)
            assert (m.pass_name == "exact") == (m.findings == ())
        if m.pass_name in ("exact", "tolerance"):
            assert tol.amount_ok(ps[0].amount_minor, rs[0].amount_minor)
            assert tol.days_ok(ps[0].day, rs[0].day)
            assert ps[0].currency == rs[0].currency
        if m.pass_name == "tolerance":
            assert rs[0].placement_id == ps[0].placement_id
        if m.pass_name == "grouped" and len(rs) == 1 and rs[0].kind == "remittance":
            contract = CONTRACTS.get(rs[0].agency_id or "", Contract())
            gross = sum(p.amount_minor for p in ps)
            net = gross - sum(contract.commission(p.amount_minor) for p in ps)
            assert m.expected_minor == (net if contract.remittance == "net" else gross)
            period = rs[0].period
            assert period is not None
            assert all(period[0] <= p.day <= period[1] for p in ps)
            assert all(p.agency_id == rs[0].agency_id for p in ps)
