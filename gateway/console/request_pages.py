"""The console's requests pages: agencies' waivers (减免), instalment plans (分期) and pauses
(停催) waiting for the lender's decision.

``GET /requests`` is the queue (pending and awaiting a second person, oldest first) with each
case's placed balance and what was collected, and the latest decisions; ``GET
/requests/{id}`` shows one request: its terms, the placement's recent events and the case's
other requests, and, while open, the decision form. ``POST /requests/{id}/decision``
approves or rejects as the logged-in user through gateway.concessions.decisions (role limits,
four eyes, a reason to reject); a refusal shows the page again with the reason.
"""

import sqlalchemy as sa
from aiohttp import web

from gateway.concessions.decisions import ConcessionService
from gateway.concessions.requests import get_request, list_requests
from gateway.concessions.rules import OPEN_STATES
from gateway.console.guards import page
from gateway.console.i18n import _
from gateway.console.rendering import render
from gateway.console.services import CONSOLE_KEY, ConsoleServices, read_form
from gateway.console.sessions import Principal
from gateway.errors import ActionRefused, GatewayError, NotFound
from gateway.store.tables import AgencyEventRow, Placement

PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
EVENTS = AgencyEventRow.__table__  # type: ignore[attr-defined]
P, E = PLACEMENTS.c, EVENTS.c
_HISTORY = 20


def _services(request: web.Request) -> ConsoleServices:
    return request.app[CONSOLE_KEY]


def _service(request: web.Request) -> ConcessionService:
    service = _services(request).concessions
    if service is None:
        raise NotFound("requests are not served by this console")
    return service


def _request_id(request: web.Request) -> int:
    text = request.match_info["request_id"]
    if not text.isdigit():
        raise NotFound(f"request {text!r} does not exist")
    return int(text)


@page("viewer")
async def requests_page(request: web.Request, principal: Principal) -> web.StreamResponse:
    """``GET /requests``: the open requests with their cases' balances, and recent decisions."""
    services = _services(request)
    async with services.db.snapshot() as conn:
        queue = await list_requests(conn, states=sorted(OPEN_STATES))
        everything = await list_requests(conn, limit=1000)
        ids = sorted({r.placement_id for r in queue})
        placements = {
            row.id: row
            for row in await conn.execute(
                sa.select(P.id, P.balance_minor, P.collected_minor, P.currency, P.state).where(
                    P.id.in_(ids)
                )
            )
        }
    decided = [r for r in reversed(everything) if r.state not in OPEN_STATES][:50]
    return render(
        "requests.html",
        principal,
        queue=queue,
        placements=placements,
        decided=decided,
    )


async def _request_page(
    request: web.Request, principal: Principal, *, error: str = "", status: int = 200
) -> web.StreamResponse:
    services = _services(request)
    async with services.db.snapshot() as conn:
        record = await get_request(conn, _request_id(request))
        placement = (
            await conn.execute(
                sa.select(
                    P.id, P.agency_id, P.state, P.currency, P.balance_minor, P.collected_minor
                ).where(P.id == record.placement_id)
            )
        ).one()
        history = (
            await conn.execute(
                sa.select(E.event_type, E.occurred_at, E.amount_minor, E.currency, E.applied)
                .where(E.placement_id == record.placement_id)
                .order_by(E.id.desc())
                .limit(_HISTORY)
            )
        ).all()
        others = [r for r in await list_requests(conn, case_id=record.case_id) if r.id != record.id]
    return render(
        "request.html",
        principal,
        status=status,
        record=record,
        placement=placement,
        history=history,
        others=others,
        open=record.state in OPEN_STATES,
        error=error,
        done=request.query.get("done", ""),
    )


@page("viewer")
async def request_page(request: web.Request, principal: Principal) -> web.StreamResponse:
    """``GET /requests/{request_id}``: one request and, while open, the decision."""
    return await _request_page(request, principal)


@page("operator")
async def request_decision(request: web.Request, principal: Principal) -> web.StreamResponse:
    """``POST /requests/{request_id}/decision``: approve or reject as the logged-in user."""
    request_id = _request_id(request)
    service = _service(request)
    form = dict(await read_form(request))
    try:
        decision = form.get("decision", "")
        if decision not in ("approve", "reject"):
            raise GatewayError(_("Choose approve or reject."))
        reason = form.get("reason", "").strip()[:500] or None
        record = await service.decide(
            request_id, approve=decision == "approve", person=principal.user, reason=reason
        )
    except ActionRefused as exc:
        return await _request_page(request, principal, error=str(exc), status=409)
    except GatewayError as exc:
        if isinstance(exc, NotFound):
            raise
        return await _request_page(request, principal, error=str(exc), status=400)
    return web.Response(
        status=303, headers={"Location": f"/requests/{request_id}?done={record.state}"}
    )


def add_request_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/requests", requests_page)
    router.add_get("/requests/{request_id}", request_page)
    router.add_post("/requests/{request_id}/decision", request_decision)


__all__ = ["add_request_routes"]
