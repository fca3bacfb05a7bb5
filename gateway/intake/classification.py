"""Claim classification: days past due and balance put each case in a bucket (pure)."""

from schemas.packets import Bucket

DPD_BUCKETS: tuple[tuple[int, Bucket], ...] = (
    (30, "M1"),
    (60, "M2"),
    (90, "M3"),
    (180, "M4-6"),
)


def bucket_for(
    dpd: int, balance_minor: int, *, legal_min_dpd: int, legal_min_balance_minor: int
) -> Bucket:
    """Return the bucket of a case.

    A case goes to ``LEGAL`` once it is past ``legal_min_dpd`` days, or past 180 days with a
    balance of at least ``legal_min_balance_minor``: large aged debts are worth a lawsuit.
    """
    if dpd >= legal_min_dpd or (dpd > 180 and balance_minor >= legal_min_balance_minor):
        return "LEGAL"
    for upper, bucket in DPD_BUCKETS:
        if dpd <= upper:
            return bucket
    return "M6+"


__all__ = ["DPD_BUCKETS", "bucket_for"]
