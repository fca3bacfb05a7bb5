"""The document fetch request: what a webhook agency posts to get one document of a
placement's pack (``POST /v1/agencies/{agency_id}/documents``, signed like its events).

The answer is the document's bytes, with ``Repr-Digest: sha-256=:<base64>:`` (RFC 9530) to
check against the ``sha256`` of its descriptor in the packet (schemas.packets).
"""

from typing import Literal

from pydantic import Field

from schemas.base import Identifier, StrictModel


class DocumentFetchRequest(StrictModel):
    """Which document to fetch: its ``document_id`` in the placement's ``documents``."""

    placement_id: Identifier
    document_id: int = Field(ge=1, le=2**63 - 1)


class StatementDocumentFetchRequest(StrictModel):
    """Which document of a settlement statement to fetch
    (``POST /v1/agencies/{agency_id}/settlement-documents``, signed like events): the
    ``statement_id`` of the ``settlement.statement`` packet and the document's ``kind``."""

    statement_id: int = Field(ge=1, le=2**63 - 1)
    kind: Literal["xlsx", "pdf"]


__all__ = ["DocumentFetchRequest", "StatementDocumentFetchRequest"]
