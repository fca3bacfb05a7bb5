"""Signed links to a placement's documents, for mail too large to carry them (pure).

A link names one document of one placement for one firm and when it expires::

    <base_url>/v1/document-links/<agency_id>/<document_id>?placement=<id>&expires=<unix>&sig=<hex>

``sig`` is HMAC-SHA256 over ``agency_id``, ``placement_id``, ``document_id`` and ``expires``
(newline-separated) with the firm's link key (``[email.links] key``), so a link cannot be
turned to another document, placement or firm, or kept past its expiry. The link is the
firm's credential: whoever holds the mail can fetch the document until it expires, and only
while the placement is open with the firm (adapters.email.link_service checks that at every
fetch, so a recalled or expired placement's links stop working at once).
"""

import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import quote, urlencode

LINK_ROUTE = "/v1/document-links/{agency_id}/{document_id}"
"""The route the gateway serves links on (gateway.server)."""

MIN_KEY_BYTES = 32


@dataclass(frozen=True, slots=True)
class LinkTarget:
    """What a link gives access to, and until when (Unix seconds)."""

    agency_id: str
    placement_id: str
    document_id: int
    expires: int


def signature(key: bytes, target: LinkTarget) -> str:
    message = "\n".join(
        (target.agency_id, target.placement_id, str(target.document_id), str(target.expires))
    )
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def link_url(base_url: str, key: bytes, target: LinkTarget) -> str:
    """The link the mail lists for ``target``."""
    path = LINK_ROUTE.format(
        agency_id=quote(target.agency_id, safe=""), document_id=target.document_id
    )
    query = urlencode(
        {
            "placement": target.placement_id,
            "expires": target.expires,
            "sig": signature(key, target),
        }
    )
    return f"{base_url.rstrip('/')}{path}?{query}"


class LinkRefused(ValueError):
    """A link that does not open: ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def check_link(key: bytes, target: LinkTarget, sig: str, *, now: float) -> None:
    """LinkRefused(403) unless ``sig`` is the signature of ``target``; LinkRefused(410) once
    it has expired (checked after the signature, so an altered expiry is a bad signature)."""
    if not hmac.compare_digest(signature(key, target), sig.lower()):
        raise LinkRefused(403, "the link's signature does not match; use the link as mailed")
    if now >= target.expires:
        raise LinkRefused(410, "the link has expired; ask the lender to send the documents again")


__all__ = [
    "LINK_ROUTE",
    "MIN_KEY_BYTES",
    "LinkRefused",
    "LinkTarget",
    "check_link",
    "link_url",
    "signature",
]
