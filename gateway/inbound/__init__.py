"""Inbound: what agencies send back, verified, stored raw before any answer, deduplicated.

``service`` takes a signed agency event (any channel's: webhooks arrive at the HTTP server,
result files and replies are handed over by their adapters), verifies it before parsing and
group-commits it (``store``) with its evidence leaf; refusals are RFC 9457 problems
(``problems``). ``sheets`` reads events from sheets (CSV, XLSX, JSON, the reply form): the
reply-sheet contract shared by the email channel and ``events import``.
"""

from typing import TYPE_CHECKING

from gateway.exports import lazy_exports

if TYPE_CHECKING:
    from gateway.inbound.service import InboundService, InboundTrust

__all__ = ["InboundService", "InboundTrust"]

__getattr__ = lazy_exports(
    __name__,
    {
        "InboundService": "gateway.inbound.service",
        "InboundTrust": "gateway.inbound.service",
    },
)
