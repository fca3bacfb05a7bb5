"""A webhook agency fetches the documents of its settlement statements (the XLSX and the
signed PDF the ``settlement.statement`` packet lists), by the same rules as a placement's
documents (gateway.documents.fetch):

1. Verify before parsing: the Standard Webhooks signature over the raw body, with the
   agency's inbound keys and tolerance, before a byte is parsed.
2. Only the agency's own statements: a statement of another agency, an unknown one or a
   kind it does not have is answered 404 alike, so nothing reveals whether it exists.
3. The bytes are the stored ones, checked against their recorded SHA-256 before they leave
   (503 and logged for the lender when they differ).
4. Every request after the agency is known is recorded in ``document_fetches`` (outcome,
   status, request id) in its own small transaction, with ``placement_id`` set to the
   statement's outbox key ``statement:<id>`` and ``document_id`` to the
   ``settlement_documents`` row: the evidence that the agency fetched what it was sent.

Statement documents are small (one month's lines), so they are answered whole, not streamed.
"""

import base64
import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import sqlalchemy as sa
from pydantic import ValidationError

from gateway.clock import to_datetime
from gateway.documents.fetch import (
    MAX_REQUEST_BYTES,
    OUTCOMES,
    content_disposition,
    verified_body,
)
from gateway.errors import (
    DocumentNotFound,
    DocumentUnavailable,
    InboundError,
    MalformedPayload,
    SchemaViolation,
    UnknownAgency,
)
from gateway.inbound.service import InboundTrust
from gateway.ports import Clock
from gateway.settlement.packets import DOCUMENTS_ROUTE, outbox_key
from gateway.store.database import Database
from gateway.store.document_tables import DocumentFetch
from gateway.store.statement_tables import SettlementDocument, SettlementStatement
from schemas.documents import StatementDocumentFetchRequest

log = logging.getLogger(__name__)

FETCHES = DocumentFetch.__table__  # type: ignore[attr-defined]
DOCUMENTS = SettlementDocument.__table__  # type: ignore[attr-defined]
STATEMENTS = SettlementStatement.__table__  # type: ignore[attr-defined]
ROUTE = DOCUMENTS_ROUTE
MEDIA_TYPES = {
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pdf": "application/pdf",
}


def fetch_path(agency_id: str) -> str:
    """The path the packet names for its documents (relative to the agency API's base URL)."""
    return ROUTE.format(agency_id=agency_id)


@dataclass(frozen=True, slots=True)
class StatementDocumentBody:
    """A statement document ready to send, with the headers that describe it."""

    statement_id: int
    kind: str
    name: str
    sha256: str
    body: bytes
    request_id: str

    def headers(self) -> dict[str, str]:
        digest = base64.b64encode(bytes.fromhex(self.sha256)).decode()
        return {
            "Content-Type": MEDIA_TYPES[self.kind],
            "Content-Disposition": content_disposition(self.name),
            "Repr-Digest": f"sha-256=:{digest}:",
            "Digest": f"sha-256={digest}",
            "Cache-Control": "no-store",
            "X-Request-Id": self.request_id,
        }


def _parse(body: bytes) -> StatementDocumentFetchRequest:
    try:
        return StatementDocumentFetchRequest.model_validate_json(body, strict=True)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        if first["type"] == "json_invalid":
            raise MalformedPayload(f"body is not valid JSON: {first['msg']}") from None
        loc = ".".join(str(p) for p in first["loc"]) or "body"
        raise SchemaViolation(
            f'{loc}: {first["msg"]}; send {{"statement_id": ..., "kind": "xlsx" or "pdf"}}',
            errors=[{"loc": loc, "msg": first["msg"]}],
        ) from None


class StatementDocumentFetch:
    """Serves statement documents to webhook agencies (see the module docstring)."""

    def __init__(self, *, db: Database, trust: Mapping[str, InboundTrust], clock: Clock) -> None:
        self._db = db
        self._trust = trust
        self._clock = clock
        self.max_body_bytes = MAX_REQUEST_BYTES

    def knows(self, agency_id: str) -> bool:
        return agency_id in self._trust

    async def open(
        self,
        agency_id: str,
        headers: Iterable[tuple[str, str]],
        body: bytes | None,
        *,
        request_id: str,
    ) -> StatementDocumentBody:
        """Verify, authorise and read the document; InboundError (recorded) when refused.
        ``body`` None: it was over the limit and left unread."""
        trust = self._trust.get(agency_id)
        if trust is None:
            raise UnknownAgency(f"no agency {agency_id!r} fetches documents from this gateway")
        request: StatementDocumentFetchRequest | None = None
        document_id: int | None = None
        try:
            checked = verified_body(
                trust, headers, body, now=int(self._clock.now()), max_bytes=self.max_body_bytes
            )
            request = _parse(checked)
            document_id, found = await self._read(agency_id, request, request_id)
        except InboundError as exc:
            await self._record(
                agency_id,
                request,
                document_id,
                outcome=OUTCOMES.get(type(exc), "invalid"),
                status=exc.status,
                request_id=request_id,
            )
            raise
        await self._record(
            agency_id,
            request,
            document_id,
            outcome="served",
            status=200,
            request_id=request_id,
            size=len(found.body),
        )
        return found

    async def _read(
        self, agency_id: str, request: StatementDocumentFetchRequest, request_id: str
    ) -> tuple[int | None, StatementDocumentBody]:
        async with self._db.snapshot() as conn:
            row = (
                await conn.execute(
                    sa.select(
                        DOCUMENTS.c.id, DOCUMENTS.c.name, DOCUMENTS.c.sha256, DOCUMENTS.c.body
                    )
                    .join(STATEMENTS, STATEMENTS.c.id == DOCUMENTS.c.statement_id)
                    .where(
                        DOCUMENTS.c.statement_id == request.statement_id,
                        DOCUMENTS.c.kind == request.kind,
                        STATEMENTS.c.agency_id == agency_id,
                    )
                )
            ).first()
        if row is None:
            raise DocumentNotFound(
                f"no {request.kind} document of a settlement statement {request.statement_id} "
                f"of {agency_id}"
            )
        body = bytes(row.body)
        if hashlib.sha256(body).hexdigest() != row.sha256:
            # The lender's problem, not the agency's: logged in full, answered briefly.
            log.error(
                "statement document fetch %s by %s: statement %s %s does not match its "
                "recorded SHA-256",
                request_id,
                agency_id,
                request.statement_id,
                request.kind,
            )
            raise DocumentUnavailable()
        found = StatementDocumentBody(
            request.statement_id, request.kind, str(row.name), str(row.sha256), body, request_id
        )
        return int(row.id), found

    async def _record(
        self,
        agency_id: str,
        request: StatementDocumentFetchRequest | None,
        document_id: int | None,
        *,
        outcome: str,
        status: int,
        request_id: str,
        size: int | None = None,
    ) -> None:
        async with self._db.transaction() as conn:
            await conn.execute(
                FETCHES.insert().values(
                    agency_id=agency_id,
                    placement_id=None if request is None else outbox_key(request.statement_id),
                    document_id=document_id,
                    outcome=outcome,
                    status=status,
                    size=size,
                    request_id=request_id,
                    at=to_datetime(self._clock.now()),
                )
            )


__all__ = ["ROUTE", "StatementDocumentBody", "StatementDocumentFetch", "fetch_path"]
