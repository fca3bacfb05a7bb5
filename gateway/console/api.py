"""The console's JSON API under ``/api/v1``: the same data and actions as the pages, for
scripts. Authenticated by a bearer API token (``agency-gateway users token``) or the console
session (then unsafe methods need ``X-CSRF-Token``); errors are RFC 9457 problem+json.
Documented in ``schemas/openapi.json`` (gateway.console.api_docs).
"""

import json
from datetime import date, datetime
from typing import Any

from aiohttp import web
from multidict import MultiDict

from gateway.cases import views as case_views
from gateway.console import case_actions, personal_data, read_model, timeline
from gateway.console.guards import api, problem
from gateway.console.services import (
    CONSOLE_KEY,
    ConsoleServices,
    case_filter_from,
    filter_from,
    page_limit,
)
from gateway.console.sessions import Principal, remote_of
from gateway.errors import GatewayError, NotFound
from gateway.reporting.scorecards import period, report, scorecards
from gateway.resolutions.actions import ActionResult, BulkResult
from gateway.resolutions.rules import DEFAULT_RECALL_CODE, ActionRefused, ActionRequest

PREFIX = "/api/v1"


def _default(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def reply(data: object, status: int = 200) -> web.Response:
    text = json.dumps(data, default=_default, ensure_ascii=False)
    return web.Response(status=status, text=text, content_type="application/json")


def _services(request: web.Request) -> ConsoleServices:
    return request.app[CONSOLE_KEY]


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except json.JSONDecodeError as exc:
        raise GatewayError(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise GatewayError("the body must be a JSON object")
    return body


def _action(body: dict[str, Any], actor: str) -> ActionRequest:
    def text(name: str, default: str = "") -> str:
        value = body.get(name, default)
        if not isinstance(value, str):
            raise GatewayError(f"{name} must be a string")
        return value

    balance = body.get("balance_minor")
    if balance is not None and (not isinstance(balance, int) or isinstance(balance, bool)):
        raise GatewayError("balance_minor must be an integer (minor units)")
    assignee = body.get("assignee")
    approval = body.get("approval_id")
    if approval is not None and (
        not isinstance(approval, int) or isinstance(approval, bool) or approval < 1
    ):
        raise GatewayError("approval_id must be a positive integer (the approval's number)")
    return ActionRequest(
        action=text("action"),
        actor=actor,
        reason=text("reason").strip(),
        assignee=assignee if isinstance(assignee, str) else None,
        balance_minor=balance,
        recall_code=text("recall_code", DEFAULT_RECALL_CODE) or DEFAULT_RECALL_CODE,
        approval_id=approval,
    )


def _result(result: ActionResult) -> dict[str, object]:
    return {
        "mismatch_id": result.mismatch_id,
        "action": result.action,
        "from_state": result.from_state,
        "to_state": result.to_state,
        "evidence_seq": result.evidence_seq,
        "details": result.details,
    }


def _bulk(result: BulkResult) -> dict[str, object]:
    return {
        "batch": result.batch,
        "matched": result.matched,
        "truncated": result.truncated,
        "done": [_result(r) for r in result.done],
        "refused": [{"mismatch_id": k, "reason": v} for k, v in result.refused.items()],
    }


@api("viewer")
async def me(request: web.Request, principal: Principal) -> web.StreamResponse:
    user = principal.user
    return reply(
        {
            "name": user.name,
            "role": user.role,
            "via": principal.via,
            "csrf_token": principal.csrf_token or None,
            "may_reveal_pii": _services(request).may_reveal(user.role),
        }
    )


@api("viewer")
async def dashboard(request: web.Request, principal: Principal) -> web.StreamResponse:
    services = _services(request)
    async with services.db.snapshot() as conn:
        data = await read_model.dashboard(
            conn,
            services.agencies,
            services.circuits(),
            now=services.auth.now(),
            zone=services.zone,
        )
    return reply(data)


@api("viewer")
async def mismatches(request: web.Request, principal: Principal) -> web.StreamResponse:
    services = _services(request)
    query = request.query
    async with services.db.snapshot() as conn:
        data = await read_model.queue(
            conn,
            filter_from(query, now=services.auth.now()),
            sort=query.get("sort", "id"),
            descending=query.get("dir", "desc") != "asc",
            page=int(query["page"]) if query.get("page", "").isdigit() else 1,
            per_page=int(query["per_page"]) if query.get("per_page", "").isdigit() else 50,
        )
    return reply(data)


def _id(request: web.Request) -> int:
    text = request.match_info["mismatch_id"]
    if not text.isdigit():
        raise NotFound(f"{text!r} is not a mismatch id")
    return int(text)


@api("viewer")
async def mismatch(request: web.Request, principal: Principal) -> web.StreamResponse:
    services = _services(request)
    async with services.db.snapshot() as conn:
        return reply(await read_model.mismatch_detail(conn, _id(request)))


@api("operator")
async def mismatch_action(request: web.Request, principal: Principal) -> web.StreamResponse:
    request_ = _action(await _body(request), principal.user.name)
    result = await _services(request).resolutions.act(_id(request), request_)
    return reply(_result(result))


@api("operator")
async def bulk_action(request: web.Request, principal: Principal) -> web.StreamResponse:
    body = await _body(request)
    criteria = body.get("filter", {})
    if not isinstance(criteria, dict):
        raise GatewayError("filter must be an object")
    pairs: MultiDict[str] = MultiDict()
    for name, value in criteria.items():
        for item in value if isinstance(value, list) else [value]:
            pairs.add(str(name), str(item))
    limit = body.get("limit", 1000)
    if not isinstance(limit, int) or limit < 1:
        raise GatewayError("limit must be a positive integer")
    services = _services(request)
    result = await services.resolutions.bulk(
        filter_from(pairs, now=services.auth.now()), _action(body, principal.user.name), limit=limit
    )
    return reply(_bulk(result))


@api("viewer")
async def cases(request: web.Request, principal: Principal) -> web.StreamResponse:
    services = _services(request)
    query = request.query
    async with services.db.snapshot() as conn:
        data = await case_views.list_cases(
            conn,
            case_filter_from(query, services.pii),
            limit=page_limit(query),
            after=query.get("after", "").strip() or None,
        )
    return reply(data)


@api("viewer")
async def case(request: web.Request, principal: Principal) -> web.StreamResponse:
    services = _services(request)
    async with services.db.snapshot() as conn:
        return reply(await case_views.case_detail(conn, request.match_info["case_id"]))


@api("operator")
async def case_action(request: web.Request, principal: Principal) -> web.StreamResponse:
    body = await _body(request)
    fields: dict[str, str] = {}
    for name, value in body.items():
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise GatewayError(f"{name} must be a string or a whole number")
        fields[name] = str(value)
    wanted = case_actions.request_from(fields, principal.user.name)
    case_actions.check(wanted)
    case_id = request.match_info["case_id"]
    try:
        details, seq = await case_actions.act(_services(request), case_id, wanted)
    except NotFound:
        raise
    except GatewayError as exc:
        raise ActionRefused(str(exc)) from exc
    return reply(
        {"case_id": case_id, "action": wanted.action, "evidence_seq": seq, "details": details}
    )


@api("viewer")
async def case_timeline(request: web.Request, principal: Principal) -> web.StreamResponse:
    services = _services(request)
    case_id = request.match_info["case_id"]
    async with services.db.snapshot() as conn:
        data = await timeline.case_timeline(conn, case_id)
    data["debtor_masked"] = await personal_data.masked_case_pii(services.db, services.pii, case_id)
    return reply(data)


@api("viewer")
async def reveal_pii(request: web.Request, principal: Principal) -> web.StreamResponse:
    services = _services(request)
    if not services.may_reveal(principal.user.role):
        return problem(request, 403, "Forbidden", "Your role may not see personal data.")
    reason = (await _body(request)).get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise GatewayError("reason: say why you need the personal data")
    case_id = request.match_info["case_id"]
    data = await personal_data.reveal(
        services.db,
        services.pii,
        case_id,
        user_name=principal.user.name,
        reason=reason.strip(),
        remote=remote_of(request),
        now=services.auth.now(),
    )
    return reply({"case_id": case_id, "debtor": data})


@api("viewer")
async def agencies(request: web.Request, principal: Principal) -> web.StreamResponse:
    services = _services(request)
    async with services.db.snapshot() as conn:
        return reply(
            await read_model.agencies_overview(conn, services.agencies, services.circuits())
        )


@api("viewer")
async def agency(request: web.Request, principal: Principal) -> web.StreamResponse:
    services = _services(request)
    config = services.agencies.get(request.match_info["agency_id"])
    if config is None:
        raise NotFound(f"no agency {request.match_info['agency_id']!r} in the configuration")
    async with services.db.snapshot() as conn:
        data = await read_model.agency_page(
            conn, config, services.circuits(), now=services.auth.now()
        )
    return reply(data)


@api("viewer")
async def agency_scorecards(request: web.Request, principal: Principal) -> web.StreamResponse:
    services = _services(request)
    days = {}
    for name in ("from", "to"):
        value = request.query.get(name)
        try:
            days[name] = date.fromisoformat(value) if value else None
        except ValueError:
            raise GatewayError(f"{name}: {value!r} is not a day (YYYY-MM-DD)") from None
    try:
        start, end = period(days["from"], days["to"], today=services.auth.now().date())
    except ValueError as exc:
        raise GatewayError(f"from: {exc}") from None
    cards = await scorecards(services.db, services.agencies, start=start, end=end)
    return reply(report(cards, start, end))


def add_api_routes(app: web.Application) -> None:
    """Register the JSON API; the paths match gateway.console.api_docs."""
    router = app.router
    router.add_get(f"{PREFIX}/me", me)
    router.add_get(f"{PREFIX}/dashboard", dashboard)
    router.add_get(f"{PREFIX}/mismatches", mismatches)
    router.add_post(f"{PREFIX}/mismatches/bulk", bulk_action)
    router.add_get(f"{PREFIX}/mismatches/{{mismatch_id}}", mismatch)
    router.add_post(f"{PREFIX}/mismatches/{{mismatch_id}}/actions", mismatch_action)
    router.add_get(f"{PREFIX}/cases", cases)
    router.add_get(f"{PREFIX}/cases/{{case_id}}", case)
    router.add_post(f"{PREFIX}/cases/{{case_id}}/actions", case_action)
    router.add_get(f"{PREFIX}/cases/{{case_id}}/timeline", case_timeline)
    router.add_post(f"{PREFIX}/cases/{{case_id}}/pii", reveal_pii)
    router.add_get(f"{PREFIX}/agencies", agencies)
    router.add_get(f"{PREFIX}/agencies/{{agency_id}}", agency)
    router.add_get(f"{PREFIX}/scorecards", agency_scorecards)


__all__ = ["PREFIX", "add_api_routes", "reply"]
