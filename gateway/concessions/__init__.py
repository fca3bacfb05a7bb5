"""Waivers (减免), instalment plans (分期) and pauses of collection (停催) that agencies ask for
and the lender decides within approval limits.

``rules`` is the pure core (the request's transition table, terms, role limits, four eyes, the
instalment schedule, what approved terms allow); ``packets`` renders ``request.decided``;
``requests`` keeps the ``concession_requests`` table (stored on arrival, with the checks of
promises and settled closes against approved terms); ``decisions`` is a person's approval or
rejection and its consequences (hold, instalment expectations, the packet to the agency);
``demo`` drives a waiver approved and one rejected for the demo.
"""

from typing import TYPE_CHECKING

from gateway.exports import lazy_exports

if TYPE_CHECKING:
    from gateway.concessions.decisions import ConcessionService
    from gateway.concessions.requests import RequestRecord, get_request, list_requests
    from gateway.concessions.rules import Terms

__all__ = ["ConcessionService", "RequestRecord", "Terms", "get_request", "list_requests"]

__getattr__ = lazy_exports(
    __name__,
    {
        "ConcessionService": "gateway.concessions.decisions",
        "RequestRecord": "gateway.concessions.requests",
        "get_request": "gateway.concessions.requests",
        "list_requests": "gateway.concessions.requests",
        "Terms": "gateway.concessions.rules",
    },
)
