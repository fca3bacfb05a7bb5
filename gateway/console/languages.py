"""Which language and time zone each console response uses, and the header's switch.

The language is, first match wins: ``?lang=`` on the URL (for links; that response only), the
``agw_lang`` cookie that the header's switch sets (``POST /language``, a guarded form with the
session's CSRF token; the login page's form carries the choice into the login), then the
config's ``console.language``. Times are shown in ``reconciliation.timezone``.
"""

from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.console.guards import page
from gateway.console.i18n import Display, language_of, use
from gateway.console.services import CONSOLE_KEY, read_form
from gateway.console.sessions import Principal

LANGUAGE_COOKIE: Final = "agw_lang"
QUERY: Final = "lang"


def _back(target: str | None) -> str:
    """``target`` when it is a path on this site, else the dashboard."""
    text = target or ""
    local = text.startswith("/") and not text.startswith("//") and "\\" not in text
    return text if local and text.isprintable() else "/"


def _here(request: web.Request) -> str:
    """The page asked for, its filters kept and ``lang`` dropped (where the switch goes back)."""
    if request.method != "GET":
        return "/"
    kept = [(k, v) for k, v in request.query.items() if k != QUERY]
    return str(request.rel_url.with_query(kept))


def chosen(request: web.Request, default: str) -> str:
    """The request's language tag (see the module docstring)."""
    return (
        language_of(request.query.get(QUERY))
        or language_of(request.cookies.get(LANGUAGE_COOKIE))
        or language_of(default)
        or "zh-CN"
    )


def remember(response: web.StreamResponse, request: web.Request, language: str) -> None:
    """Keep ``language`` for this browser (a year; not a secret, so readable by nobody else
    only because it is same-site)."""
    response.set_cookie(
        LANGUAGE_COOKIE,
        language,
        max_age=365 * 24 * 3600,
        path="/",
        secure=request.app[CONSOLE_KEY].auth.secure(request),
        httponly=True,
        samesite="Lax",
    )


@web.middleware
async def language_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render everything this request answers in its language and the lender's zone."""
    services = request.app[CONSOLE_KEY]
    display = Display(
        chosen(request, services.settings.language),
        services.zone,
        _here(request),
    )
    with use(display):
        response = await handler(request)
    if response.content_type == "text/html":  # the pages; the JSON APIs speak English
        response.headers.setdefault("Content-Language", display.language)
    return response


@page("viewer")
async def switch_language(request: web.Request, principal: Principal) -> web.StreamResponse:
    """``POST /language`` (``lang``, ``next``): remember the language, go back to the page."""
    form = await read_form(request)
    language = language_of(form.get(QUERY))
    if language is None:
        raise web.HTTPBadRequest(text="lang: use zh-CN or en")
    response = web.Response(status=303, headers={"Location": _back(form.get("next"))})
    remember(response, request, language)
    return response


__all__ = [
    "LANGUAGE_COOKIE",
    "QUERY",
    "chosen",
    "language_middleware",
    "remember",
    "switch_language",
]
