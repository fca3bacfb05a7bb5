"""Personal data: encrypted at rest under a rotating key ring (``pii``), and deleted by the
agency when a placement ends, with proof (``deletion``: requests, confirmations, overdue
ones raised)."""

from typing import TYPE_CHECKING

from gateway.exports import lazy_exports

if TYPE_CHECKING:
    from gateway.privacy.deletion import SweepResult, request_deletions
    from gateway.privacy.pii import PiiKeyRing

__all__ = ["PiiKeyRing", "SweepResult", "request_deletions"]

__getattr__ = lazy_exports(
    __name__,
    {
        "PiiKeyRing": "gateway.privacy.pii",
        "SweepResult": "gateway.privacy.deletion",
        "request_deletions": "gateway.privacy.deletion",
    },
)
