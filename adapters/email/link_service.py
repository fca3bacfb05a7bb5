"""Serving the documents behind a law firm's mail links (``GET /v1/document-links/...``).

Theory of operation
-------------------
A firm that got a mail too large to carry its documents downloads each by the signed link
listed in the body (adapters.email.links). ``DocumentLinks.handle``:

1. finds the firm's link key (404 for an agency without ``[email.links]``: nothing says
   whether it exists), checks the signature (403) and then the expiry (410);
2. serves the document only while the placement is open with this firm
   (``gateway.lifecycle.OPEN_PLACEMENT_STATES``): a recalled, expired or returned
   placement answers 410 saying so; a placement of another agency, or a document that is not
   in the placement's pack, answers 404;
3. streams the bytes (gateway.documents.pack.document_stream: a store file is checked before
   the first byte; one that changes while it is sent aborts the transfer) with its
   ``Content-Type``, ``Content-Disposition`` and ``Repr-Digest: sha-256=:...:``.

Every request is recorded in ``document_fetches`` (outcome, status, request id), as the
webhook agencies' fetches are. Refusals are problem+json (gateway.inbound.problems).
"""

import base64
import json
import logging
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import cast
from urllib.parse import quote

import sqlalchemy as sa
from aiohttp import web

from adapters.email.links import LinkRefused, LinkTarget, check_link
from gateway.documents.pack import PackDocument, document_stream, pack_of
from gateway.documents.store import DocumentStore
from gateway.errors import DocumentError
from gateway.inbound.problems import PROBLEM_BASE, PROBLEM_CONTENT_TYPE
from gateway.lifecycle import OPEN_PLACEMENT_STATES
from gateway.ports import DocumentSource, NoDocumentStore
from gateway.store.database import Database
from gateway.store.document_tables import DocumentFetch
from gateway.store.tables import Placement

log = logging.getLogger(__name__)

FETCHES = DocumentFetch.__table__  # type: ignore[attr-defined]
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]


class DocumentLinks:
    """The handler of document links for every law firm with ``[email.links]``.

    Args:
        db: the database (placements, packs, the fetch record).
        keys: agency id → its link key.
        documents: the lender's document store; None when none is configured.
        clock: returns Unix time.
    """

    def __init__(
        self,
        *,
        db: Database,
        keys: Mapping[str, bytes],
        documents: DocumentSource | None,
        clock: Callable[[], float],
    ) -> None:
        self._db = db
        self._keys = dict(keys)
        self._store: DocumentSource = documents if documents is not None else NoDocumentStore()
        self._clock = clock

    async def handle(self, request: web.Request) -> web.StreamResponse:
        request_id = uuid.uuid4().hex
        agency_id = request.match_info["agency_id"]
        target: LinkTarget | None = None
        try:
            target = self._target(request, agency_id)
            doc = await self._document(target)
        except LinkRefused as refused:
            placement = target.placement_id if target else None
            document = target.document_id if target else None
            outcome = {403: "unauthorised", 404: "not_found", 410: "gone"}.get(
                refused.status, "invalid"
            )
            if agency_id in self._keys:
                await self._record(
                    agency_id, placement, document, outcome, refused.status, None, request_id
                )
            return _problem(request, refused.status, refused.detail, request_id)
        return await self._send(request, target, doc, request_id)

    def _target(self, request: web.Request, agency_id: str) -> LinkTarget:
        if agency_id not in self._keys:
            raise LinkRefused(404, "no such link")
        query = request.query
        try:
            target = LinkTarget(
                agency_id,
                query["placement"],
                int(request.match_info["document_id"]),
                int(query["expires"]),
            )
            sig = query["sig"]
        except (KeyError, ValueError):
            raise LinkRefused(400, "the link is incomplete; use the link as mailed") from None
        check_link(self._keys[agency_id], target, sig, now=self._clock())
        return target

    async def _document(self, target: LinkTarget) -> PackDocument:
        async with self._db.snapshot() as conn:
            state = (
                await conn.execute(
                    sa.select(PLACEMENTS.c.state).where(
                        PLACEMENTS.c.id == target.placement_id,
                        PLACEMENTS.c.agency_id == target.agency_id,
                    )
                )
            ).scalar_one_or_none()
            if state is None:
                raise LinkRefused(404, "no such document")
            if state not in OPEN_PLACEMENT_STATES:
                raise LinkRefused(
                    410,
                    f"placement {target.placement_id} is {state}: its documents can no longer "
                    "be fetched",
                )
            pack = (await pack_of(conn, [target.placement_id]))[target.placement_id]
        doc = next((d for d in pack if d.id == target.document_id), None)
        if doc is None:
            raise LinkRefused(404, "no such document")
        return doc

    async def _send(
        self, request: web.Request, target: LinkTarget, doc: PackDocument, request_id: str
    ) -> web.StreamResponse:
        digest = base64.b64encode(bytes.fromhex(doc.sha256)).decode()
        response = web.StreamResponse(
            headers={
                "Content-Type": doc.media_type,
                "Content-Length": str(doc.size),
                "Content-Disposition": f"attachment; filename*=UTF-8''{quote(doc.name)}",
                "Repr-Digest": f"sha-256=:{digest}:",
                "Cache-Control": "no-store",
                "X-Request-Id": request_id,
            }
        )
        sent = 0
        try:
            async with self._db.snapshot() as conn:
                chunks = await document_stream(conn, doc, store=cast(DocumentStore, self._store))
                async for chunk in chunks:
                    if not response.prepared:
                        await response.prepare(request)
                    await response.write(chunk)
                    sent += len(chunk)
                if not response.prepared:
                    await response.prepare(request)
        except DocumentError as exc:
            log.error("document link %s: %s", request_id, exc)
            await self._record(
                target.agency_id,
                target.placement_id,
                doc.id,
                "unavailable" if sent == 0 else "aborted",
                503,
                sent,
                request_id,
            )
            if response.prepared:
                raise  # the transfer is cut short: the firm sees an incomplete download
            return _problem(
                request,
                503,
                "the document cannot be served right now; the lender has been alerted",
                request_id,
            )
        await response.write_eof()
        await self._record(
            target.agency_id,
            target.placement_id,
            doc.id,
            "served",
            200,
            sent,
            request_id,
        )
        return response

    async def _record(
        self,
        agency_id: str,
        placement_id: str | None,
        document_id: int | None,
        outcome: str,
        status: int,
        size: int | None,
        request_id: str,
    ) -> None:
        async with self._db.transaction() as conn:
            await conn.execute(
                FETCHES.insert(),
                {
                    "agency_id": agency_id,
                    "placement_id": placement_id,
                    "document_id": document_id,
                    "outcome": outcome,
                    "status": status,
                    "size": size,
                    "request_id": request_id,
                    "at": datetime.fromtimestamp(self._clock(), UTC),
                },
            )


def _problem(request: web.Request, status: int, detail: str, request_id: str) -> web.Response:
    title = {400: "Bad link", 403: "Forbidden", 404: "Not found", 410: "Gone"}.get(
        status, "Unavailable"
    )
    body = {
        "type": PROBLEM_BASE + title.lower().replace(" ", "-"),
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.path,
        "request_id": request_id,
    }
    return web.Response(
        status=status, body=json.dumps(body).encode(), content_type=PROBLEM_CONTENT_TYPE
    )


__all__ = ["DocumentLinks"]
