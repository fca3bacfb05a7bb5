"""Claim classification: days past due, balance, grade and product put each case in a bucket
(pure).

The legal track comes first: a case goes to ``LEGAL`` once it is past ``legal_min_dpd`` days,
or past 180 days with a balance of at least ``legal_min_balance_minor`` (large aged debts are
worth a lawsuit). Below it, the first of ``[[allocation.buckets]]`` that matches decides; the
configuration guarantees that the rules without balance, grade or product conditions cover
every day count, so every case has a bucket.
"""

from collections.abc import Sequence

from gateway.config.settings import DEFAULT_BUCKETS, BucketRule


def matches(rule: BucketRule, dpd: int, balance_minor: int, grade: str, product: str) -> bool:
    return (
        rule.min_dpd <= dpd
        and (rule.max_dpd is None or dpd <= rule.max_dpd)
        and balance_minor >= rule.min_balance_minor
        and (rule.max_balance_minor is None or balance_minor <= rule.max_balance_minor)
        and (not rule.grades or grade in rule.grades)
        and (not rule.products or product in rule.products)
    )


def bucket_for(
    dpd: int,
    balance_minor: int,
    *,
    legal_min_dpd: int,
    legal_min_balance_minor: int,
    rules: Sequence[BucketRule] = DEFAULT_BUCKETS,
    grade: str = "",
    product: str = "",
) -> str:
    """Return the bucket of a case (see the module docstring)."""
    if dpd >= legal_min_dpd or (dpd > 180 and balance_minor >= legal_min_balance_minor):
        return "LEGAL"
    for rule in rules:
        if matches(rule, dpd, balance_minor, grade, product):
            return rule.name
    return rules[-1].name  # unreachable with validated rules; the last one is the oldest


__all__ = ["bucket_for", "matches"]
