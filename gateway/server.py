"""The HTTP server: the inbound agency API, health, metrics, and the ops console mounted
beside them. Handlers stay thin: read, call the core, respond."""

import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol, TypeVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from adapters.email.links import LINK_ROUTE
from gateway.console.routes import ConsoleServices, add_console
from gateway.documents.fetch import DocumentFetchService
from gateway.errors import InboundError, PayloadTooLarge, UnknownAgency
from gateway.inbound.problems import PROBLEM_BASE, PROBLEM_CONTENT_TYPE, problem_body
from gateway.inbound.service import InboundService
from gateway.metrics import Metrics
from gateway.monitoring.cluster import ClusterCollector
from gateway.settlement.fetch import ROUTE as STATEMENT_DOCUMENTS_ROUTE, StatementDocumentFetch
from gateway.store.database import Database
from gateway.verification.service import VerificationService
from gateway.verification.web import VERIFICATION_KEY, add_verification

log = logging.getLogger(__name__)

INBOUND_KEY = web.AppKey("inbound", InboundService)
DB_KEY = web.AppKey("db", Database)
METRICS_KEY = web.AppKey("metrics", Metrics)
CLUSTER_KEY = web.AppKey("cluster_metrics", ClusterCollector)
DOCUMENTS_KEY = web.AppKey("documents", DocumentFetchService)
STATEMENT_DOCUMENTS_KEY = web.AppKey("statement_documents", StatementDocumentFetch)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _problem_response(
    error: InboundError, request: web.Request, webhook_id: str | None = None
) -> web.Response:
    return web.Response(
        status=error.status,
        body=problem_body(error, instance=request.path, webhook_id=webhook_id),
        content_type=PROBLEM_CONTENT_TYPE,
    )


async def _whole_body(request: web.Request, limit: int) -> bytes | None:
    """The whole body, however many pieces and pauses it arrives in (chunked or not); None as
    soon as it passes ``limit`` bytes. Reading only what has arrived so far would verify the
    signature over part of the body and refuse a correctly signed event."""
    body = bytearray()
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as RFC 9457 problem+json; a bug is logged with a request id, and
    answered 500 with the same id, never a traceback."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        body = {
            "type": PROBLEM_BASE + exc.reason.lower().replace(" ", "-"),
            "title": exc.reason,
            "status": exc.status,
            "detail": exc.text or exc.reason,
            "instance": request.path,
        }
        return web.Response(
            status=exc.status,
            body=json.dumps(body).encode(),
            content_type=PROBLEM_CONTENT_TYPE,
            headers={k: v for k, v in exc.headers.items() if k.lower() == "allow"},
        )
    except Exception:
        request_id = uuid.uuid4().hex
        log.exception("request %s %s %s failed", request_id, request.method, request.path)
        body = {
            "type": PROBLEM_BASE + "internal-error",
            "title": "Internal error",
            "status": 500,
            "detail": f"the gateway failed to handle the request; quote request id {request_id}",
            "instance": request.path,
            "request_id": request_id,
        }
        return web.Response(
            status=500,
            body=json.dumps(body).encode(),
            content_type=PROBLEM_CONTENT_TYPE,
            headers={"X-Request-Id": request_id},
        )


async def receive_event(request: web.Request) -> web.Response:
    inbound = request.app[INBOUND_KEY]
    agency_id = request.match_info["agency_id"]
    webhook_id = request.headers.get("webhook-id")
    if not inbound.knows(agency_id):
        return _problem_response(
            UnknownAgency(f"no agency {agency_id!r} sends events to this gateway"),
            request,
            webhook_id,
        )
    limit = inbound.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        return _problem_response(
            PayloadTooLarge(f"body is {request.content_length} bytes; the limit is {limit}"),
            request,
            webhook_id,
        )
    # A declared length within the limit is read in one call (aiohttp stops at that length);
    # a chunked body is counted as it arrives.
    body = (
        await request.read()
        if request.content_length is not None
        else await _whole_body(request, limit)
    )
    if body is None:
        return _problem_response(
            PayloadTooLarge(f"body is over the limit of {limit} bytes"), request, webhook_id
        )
    response = await inbound.receive(agency_id, request.headers.items(), body)
    return web.Response(
        status=response.status, body=response.body, content_type=response.content_type
    )


_Found = TypeVar("_Found", covariant=True)


class _Fetcher(Protocol[_Found]):
    """What both document fetch services offer the route (gateway.documents.fetch and
    gateway.settlement.fetch)."""

    max_body_bytes: int

    def knows(self, agency_id: str) -> bool: ...

    async def open(
        self,
        agency_id: str,
        headers: Iterable[tuple[str, str]],
        body: bytes | None,
        *,
        request_id: str,
    ) -> _Found: ...


async def _open_fetch(request: web.Request, fetcher: _Fetcher[_Found]) -> _Found | web.Response:
    """Read a signed fetch request (a body over the limit is left unread) and hand it to
    ``fetcher``; a refusal comes back as the problem response, with the request id."""
    agency_id = request.match_info["agency_id"]
    request_id = uuid.uuid4().hex
    try:
        if not fetcher.knows(agency_id):
            raise UnknownAgency(f"no agency {agency_id!r} fetches documents from this gateway")
        limit = fetcher.max_body_bytes
        too_large = request.content_length is not None and request.content_length > limit
        body = None if too_large else await _whole_body(request, limit)
        return await fetcher.open(agency_id, request.headers.items(), body, request_id=request_id)
    except InboundError as exc:
        refusal = _problem_response(exc, request)
        refusal.headers["X-Request-Id"] = request_id
        return refusal


async def fetch_document(request: web.Request) -> web.StreamResponse:
    """A webhook agency fetches one document of its placement's pack (gateway.documents.fetch:
    verified before parsing, only its own open placements, every request recorded)."""
    documents = request.app[DOCUMENTS_KEY]
    fetched = await _open_fetch(request, documents)
    if isinstance(fetched, web.Response):
        return fetched
    response = web.StreamResponse(headers=fetched.headers())
    response.content_length = fetched.document.size
    await response.prepare(request)
    try:
        async for chunk in fetched.body:
            await response.write(chunk)
    except Exception as exc:
        # Headers are gone: the only honest signal left is a cut-off body.
        await documents.aborted(fetched, request.match_info["agency_id"], exc)
        if request.transport is not None:
            request.transport.close()
        return response
    finally:
        await fetched.body.aclose()  # closes the store file however the transfer ended
    await response.write_eof()
    return response


async def fetch_statement_document(request: web.Request) -> web.Response:
    """A webhook agency fetches a document of its settlement statement
    (gateway.settlement.fetch: verified before parsing, only its own statements, recorded)."""
    documents = request.app[STATEMENT_DOCUMENTS_KEY]
    found = await _open_fetch(request, documents)
    if isinstance(found, web.Response):
        return found
    return web.Response(body=found.body, headers=found.headers())


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ok = await request.app[DB_KEY].ping()
    return web.json_response(
        {"status": "ready" if ok else "database unavailable"}, status=200 if ok else 503
    )


async def metrics(request: web.Request) -> web.Response:
    """What this process counted, then the cluster-wide numbers read from the database
    (gateway.monitoring.cluster, cached for a few seconds)."""
    m = request.app[METRICS_KEY]
    cluster = request.app[CLUSTER_KEY]
    await cluster.refresh()
    verification = request.app.get(VERIFICATION_KEY)
    if verification is not None:
        m.verification_failed_hour.set(await verification.failed_last_hour())
    return web.Response(
        body=generate_latest(m.registry) + generate_latest(cluster.registry),
        headers={"Content-Type": CONTENT_TYPE_LATEST},
    )


def create_app(
    *,
    inbound: InboundService,
    db: Database,
    metrics_: Metrics,
    console: ConsoleServices | None = None,
    documents: DocumentFetchService | None = None,
    verification: VerificationService | None = None,
    lender_name: str = "",
    document_links: Handler | None = None,
    statement_documents: StatementDocumentFetch | None = None,
) -> web.Application:
    """Build the application; the caller owns the services and closes them. With
    ``console``, the ops console's pages and JSON API are mounted too (gateway.console.routes);
    with ``documents``, the agencies' document fetch endpoint; with ``verification``, the
    public collector-verification page and API (gateway.verification.web)."""
    app = web.Application(
        middlewares=[problem_middleware], client_max_size=inbound.max_body_bytes + 1
    )
    app[INBOUND_KEY] = inbound
    app[DB_KEY] = db
    app[METRICS_KEY] = metrics_
    app[CLUSTER_KEY] = ClusterCollector(
        db=db,
        agencies=metrics_.channels,
        clock=metrics_.clock,
        cache_seconds=metrics_.cache_seconds,
    )
    app.router.add_post("/v1/agencies/{agency_id}/events", receive_event)
    if documents is not None:
        app[DOCUMENTS_KEY] = documents
        app.router.add_post("/v1/agencies/{agency_id}/documents", fetch_document)
    if statement_documents is not None:
        # Settlement statements' XLSX and signed PDF (gateway.settlement.fetch).
        app[STATEMENT_DOCUMENTS_KEY] = statement_documents
        app.router.add_post(STATEMENT_DOCUMENTS_ROUTE, fetch_statement_document)
    if document_links is not None:
        # Law firms' signed document links (adapters.email.link_service).
        app.router.add_get(LINK_ROUTE, document_links)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    if verification is not None:
        add_verification(app, verification, lender=lender_name)
    if console is not None:
        add_console(app, console)
    return app


__all__ = ["CLUSTER_KEY", "DB_KEY", "DOCUMENTS_KEY", "INBOUND_KEY", "METRICS_KEY", "create_app"]
