"""Collector verification: the public page and API where a borrower (or anyone) checks that a
collector's authorisation letter is real and current, and the log of every check.

``check`` decides the answer (pure: letter state, dates, digits in constant time); ``texts``
holds the page's words in Chinese and English; ``service`` rate limits, looks up, decides and
logs in one transaction; ``web`` serves ``/verify`` and ``/v1/verify``; ``report`` counts
failed checks for the console and ``/metrics``.
"""

from typing import TYPE_CHECKING

from gateway.exports import lazy_exports

if TYPE_CHECKING:
    from gateway.verification.service import CheckAnswer, VerificationService
    from gateway.verification.web import add_verification

__all__ = ["CheckAnswer", "VerificationService", "add_verification"]

__getattr__ = lazy_exports(
    __name__,
    {
        "CheckAnswer": "gateway.verification.service",
        "VerificationService": "gateway.verification.service",
        "add_verification": "gateway.verification.web",
    },
)
