"""Who may call a console handler, enforced on the server for every route.

``page(role)`` guards an HTML handler: no session → redirect to the login page; a POST
without the session's CSRF token, or from another origin → 403; a role below ``role`` → 403.
``api(role)`` guards a JSON handler the same way, answering RFC 9457 problem+json: a bearer
API token or the session cookie (then unsafe methods need the ``X-CSRF-Token`` header).
Both translate the core's errors (NotFound → 404, ActionRefused → 409, other GatewayError
→ 400) and add the security headers. Roles, weakest first: viewer, operator, admin.
"""

import json
from collections.abc import Awaitable, Callable
from functools import wraps
from urllib.parse import quote

from aiohttp import web

from gateway.console.i18n import N_, _
from gateway.console.rendering import error_page
from gateway.console.services import CONSOLE_KEY
from gateway.console.sessions import (
    CSRF_FIELD,
    CSRF_HEADER,
    Principal,
    csrf_matches,
    harden,
    same_origin,
)
from gateway.console.vocabulary import term
from gateway.errors import GatewayError, NotFound
from gateway.inbound.problems import PROBLEM_BASE, PROBLEM_CONTENT_TYPE
from gateway.resolutions.rules import ActionRefused

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
GuardedHandler = Callable[[web.Request, Principal], Awaitable[web.StreamResponse]]
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _status_of(error: GatewayError) -> tuple[int, str]:
    if isinstance(error, NotFound):
        return 404, N_("Not found")
    if isinstance(error, ActionRefused):
        return 409, N_("Action refused")
    return 400, N_("Bad request")


def page(role: str = "viewer") -> Callable[[GuardedHandler], Handler]:
    """Guard an HTML page handler (see the module docstring)."""

    def decorate(handler: GuardedHandler) -> Handler:
        @wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            auth = request.app[CONSOLE_KEY].auth
            principal = await auth.from_cookie(request)
            response: web.StreamResponse
            if principal is None:
                target = request.path_qs if request.method == "GET" else "/"
                response = web.Response(
                    status=303, headers={"Location": f"/login?next={quote(target, safe='')}"}
                )
            elif not same_origin(request):
                response = error_page(
                    principal, 403, _("Refused"), _("The form came from elsewhere.")
                )
            elif request.method in UNSAFE_METHODS and not csrf_matches(
                principal, _text((await request.post()).get(CSRF_FIELD))
            ):
                response = error_page(
                    principal,
                    403,
                    _("Form expired"),
                    _(
                        "This form is no longer valid (stale page or new session). "
                        "Reload the page and try again."
                    ),
                )
            elif not principal.user.at_least(role):
                response = error_page(
                    principal,
                    403,
                    _("Not allowed"),
                    _("This needs the %(role)s role; you are signed in as a %(yours)s.")
                    % {"role": term(role), "yours": term(principal.user.role)},
                )
            else:
                try:
                    response = await handler(request, principal)
                except GatewayError as exc:
                    status, title = _status_of(exc)
                    response = error_page(principal, status, _(title), str(exc))
            harden(response, secure=auth.secure(request))
            return response

        return guarded

    return decorate


def problem(request: web.Request, status: int, title: str, detail: str) -> web.Response:
    body = {
        "type": PROBLEM_BASE + title.lower().replace(" ", "-"),
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.path,
    }
    headers = {"WWW-Authenticate": 'Bearer realm="agency-gateway"'} if status == 401 else {}
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        content_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )


def api(role: str = "viewer") -> Callable[[GuardedHandler], Handler]:
    """Guard a JSON API handler (see the module docstring)."""

    def decorate(handler: GuardedHandler) -> Handler:
        @wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            auth = request.app[CONSOLE_KEY].auth
            principal = await auth.from_bearer(request)
            if principal is None and "Authorization" not in request.headers:
                principal = await auth.from_cookie(request)
            response: web.StreamResponse
            if principal is None:
                response = problem(
                    request,
                    401,
                    "Unauthorized",
                    "Send 'Authorization: Bearer <token>' (see `users token`) or log in.",
                )
            elif (
                principal.via == "session"
                and request.method in UNSAFE_METHODS
                and not (
                    same_origin(request)
                    and csrf_matches(principal, request.headers.get(CSRF_HEADER))
                )
            ):
                response = problem(
                    request, 403, "Forbidden", f"A session call must send the {CSRF_HEADER} header."
                )
            elif not principal.user.at_least(role):
                response = problem(
                    request, 403, "Forbidden", f"This needs the {role} role or stronger."
                )
            else:
                try:
                    response = await handler(request, principal)
                except GatewayError as exc:
                    status, title = _status_of(exc)
                    response = problem(request, status, title, str(exc))
            harden(response, secure=auth.secure(request))
            return response

        return guarded

    return decorate


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


__all__ = ["api", "page", "problem"]
