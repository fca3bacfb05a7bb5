"""The agency-scoped document fetch: a webhook agency asks for one document of a placement's
pack, signed exactly like its events, and gets the bytes while the placement is open.

Rules
-----
1. Verify before parsing: the signature (Standard Webhooks, the agency's inbound keys and
   tolerance) is checked over the raw body before a byte of it is parsed.
2. Only the agency's own placements: a placement another agency holds (or none) is answered
   404 exactly like a missing one, so nothing reveals whether it exists.
3. Only while the placement is open (gateway.lifecycle.OPEN_PLACEMENT_STATES): a recalled,
   expired, returned, closed or rejected placement is answered 410 saying how it ended.
4. Only documents of the placement's current pack (gateway.documents.pack); anything else
   is 404.
5. Bytes are checked against the recorded size and SHA-256 before the first byte leaves
   (gateway.documents.pack.document_stream); a stored copy that fails is answered 503 and
   logged for the lender.
6. Every request after the agency is known is recorded in ``document_fetches`` (outcome,
   status, request id), served or refused, in its own small transaction.

The handler in gateway.server stays thin: it reads the body within the size limit, calls
``open``, and streams what it gets back.
"""

import base64
import logging
import urllib.parse
from collections.abc import AsyncGenerator, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from pydantic import ValidationError

from gateway.clock import to_datetime
from gateway.documents.pack import PLACEMENTS, PackDocument, document_stream, pack_of
from gateway.documents.store import DocumentStore
from gateway.errors import (
    DocumentChanged,
    DocumentError,
    DocumentGone,
    DocumentNotFound,
    DocumentUnavailable,
    InboundError,
    MalformedPayload,
    MissingHeaders,
    PayloadTooLarge,
    SchemaViolation,
    SignatureInvalid,
    TimestampOutOfTolerance,
    UnknownAgency,
)
from gateway.inbound.service import InboundTrust
from gateway.lifecycle import OPEN_PLACEMENT_STATES
from gateway.ports import Clock
from gateway.signing import read_headers, verify
from gateway.store.database import Database
from gateway.store.document_tables import DocumentFetch
from schemas.documents import DocumentFetchRequest

log = logging.getLogger(__name__)

FETCHES = DocumentFetch.__table__  # type: ignore[attr-defined]
MAX_REQUEST_BYTES = 4096
"""A fetch request is two ids; anything larger is refused unread."""

OUTCOMES: dict[type[InboundError], str] = {
    DocumentNotFound: "not_found",
    DocumentGone: "gone",
    DocumentUnavailable: "unavailable",
    SignatureInvalid: "unauthorised",
    TimestampOutOfTolerance: "unauthorised",
    MissingHeaders: "unauthorised",
    PayloadTooLarge: "invalid",
    MalformedPayload: "invalid",
    SchemaViolation: "invalid",
}
"""What ``document_fetches.outcome`` records for each refusal (anything else: ``invalid``)."""


def verified_body(
    trust: InboundTrust,
    headers: Iterable[tuple[str, str]],
    body: bytes | None,
    *,
    now: int,
    max_bytes: int,
) -> bytes:
    """A fetch request's body once its size and Standard Webhooks signature check out (rule
    1: nothing is parsed before); ``body`` None means it was over the limit and left unread."""
    if body is None or len(body) > max_bytes:
        raise PayloadTooLarge(f"a document request is at most {max_bytes} bytes")
    verify(
        read_headers(list(headers)), body, trust.keys, now=now, tolerance=trust.tolerance_seconds
    )
    return body


_ENDED: dict[str, str] = {
    "recalled": "was recalled",
    "returned": "was returned",
    "closed": "was closed",
    "rejected": "was rejected",
}


@dataclass(frozen=True, slots=True)
class Fetched:
    """A document ready to stream, with the headers that describe it."""

    placement_id: str
    document: PackDocument
    body: AsyncGenerator[bytes, None]
    request_id: str

    def headers(self) -> dict[str, str]:
        digest = base64.b64encode(bytes.fromhex(self.document.sha256)).decode()
        return {
            "Content-Type": self.document.media_type,
            "Content-Disposition": content_disposition(self.document.name),
            "Repr-Digest": f"sha-256=:{digest}:",
            "Digest": f"sha-256={digest}",
            "Cache-Control": "no-store",
            "X-Request-Id": self.request_id,
        }


def content_disposition(name: str) -> str:
    """``attachment`` with an ASCII fallback name and the UTF-8 name (RFC 6266, 8187)."""
    fallback = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\' else "_" for ch in name)
    quoted = urllib.parse.quote(name, safe="")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quoted}"


def _parse(body: bytes) -> DocumentFetchRequest:
    try:
        return DocumentFetchRequest.model_validate_json(body, strict=True)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        if first["type"] == "json_invalid":
            raise MalformedPayload(f"body is not valid JSON: {first['msg']}") from None
        loc = ".".join(str(p) for p in first["loc"]) or "body"
        raise SchemaViolation(
            f'{loc}: {first["msg"]}; send {{"placement_id": ..., "document_id": ...}}',
            errors=[{"loc": loc, "msg": first["msg"]}],
        ) from None


class DocumentFetchService:
    """Serves documents to webhook agencies (see the module docstring).

    Args:
        db: the database.
        trust: per-agency keys and tolerance (the same as for their events).
        store: the lender's document store.
        clock: time source.
    """

    def __init__(
        self,
        *,
        db: Database,
        trust: Mapping[str, InboundTrust],
        store: DocumentStore,
        clock: Clock,
    ) -> None:
        self._db = db
        self._trust = trust
        self._store = store
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
    ) -> Fetched:
        """Verify, authorise and open the document; InboundError (recorded) when refused.
        ``body`` None: it was over the limit and left unread."""
        trust = self._trust.get(agency_id)
        if trust is None:
            raise UnknownAgency(f"no agency {agency_id!r} fetches documents from this gateway")
        request: DocumentFetchRequest | None = None
        try:
            checked = verified_body(
                trust, headers, body, now=int(self._clock.now()), max_bytes=self.max_body_bytes
            )
            request = _parse(checked)
            fetched = await self._open(agency_id, request, request_id)
        except InboundError as exc:
            await self._record(
                agency_id,
                request,
                outcome=OUTCOMES.get(type(exc), "invalid"),
                status=exc.status,
                request_id=request_id,
            )
            raise
        await self._record(
            agency_id,
            request,
            outcome="served",
            status=200,
            request_id=request_id,
            size=fetched.document.size,
        )
        return fetched

    async def _open(
        self, agency_id: str, request: DocumentFetchRequest, request_id: str
    ) -> Fetched:
        not_found = DocumentNotFound(
            f"no document {request.document_id} in a placement {request.placement_id} "
            f"held by {agency_id}"
        )
        async with self._db.snapshot() as conn:
            row = (
                await conn.execute(
                    sa.select(PLACEMENTS.c.agency_id, PLACEMENTS.c.state).where(
                        PLACEMENTS.c.id == request.placement_id
                    )
                )
            ).first()
            if row is None or row.agency_id != agency_id:
                raise not_found
            if row.state not in OPEN_PLACEMENT_STATES:
                how = _ENDED.get(row.state, f"is {row.state}")
                raise DocumentGone(
                    f"placement {request.placement_id} {how}: its documents can no longer be "
                    "fetched; delete your copies as the data.deletion_requested packet asks"
                )
            pack = (await pack_of(conn, [request.placement_id]))[request.placement_id]
            doc = next((d for d in pack if d.id == request.document_id), None)
            if doc is None:
                raise not_found
            try:
                body = await document_stream(conn, doc, store=self._store)
            except DocumentError as exc:
                # The lender's problem, not the agency's: logged in full, answered briefly.
                log.error("document fetch %s by %s: %s", request_id, agency_id, exc)
                raise DocumentUnavailable() from exc
        return Fetched(request.placement_id, doc, body, request_id)

    async def aborted(self, fetched: Fetched, agency_id: str, error: Exception) -> None:
        """Record a transfer that failed after it started (the client saw a cut-off body)."""
        if isinstance(error, DocumentChanged):
            log.error("document fetch %s by %s: %s", fetched.request_id, agency_id, error)
        await self._record(
            agency_id,
            DocumentFetchRequest(
                placement_id=fetched.placement_id,
                document_id=fetched.document.id,
            ),
            outcome="aborted",
            status=200,
            request_id=fetched.request_id,
        )

    async def _record(
        self,
        agency_id: str,
        request: DocumentFetchRequest | None,
        *,
        outcome: str,
        status: int,
        request_id: str,
        size: int | None = None,
    ) -> None:
        at: datetime = to_datetime(self._clock.now())
        async with self._db.transaction() as conn:
            await conn.execute(
                FETCHES.insert().values(
                    agency_id=agency_id,
                    placement_id=None if request is None else request.placement_id,
                    document_id=None if request is None else request.document_id,
                    outcome=outcome,
                    status=status,
                    size=size,
                    request_id=request_id,
                    at=at,
                )
            )


__all__ = [
    "MAX_REQUEST_BYTES",
    "OUTCOMES",
    "DocumentFetchService",
    "Fetched",
    "content_disposition",
    "verified_body",
]
