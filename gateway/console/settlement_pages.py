"""The console's settlement statements (佣金结算单).

``GET /settlement`` lists statements per agency and month with state and totals;
``GET /settlement/{id}`` shows one with its lines, adjustments, fees and document links;
``GET /settlement/{id}/{kind}`` downloads its XLSX or signed PDF. Operators and admins
``POST /settlement/{id}/adjust`` (amount in minor units, reason) on a draft and
``POST /settlement/{id}/issue``; the acting person is the logged-in user. A refusal
(a locked statement, four eyes) shows the page again with the reason. Handlers stay thin:
gateway.settlement.statements does the work.
"""

from aiohttp import web

from gateway.console.guards import page
from gateway.console.i18n import _
from gateway.console.rendering import download, render
from gateway.console.services import CONSOLE_KEY, read_form
from gateway.console.sessions import Principal
from gateway.errors import GatewayError, NotFound
from gateway.settlement.statements import StatementService

MEDIA_TYPES = {
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pdf": "application/pdf",
}


def _statements(request: web.Request) -> StatementService:
    service = request.app[CONSOLE_KEY].statements
    if service is None:
        raise NotFound("settlement statements are not available in this process")
    return service


def _statement_id(request: web.Request) -> int:
    text = request.match_info["statement_id"]
    if not text.isdigit():
        raise NotFound(f"statement {text!r} does not exist")
    return int(text)


@page("viewer")
async def statements_page(request: web.Request, principal: Principal) -> web.StreamResponse:
    """``GET /settlement``: every statement revision, newest month first."""
    agency = request.query.get("agency", "").strip() or None
    month = request.query.get("month", "").strip() or None
    rows = await _statements(request).statements(agency_id=agency, month=month)
    return render("statements.html", principal, rows=rows, agency=agency or "", month=month or "")


async def _statement_page(
    request: web.Request, principal: Principal, *, error: str = "", status: int = 200
) -> web.StreamResponse:
    view = await _statements(request).show(_statement_id(request))
    return render(
        "statement.html",
        principal,
        status=status,
        st=view.statement,
        lines=view.lines,
        adjustments=view.adjustments,
        fees=view.fees,
        documents=view.documents,
        error=error,
        done=request.query.get("done", ""),
    )


@page("viewer")
async def statement_page(request: web.Request, principal: Principal) -> web.StreamResponse:
    """``GET /settlement/{statement_id}``: one statement in full."""
    return await _statement_page(request, principal)


@page("viewer")
async def statement_document(request: web.Request, principal: Principal) -> web.StreamResponse:
    """``GET /settlement/{statement_id}/{kind}``: the XLSX or the signed PDF."""
    kind = request.match_info["kind"]
    name, data = await _statements(request).document(_statement_id(request), kind)
    return web.Response(
        body=data,
        content_type=MEDIA_TYPES[kind],
        headers=download(name),
    )


@page("operator")
async def statement_action(request: web.Request, principal: Principal) -> web.StreamResponse:
    """``POST /settlement/{statement_id}/{action}``: adjust a draft or issue it."""
    statement_id = _statement_id(request)
    action = request.match_info["action"]
    form = await read_form(request)
    service = _statements(request)
    actor = f"console:{principal.user.name}"
    try:
        if action == "adjust":
            text = form.get("amount_minor", "").strip()
            if not text.lstrip("-").isdigit():
                raise GatewayError(_("Give the adjustment as a whole number of minor units."))
            await service.adjust(statement_id, int(text), form.get("reason", ""), actor=actor)
        else:
            await service.issue(statement_id, actor=actor)
    except NotFound:
        raise
    except GatewayError as exc:
        return await _statement_page(request, principal, error=str(exc), status=409)
    return web.Response(
        status=303, headers={"Location": f"/settlement/{statement_id}?done={action}"}
    )


def add_settlement_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/settlement", statements_page)
    router.add_get("/settlement/{statement_id}", statement_page)
    router.add_get("/settlement/{statement_id}/{kind:xlsx|pdf}", statement_document)
    router.add_post("/settlement/{statement_id}/{action:adjust|issue}", statement_action)


__all__ = ["add_settlement_routes"]
