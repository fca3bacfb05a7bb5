"""Claim classification: the bucket boundaries, including the legal track."""

import pytest
from hypothesis import given, strategies as st

from gateway.config.settings import AllocationSection
from gateway.intake.classification import bucket_for

LEGAL_DPD = 360
LEGAL_BALANCE = 5_000_000


def bucket(dpd: int, balance_minor: int = 100_000) -> str:
    return bucket_for(
        dpd, balance_minor, legal_min_dpd=LEGAL_DPD, legal_min_balance_minor=LEGAL_BALANCE
    )


@pytest.mark.parametrize(
    ("dpd", "expected"),
    [
        (0, "M1"),
        (1, "M1"),
        (30, "M1"),
        (31, "M2"),
        (60, "M2"),
        (61, "M3"),
        (90, "M3"),
        (91, "M4-6"),
        (180, "M4-6"),
        (181, "M6+"),
        (359, "M6+"),
        (360, "LEGAL"),
        (3650, "LEGAL"),
    ],
)
def test_days_past_due_boundaries(dpd: int, expected: str) -> None:
    assert bucket(dpd) == expected


@pytest.mark.parametrize(
    ("dpd", "balance", "expected"),
    [
        (181, LEGAL_BALANCE, "LEGAL"),
        (181, LEGAL_BALANCE - 1, "M6+"),
        (180, LEGAL_BALANCE * 10, "M4-6"),
        (90, LEGAL_BALANCE * 10, "M3"),
    ],
    ids=["large-aged", "one-fen-short", "not-yet-past-180", "young-but-large"],
)
def test_large_aged_debts_go_legal_only_past_180_days(
    dpd: int, balance: int, expected: str
) -> None:
    assert bucket(dpd, balance) == expected


def test_thresholds_come_from_config() -> None:
    config = AllocationSection(legal_min_dpd=200, legal_min_balance_minor=1)
    assert (
        bucket_for(
            200,
            0,
            legal_min_dpd=config.legal_min_dpd,
            legal_min_balance_minor=config.legal_min_balance_minor,
        )
        == "LEGAL"
    )
    assert (
        bucket_for(
            199,
            0,
            legal_min_dpd=config.legal_min_dpd,
            legal_min_balance_minor=config.legal_min_balance_minor,
        )
        == "M6+"
    )


ORDER = ["M1", "M2", "M3", "M4-6", "M6+", "LEGAL"]


@given(dpd=st.integers(0, 3650), balance=st.integers(0, 10**9), extra=st.integers(1, 400))
def test_property_older_debt_never_lands_in_an_earlier_bucket(
    dpd: int, balance: int, extra: int
) -> None:
    assert ORDER.index(bucket(dpd + extra, balance)) >= ORDER.index(bucket(dpd, balance))


def test_bucket_rules_come_from_config() -> None:
    config = AllocationSection(
        buckets=(
            {"name": "M1", "min_dpd": 0, "max_dpd": 15},
            {"name": "M2", "min_dpd": 16, "max_dpd": 90, "products": ["cash-loan"]},
            {"name": "M3", "min_dpd": 16, "max_dpd": 90},
            {"name": "M6+", "min_dpd": 91},
        )
    )

    def classify(dpd: int, product: str) -> str:
        return bucket_for(
            dpd,
            100,
            legal_min_dpd=config.legal_min_dpd,
            legal_min_balance_minor=config.legal_min_balance_minor,
            rules=config.buckets,
            product=product,
        )

    assert classify(15, "card") == "M1"
    assert classify(16, "cash-loan") == "M2"
    assert classify(16, "card") == "M3"
    assert classify(200, "card") == "M6+"


def test_bucket_rules_must_cover_every_day_count() -> None:
    with pytest.raises(ValueError, match="dpd 31 has no bucket"):
        AllocationSection(
            buckets=(
                {"name": "M1", "min_dpd": 0, "max_dpd": 30},
                {"name": "M2", "min_dpd": 31, "max_dpd": 60, "grades": ["A"]},
                {"name": "M3", "min_dpd": 61},
            )
        )


def test_legal_tier_must_be_a_tier() -> None:
    with pytest.raises(ValueError, match="legal_tier 'court'"):
        AllocationSection(tiers=("primary", "legal"), legal_tier="court")
    with pytest.raises(ValueError, match="only once"):
        AllocationSection(tiers=("primary", "primary"), legal_tier="")
