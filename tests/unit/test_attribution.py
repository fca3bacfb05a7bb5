"""Attribution of lender receipts to placements (gateway.settlement.attribution)."""

from datetime import UTC, date, datetime, timedelta

from hypothesis import given, strategies as st

from gateway.settlement.attribution import (
    FULL_BPS,
    GraceTerms,
    Receipt,
    Tenure,
    attribute,
    attributed,
    check_shares,
    split,
    unaccounted,
)

T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)


def at(days: float) -> datetime:
    return T0 + timedelta(days=days)


def receipt(day: float, amount: int = 10_000, **overrides: object) -> Receipt:
    values: dict[str, object] = {
        "id": 1,
        "kind": "debtor",
        "case_id": "AC1",
        "amount_minor": amount,
        "currency": "CNY",
        "received_at": at(day),
        "paid_on": at(day).date(),
    }
    values.update(overrides)
    return Receipt(**values)  # type: ignore[arg-type]


OLD = Tenure("PL-AC1-1", "AGA", "CNY", at(0), at(10), "recalled")
NEW = Tenure("PL-AC1-2", "AGB", "CNY", at(12), None, None)


def test_the_placement_holding_the_case_is_credited_in_full() -> None:
    [share] = attribute(receipt(5), [OLD, NEW], {})
    assert (share.placement_id, share.agency_id, share.rule) == ("PL-AC1-1", "AGA", "held")
    assert (share.amount_minor, share.share_bps) == (10_000, FULL_BPS)
    [share] = attribute(receipt(20), [OLD, NEW], {})
    assert (share.agency_id, share.rule) == ("AGB", "held")


def test_a_payment_in_the_old_agencys_grace_window_counts_for_it() -> None:
    grace = {"AGA": GraceTerms(days=7)}
    [share] = attribute(receipt(11), [OLD, NEW], grace)
    assert (share.agency_id, share.rule, share.reason) == ("AGA", "grace_old", None)
    # after the new agency took the case, still the old one's under grace_old
    [share] = attribute(receipt(13), [OLD, NEW], grace)
    assert (share.agency_id, share.rule) == ("AGA", "grace_old")
    # past the window: the new holder's
    [share] = attribute(receipt(18), [OLD, NEW], grace)
    assert (share.agency_id, share.rule) == ("AGB", "held")


def test_a_shared_grace_splits_with_the_new_holder_to_the_cent() -> None:
    grace = {"AGA": GraceTerms(days=7, rule="shared", old_share_bps=3_333)}
    old, new = attribute(receipt(13, amount=1_001), [OLD, NEW], grace)
    assert (old.agency_id, old.rule, old.share_bps) == ("AGA", "grace_shared", 3_333)
    assert (new.agency_id, new.rule, new.share_bps) == ("AGB", "grace_shared", 6_667)
    assert (old.amount_minor, new.amount_minor) == (334, 667)  # 333.6333 rounds half-up
    # nobody holds the case yet: the old agency has it all, and the reason says why
    [only] = attribute(receipt(11, amount=1_001), [OLD, NEW], grace)
    assert (only.agency_id, only.rule, only.amount_minor) == ("AGA", "grace_old", 1_001)
    assert only.reason == "shared grace with nobody holding the case"


def test_unattributable_receipts_are_named_with_the_reason() -> None:
    def reason(r: Receipt, tenures: list[Tenure] | None) -> str | None:
        [share] = attribute(r, tenures, {"AGA": GraceTerms(days=1)})
        assert (share.rule, share.placement_id, share.agency_id) == ("unattributable", None, None)
        return share.reason

    assert reason(receipt(5), None) == "case AC1 is unknown"
    assert reason(receipt(5), []) == "case AC1 was never placed"
    assert reason(receipt(5, case_id=None), None) == "the receipt names no case or placement"
    assert reason(receipt(-1), [OLD]) == "received before case AC1 was first placed"
    assert "past any grace window" in (reason(receipt(12.5), [OLD]) or "")
    assert "currency USD differs" in (reason(receipt(5, currency="USD"), [OLD]) or "")
    assert (reason(receipt(5, kind="remittance"), [OLD]) or "").startswith("remittance:")


def test_a_closed_or_rejected_placement_has_no_grace() -> None:
    closed = Tenure("PL-AC1-1", "AGA", "CNY", at(0), at(10), "closed")
    [share] = attribute(receipt(11), [closed], {"AGA": GraceTerms(days=30)})
    assert share.rule == "unattributable"


def test_the_grace_counts_the_lenders_calendar_days() -> None:
    # ended late on day 10 in the lender's zone; the receipt two calendar days later is in
    ended_on = {"PL-AC1-1": date(2026, 3, 11)}
    r = receipt(12.9)
    [share] = attribute(r, [OLD, NEW], {"AGA": GraceTerms(days=2)}, ended_on=ended_on)
    assert share.rule == "grace_old"


def test_attributed_sums_each_rule() -> None:
    shares = [
        *attribute(receipt(5), [OLD], {}),
        *attribute(receipt(40, amount=7, id=2), [OLD], {}),
    ]
    assert attributed(shares) == {"held": 10_000, "unattributable": 7}


# properties

tenure_lists = st.lists(
    st.tuples(
        st.integers(0, 60),  # start day
        st.one_of(st.none(), st.integers(1, 30)),  # length, None: still held
        st.sampled_from(["recalled", "returned", "closed", "rejected"]),
        st.sampled_from(["AGA", "AGB", "AGC"]),
        st.sampled_from(["CNY", "CNY", "CNY", "USD"]),
    ),
    max_size=4,
)
grace_maps = st.dictionaries(
    st.sampled_from(["AGA", "AGB", "AGC"]),
    st.builds(
        GraceTerms,
        days=st.integers(0, 15),
        rule=st.sampled_from(["old", "shared"]),
        old_share_bps=st.integers(0, FULL_BPS),
    ),
)


def build(spec: list[tuple[int, int | None, str, str, str]]) -> list[Tenure]:
    out = []
    for n, (start, length, how, agency, currency) in enumerate(spec):
        end = None if length is None else at(start + length)
        out.append(
            Tenure(f"PL-{n}", agency, currency, at(start), end, None if end is None else how)
        )
    return out


@given(
    tenure_lists,
    grace_maps,
    st.floats(-5, 120, allow_nan=False),
    st.integers(1, 10**12),
    st.sampled_from(["debtor", "debtor", "remittance"]),
)
def test_every_receipt_is_attributed_exactly_or_named(
    spec: list[tuple[int, int | None, str, str, str]],
    grace: dict[str, GraceTerms],
    day: float,
    amount: int,
    kind: str,
) -> None:
    tenures = build(spec)
    r = receipt(day, amount=amount, kind=kind)
    shares = attribute(r, tenures, grace)
    check_shares(r, shares)  # the amounts and the shares add up exactly
    assert all(s.receipt_id == r.id and s.currency == r.currency for s in shares)
    assert all(s.amount_minor >= 0 for s in shares)
    if shares[0].rule == "unattributable":
        assert len(shares) == 1 and shares[0].reason and shares[0].placement_id is None
    else:
        assert all(s.placement_id is not None and s.agency_id is not None for s in shares)
        credited = {t.placement_id: t for t in tenures}
        assert all(credited[s.placement_id or ""].currency == r.currency for s in shares)
    holders = [t for t in tenures if t.holds(r.received_at)]
    if kind == "debtor" and not holders and shares[0].rule != "unattributable":
        # between placements (or during a hold, which recalls): only a grace credits anyone
        assert shares[0].rule == "grace_old"
    if kind == "remittance":
        assert shares[0].rule == "unattributable"


@given(st.integers(0, 10**15), st.integers(0, FULL_BPS))
def test_a_split_adds_up_to_the_cent(amount: int, bps: int) -> None:
    old, new = split(amount, bps)
    assert old + new == amount and old >= 0 and new >= 0
    assert abs(old * FULL_BPS - amount * bps) * 2 <= FULL_BPS


def test_unaccounted_names_every_receipt_not_attributed_exactly() -> None:
    receipts = {1: 1_000, 2: 500, 3: 700}
    rows = [(1, 400), (1, 600), (2, 499), (9, 5)]
    assert unaccounted(receipts, rows) == {
        2: "rows add up to 499, the receipt is 500",
        3: "not attributed",
        9: "rows of a receipt that is not in the feed",
    }
    assert unaccounted({1: 1_000}, [(1, 1_000)]) == {}
