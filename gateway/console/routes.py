"""The ops console, mounted on the gateway's aiohttp app: server-rendered pages at ``/`` and
a JSON API at ``/api/v1``, both guarded per route (gateway.console.guards), so the inbound agency
API keeps its own path and pays nothing for the console.

Pages: ``/login``, ``/`` (dashboard), ``/mismatches`` (queue, filters, sorting, paging, bulk
actions), ``/mismatches/{id}`` (both sides, actions, history), ``/cases`` (list, filters,
search by any id; the filter form is POSTed and redirected, so a debtor id typed in it
reaches the URL only as its key), ``/cases/{id}`` (holds, placements, why this agency,
timeline, masked personal data, audited reveal), ``/agencies`` and ``/agencies/{id}``,
``/notices`` (borrower notices, failed ones flagged) and ``/verification`` (the public check
log; gateway.console.notice_pages), and for
admins ``/users`` and ``/audit/pii``. ``/mismatches.csv``, ``/cases.xlsx`` and the like export
a filtered list (gateway.console.list_exports). ``POST /search`` (the header's box; ``GET
/search?q=`` for links) finds anything by its id (gateway.console.search);
``POST /mismatches/views`` and ``/mismatches/views/{id}/delete`` keep a user's saved views of
the queue (gateway.console.saved_views). ``/approvals``, ``/approvals/{id}`` and
``/claims/{id}`` show claim batches and four-eyes requests with their decisions
(gateway.console.approval_pages). ``/settlement`` and ``/settlement/{id}`` show the monthly
settlement statements, their documents, and the adjust and issue actions
(gateway.console.settlement_pages). ``/evaluations`` and ``/evaluations/{id}`` show the annual
agency evaluations, their documents, and the decision with its four-eyes approval
(gateway.console.evaluation_pages).
"""

from aiohttp import web

from gateway.console import (
    case_evidence,
    case_letters,
    case_pages,
    languages,
    login,
    pages,
    saved_views,
    search,
)
from gateway.console.api import PREFIX, add_api_routes
from gateway.console.approval_pages import add_approval_routes
from gateway.console.complaint_pages import add_complaint_routes
from gateway.console.conduct_pages import add_conduct_routes
from gateway.console.evaluation_pages import add_evaluation_routes
from gateway.console.list_exports import add_export_routes
from gateway.console.notice_pages import notices_page, verification_page
from gateway.console.register_pages import add_register_routes
from gateway.console.rendering import static_file
from gateway.console.request_pages import add_request_routes
from gateway.console.scorecard_pages import add_scorecard_routes
from gateway.console.services import CONSOLE_KEY, ConsoleServices
from gateway.console.sessions import harden
from gateway.console.settlement_pages import add_settlement_routes


def add_console(app: web.Application, services: ConsoleServices) -> None:
    """Register the console's pages, static files and JSON API on ``app``."""
    app[CONSOLE_KEY] = services

    async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
        # Every answer of the app, a 404 for an unknown path included, not only the
        # console's own pages.
        harden(response, secure=services.auth.secure(request))

    app.on_response_prepare.append(security_headers)
    app.middlewares.append(languages.language_middleware)
    router = app.router
    router.add_get("/login", login.login_form)
    router.add_post("/login", login.login_submit)
    router.add_post("/logout", login.logout)
    router.add_post("/language", languages.switch_language)
    router.add_get("/", pages.dashboard)
    router.add_get("/search", search.search_page)
    router.add_post("/search", search.search_page)
    router.add_get("/mismatches", pages.mismatch_queue)
    router.add_post("/mismatches/bulk", pages.bulk_action)
    router.add_post("/mismatches/views", saved_views.create_view)
    router.add_post("/mismatches/views/{view_id}/delete", saved_views.remove_view)
    router.add_get("/mismatches/{mismatch_id}", pages.mismatch_page)
    router.add_post("/mismatches/{mismatch_id}/actions", pages.mismatch_action)
    router.add_get("/cases", case_pages.case_list)
    router.add_post("/cases", case_pages.find_cases)
    router.add_get("/cases/{case_id}", case_pages.case_page)
    router.add_post("/cases/{case_id}/reveal", case_pages.reveal_pii)
    router.add_post("/cases/{case_id}/actions", case_pages.case_action)
    router.add_post("/cases/{case_id}/evidence", case_evidence.download_bundle)
    router.add_post("/cases/{case_id}/letters/{letter_no}", case_letters.download_letter)
    router.add_get("/agencies", pages.agencies_page)
    router.add_get("/agencies/{agency_id}", pages.agency_page)
    router.add_get("/users", pages.users_page)
    router.add_post("/users", pages.users_add)
    router.add_post("/users/{name}/{switch:disable|enable}", pages.users_switch)
    router.add_get("/audit/pii", pages.reveals_page)
    router.add_get("/notices", notices_page)
    router.add_get("/verification", verification_page)
    router.add_get("/static/{name}", static_file)
    add_approval_routes(app)
    add_request_routes(app)
    add_register_routes(app)
    add_complaint_routes(app)
    add_conduct_routes(app)
    add_settlement_routes(app)
    add_evaluation_routes(app)
    add_scorecard_routes(app)
    add_api_routes(app)
    add_export_routes(app, api_prefix=PREFIX)


__all__ = ["CONSOLE_KEY", "ConsoleServices", "add_console"]
