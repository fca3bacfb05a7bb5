"""The console's complaints pages and the lender's complaint webhook.

``GET /complaints`` is the queue (waiting ones by default, the nearest deadline first, the
overdue marked; filters by state, agency and overdue) with the form that opens one;
``GET /complaints/{id}`` shows one with the actions its state allows;
``POST /complaints`` opens one and ``POST /complaints/{id}/action`` does one action
(investigate, resolve, close, reopen, assign, extend, hold, release, attribute) as the
logged-in operator or admin, refused when the complaint changed since the page was shown;
``POST /complaints/{id}/summary`` shows the summary (personal data) to the roles allowed to
reveal, attested by a ``complaint`` leaf; ``GET /complaints/report.xlsx?month=YYYY-MM`` is the
monthly report.

``POST /api/v1/complaints`` is the lender's complaint channel as a webhook: a bearer API
token of an operator (``users token``, as every console API call) and one complaint as JSON
(gateway.complaints.lender_channel); the same ``complaint_id`` answers with the complaint it
opened before. ``GET /api/v1/complaints`` lists them as JSON.
"""

import json
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from gateway.complaints.lender_channel import parse_body, problems_of
from gateway.complaints.report import MEDIA_TYPE, monthly_report
from gateway.complaints.service import ComplaintService
from gateway.complaints.states import CATEGORIES, OPEN_STATES, OUTCOMES, STATES, TRANSITIONS
from gateway.complaints.store import ComplaintFilter, complaint_leaf
from gateway.console.api import PREFIX, reply
from gateway.console.guards import api, page
from gateway.console.i18n import _
from gateway.console.rendering import download, render
from gateway.console.services import CONSOLE_KEY, ConsoleServices, read_form
from gateway.console.sessions import Principal
from gateway.errors import ActionRefused, GatewayError, NotFound
from gateway.evidence.log import append_leaves

ACTIONS = (
    "investigate",
    "resolve",
    "close",
    "reopen",
    "assign",
    "extend",
    "hold",
    "release",
    "attribute",
)


def _services(request: web.Request) -> ConsoleServices:
    return request.app[CONSOLE_KEY]


def _service(request: web.Request) -> ComplaintService:
    service = _services(request).complaints
    if service is None:
        raise NotFound("complaints are not served by this console")
    return service


def _complaint_id(request: web.Request) -> int:
    text = request.match_info["complaint_id"]
    if not text.isdigit():
        raise NotFound(f"complaint {text!r} does not exist")
    return int(text)


def _filter(query: Any) -> ComplaintFilter:
    state = query.get("state", "waiting").strip()
    if state not in (*STATES, "waiting", "all"):
        state = "waiting"
    return ComplaintFilter(
        state=None if state == "all" else state,
        agency_id=query.get("agency", "").strip() or None,
        overdue=query.get("overdue", "") == "1",
        limit=500,
    )


@page("viewer")
async def complaints_page(request: web.Request, principal: Principal) -> web.StreamResponse:
    """``GET /complaints``: the queue and the form that opens a complaint."""
    return await _queue(request, principal)


async def _queue(
    request: web.Request, principal: Principal, *, error: str = "", status: int = 200
) -> web.StreamResponse:
    service = _service(request)
    where = _filter(request.query)
    rows = await service.find(where)
    return render(
        "complaints.html",
        principal,
        status=status,
        rows=rows,
        state=request.query.get("state", "waiting"),
        agency=where.agency_id or "",
        overdue_only=where.overdue,
        overdue=await service.overdue(),
        states=STATES,
        categories=CATEGORIES,
        agencies=sorted(_services(request).agencies),
        error=error,
    )


@page("operator")
async def complaint_open(request: web.Request, principal: Principal) -> web.StreamResponse:
    """``POST /complaints``: open a complaint as the logged-in user."""
    form = dict(await read_form(request))
    try:
        case_id = form.get("case_id", "").strip()
        if not case_id:
            raise GatewayError(_("Give the case the complaint is about."))
        opened = await _service(request).open(
            case_id=case_id,
            channel=form.get("channel", "").strip(),
            category=form.get("category", "other"),
            summary=form.get("summary", "").strip() or None,
            source_ref=form.get("source_ref", "").strip() or None,
            owner=form.get("owner", "").strip() or None,
            hold=form.get("hold") == "1",
            actor=f"ops:{principal.user.name}",
        )
    except GatewayError as exc:  # an unknown case too: the form is shown again with it
        return await _queue(request, principal, error=str(exc), status=400)
    return web.Response(
        status=303, headers={"Location": f"/complaints/{opened.complaint.id}?done=open"}
    )


async def _complaint_page(
    request: web.Request,
    principal: Principal,
    *,
    error: str = "",
    status: int = 200,
    summary: str | None = None,
) -> web.StreamResponse:
    service = _service(request)
    record = await service.get(_complaint_id(request))
    moves = sorted({a for (s, a) in TRANSITIONS if s == record.state})
    return render(
        "complaint.html",
        principal,
        status=status,
        record=record,
        moves=moves,
        outcomes=OUTCOMES,
        waiting=record.state in OPEN_STATES,
        may_reveal=_services(request).may_reveal(principal.user.role),
        summary=summary,
        error=error,
        done=request.query.get("done", ""),
    )


@page("viewer")
async def complaint_page(request: web.Request, principal: Principal) -> web.StreamResponse:
    """``GET /complaints/{complaint_id}``: one complaint and its actions."""
    return await _complaint_page(request, principal)


@page("operator")
async def complaint_action(request: web.Request, principal: Principal) -> web.StreamResponse:
    """``POST /complaints/{complaint_id}/action``: one action as the logged-in user."""
    complaint_id = _complaint_id(request)
    form = dict(await read_form(request))
    action = form.get("action", "")
    try:
        if action not in ACTIONS:
            raise GatewayError(_("Choose an action."))
        revision = form.get("revision", "")
        await _service(request).act(
            complaint_id,
            action,
            actor=f"ops:{principal.user.name}",
            outcome=form.get("outcome") or None,
            note=form.get("note", "").strip() or None,
            owner=form.get("owner", "").strip() or None,
            placement_id=form.get("placement_id", "").strip() or None,
            collector_id=form.get("collector_id", "").strip() or None,
            expected_revision=int(revision) if revision.isdigit() else None,
        )
    except ActionRefused as exc:
        return await _complaint_page(request, principal, error=str(exc), status=409)
    except GatewayError as exc:
        if isinstance(exc, NotFound) and action != "attribute":
            raise  # the complaint itself (an attribution's unknown placement is the form's)
        return await _complaint_page(request, principal, error=str(exc), status=400)
    return web.Response(
        status=303, headers={"Location": f"/complaints/{complaint_id}?done={action}"}
    )


@page("viewer")
async def complaint_summary(request: web.Request, principal: Principal) -> web.StreamResponse:
    """``POST /complaints/{complaint_id}/summary``: the summary, to roles that may reveal
    personal data; the reading is attested (who, which complaint; never the text)."""
    services = _services(request)
    if not services.may_reveal(principal.user.role):
        return await _complaint_page(
            request,
            principal,
            error=_("Your role may not see personal data."),
            status=403,
        )
    service = _service(request)
    complaint_id = _complaint_id(request)
    record = await service.get(complaint_id)
    summary = await service.summary(complaint_id)
    async with services.db.transaction() as conn:
        leaf = complaint_leaf(record, "summary_shown", f"ops:{principal.user.name}")
        await append_leaves(conn, [leaf], now=service.now())
    return await _complaint_page(request, principal, summary=summary or "")


@page("viewer")
async def complaint_report(request: web.Request, principal: Principal) -> web.StreamResponse:
    """``GET /complaints/report.xlsx?month=YYYY-MM``: the monthly report."""
    service = _service(request)
    month = request.query.get("month", "").strip() or service.now().strftime("%Y-%m")
    async with _services(request).db.snapshot() as conn:
        data = await monthly_report(conn, month, zone=service.policy.zone, now=service.now())
    return web.Response(
        body=data,
        content_type=MEDIA_TYPE,
        headers=download(f"complaints-{month}.xlsx"),
    )


@api("operator")
async def api_receive(request: web.Request, principal: Principal) -> web.StreamResponse:
    """``POST /api/v1/complaints``: the lender's complaint channel."""
    try:
        body = await request.json()
    except json.JSONDecodeError as exc:
        raise GatewayError(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise GatewayError("the body must be a JSON object (one complaint)")
    try:
        item = parse_body(body)
    except ValidationError as exc:
        raise GatewayError(
            "; ".join(f"{field}: {reason}" for field, reason in problems_of(exc))
        ) from None
    opened = await _service(request).receive(item, actor=f"ops:{principal.user.name}")
    return reply(opened.complaint.as_dict() | {"created": opened.created})


@api("viewer")
async def api_list(request: web.Request, principal: Principal) -> web.StreamResponse:
    """``GET /api/v1/complaints``: the queue as JSON (same filters as the page)."""
    rows = await _service(request).find(_filter(request.query))
    return reply([r.as_dict() for r in rows])


def add_complaint_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/complaints", complaints_page)
    router.add_post("/complaints", complaint_open)
    router.add_get("/complaints/report.xlsx", complaint_report)
    router.add_get("/complaints/{complaint_id}", complaint_page)
    router.add_post("/complaints/{complaint_id}/action", complaint_action)
    router.add_post("/complaints/{complaint_id}/summary", complaint_summary)
    router.add_get(f"{PREFIX}/complaints", api_list)
    router.add_post(f"{PREFIX}/complaints", api_receive)


__all__ = ["ACTIONS", "add_complaint_routes"]
