"""The documents a referral mail carries: each placement's document pack, attached or linked.

The packets list their placement's documents (``data.documents[]`` of ``placement.created``
and of the ``placement.amended`` that renews a placement); the mail carries exactly those,
looked up in the placements' packs (gateway.documents) so that the firm gets what the
evidence log attests, and never a document of another placement of the same case.

* Every document is listed in the body with its size and SHA-256.
* Attached, when the firm's config attaches documents and the mail's documents together are
  at most ``max_attachment_bytes``; each is read checked against its recorded size and
  SHA-256 (a changed document stops the mail: permanent error naming the case and file).
* Otherwise each gets a signed link (adapters.email.links) valid for ``valid_days``, when
  ``[email.links]`` is configured, or is listed only.
"""

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.email.links import LinkTarget, link_url
from adapters.email.render import CaseDocument
from gateway.config.email import EmailSection
from gateway.documents.pack import PackDocument, document_bytes, pack_of
from gateway.documents.store import DocumentStore
from gateway.errors import DocumentError
from gateway.ports import DocumentSource

DAY = 86_400


def listed_document_ids(payload: bytes) -> list[int]:
    """The ``document_id`` of each document a packet lists (none when it lists none)."""
    if b'"documents"' not in payload:
        return []
    try:
        data = json.loads(payload).get("data")
    except (ValueError, AttributeError):
        return []
    documents = data.get("documents") if isinstance(data, dict) else None
    if not isinstance(documents, list):
        return []
    return [
        d["document_id"]
        for d in documents
        if isinstance(d, dict) and type(d.get("document_id")) is int
    ]


@dataclass(frozen=True, slots=True)
class LinkKey:
    """How the firm's links are made: its ``[email.links]`` section, key resolved."""

    base_url: str
    key: bytes
    valid_days: int


def link_expiry(now: float, valid_days: int) -> int:
    """Links expire at the end of a UTC day, so a resend the same day lists the same links."""
    return (int(now) // DAY + valid_days + 1) * DAY


async def mail_documents(
    conn: AsyncConnection,
    listed: Mapping[str, Sequence[int]],
    *,
    agency_id: str,
    email: EmailSection,
    store: DocumentSource,
    links: LinkKey | None,
    now: float,
) -> dict[str, tuple[CaseDocument, ...]]:
    """Placement → the documents its mail entry lists (see the module docstring).
    DocumentError when a packet lists a document its pack no longer holds, or a document
    changed since it was recorded."""
    wanted = {pid: ids for pid, ids in listed.items() if ids}
    if not wanted:
        return {}
    packs = await pack_of(conn, sorted(wanted))
    found: dict[str, list[PackDocument]] = {}
    for placement_id, ids in wanted.items():
        by_id = {doc.id: doc for doc in packs.get(placement_id, [])}
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise DocumentError(
                f"placement {placement_id}: its packet lists document {missing[0]}, which is "
                "not in its document pack; resend the placement"
            )
        found[placement_id] = [by_id[i] for i in ids]
    total = sum(doc.size for docs in found.values() for doc in docs)
    attach = email.attach_documents and total <= email.max_attachment_bytes
    expires = link_expiry(now, links.valid_days) if links is not None else 0
    until = datetime.fromtimestamp(expires - 1, UTC).date().isoformat()
    result: dict[str, tuple[CaseDocument, ...]] = {}
    for placement_id, docs in found.items():
        entries = []
        for doc in docs:
            data: bytes | None = None
            link: str | None = None
            if attach:
                # The store the composition root hands is gateway.documents'; the port
                # names only the part the channels use.
                data = await document_bytes(conn, doc, store=cast(DocumentStore, store))
            elif links is not None:
                target = LinkTarget(agency_id, placement_id, doc.id, expires)
                link = link_url(links.base_url, links.key, target)
            entries.append(
                CaseDocument(
                    doc.kind,
                    doc.name,
                    doc.sha256,
                    doc.size,
                    data,
                    link,
                    until if link is not None else None,
                )
            )
        result[placement_id] = tuple(entries)
    return result


__all__ = ["LinkKey", "link_expiry", "listed_document_ids", "mail_documents"]
