"""Personal data: encrypted at rest under a rotating key ring (``pii``), found by a keyed
hash and never by the id in clear (``debtor_keys``: the console's search by debtor id), and
deleted by the agency when a placement ends, with proof (``deletion``: requests,
confirmations, overdue ones raised)."""

from typing import TYPE_CHECKING

from gateway.exports import lazy_exports

if TYPE_CHECKING:
    from gateway.privacy.debtor_keys import KeyingResult, key_debtors
    from gateway.privacy.deletion import SweepResult, request_deletions
    from gateway.privacy.pii import PiiKeyRing

__all__ = ["KeyingResult", "PiiKeyRing", "SweepResult", "key_debtors", "request_deletions"]

__getattr__ = lazy_exports(
    __name__,
    {
        "KeyingResult": "gateway.privacy.debtor_keys",
        "PiiKeyRing": "gateway.privacy.pii",
        "key_debtors": "gateway.privacy.debtor_keys",
        "SweepResult": "gateway.privacy.deletion",
        "request_deletions": "gateway.privacy.deletion",
    },
)
