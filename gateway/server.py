"""The HTTP server: the inbound agency API, health, metrics, and the ops console mounted
beside them. Handlers stay thin: read, call the core, respond."""

import json
import logging
import uuid
from collections.abc import Awaitable, Callable

import sqlalchemy as sa
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.console.routes import ConsoleServices, add_console
from gateway.errors import InboundError, PayloadTooLarge, UnknownAgency
from gateway.inbound.problems import PROBLEM_BASE, PROBLEM_CONTENT_TYPE, problem_body
from gateway.inbound.service import InboundService
from gateway.metrics import Metrics
from gateway.store.database import Database
from gateway.store.tables import Mismatch, OutboxItem

log = logging.getLogger(__name__)

INBOUND_KEY = web.AppKey("inbound", InboundService)
DB_KEY = web.AppKey("db", Database)
METRICS_KEY = web.AppKey("metrics", Metrics)

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
    body = await _whole_body(request, limit)
    if body is None:
        return _problem_response(
            PayloadTooLarge(f"body is over the limit of {limit} bytes"), request, webhook_id
        )
    response = await inbound.receive(agency_id, request.headers.items(), body)
    return web.Response(
        status=response.status, body=response.body, content_type=response.content_type
    )


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ok = await request.app[DB_KEY].ping()
    return web.json_response(
        {"status": "ready" if ok else "database unavailable"}, status=200 if ok else 503
    )


async def metrics(request: web.Request) -> web.Response:
    m = request.app[METRICS_KEY]
    db = request.app[DB_KEY]
    outbox = OutboxItem.__table__  # type: ignore[attr-defined]
    mismatches = Mismatch.__table__  # type: ignore[attr-defined]
    async with db.connect() as conn:
        for state, n in (
            await conn.execute(sa.select(outbox.c.state, sa.func.count()).group_by(outbox.c.state))
        ).all():
            m.outbox.labels(state).set(n)
        for kind, n in (
            await conn.execute(
                sa.select(mismatches.c.kind, sa.func.count())
                .where(mismatches.c.state.in_(["open", "investigating"]))
                .group_by(mismatches.c.kind)
            )
        ).all():
            m.mismatches.labels(kind).set(n)
    return web.Response(
        body=generate_latest(m.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


def create_app(
    *,
    inbound: InboundService,
    db: Database,
    metrics_: Metrics,
    console: ConsoleServices | None = None,
) -> web.Application:
    """Build the application; the caller owns the services and closes them. With
    ``console``, the ops console's pages and JSON API are mounted too (gateway.console.routes)."""
    app = web.Application(
        middlewares=[problem_middleware], client_max_size=inbound.max_body_bytes + 1
    )
    app[INBOUND_KEY] = inbound
    app[DB_KEY] = db
    app[METRICS_KEY] = metrics_
    app.router.add_post("/v1/agencies/{agency_id}/events", receive_event)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    if console is not None:
        add_console(app, console)
    return app


__all__ = ["DB_KEY", "INBOUND_KEY", "METRICS_KEY", "create_app"]
