"""Logging in and out of the console: the login form with its own CSRF token (a double-submit
cookie), the throttled check of a name and password (gateway.console.accounts), a fresh
session, and only a path on this site followed afterwards."""

import secrets
from datetime import timedelta
from urllib.parse import urlsplit

from aiohttp import web

from gateway.console import accounts
from gateway.console.guards import page
from gateway.console.i18n import _, language_of
from gateway.console.languages import remember as remember_language
from gateway.console.rendering import render
from gateway.console.services import CONSOLE_KEY, ConsoleServices, read_form
from gateway.console.sessions import Principal, harden, remote_of

LOGIN_COOKIE = "agw_login"


def _services(request: web.Request) -> ConsoleServices:
    return request.app[CONSOLE_KEY]


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def local_path(target: str | None) -> str:
    """Only a path on this site is followed after login (no open redirect). Browsers read
    ``\\`` as ``/`` and drop tabs and newlines inside a URL, so ``/\\evil.example/`` and
    ``/<TAB>/evil.example/`` would leave the site: any such character, a scheme, a host or a
    path that does not start with exactly one ``/`` sends the user home instead."""
    if not target or "\\" in target or any(ord(c) < 0x20 or ord(c) == 0x7F for c in target):
        return "/"
    parts = urlsplit(target)
    path_ok = parts.path.startswith("/") and not parts.path.startswith("//")
    if parts.scheme or parts.netloc or not path_ok:
        return "/"
    return target


async def login_form(
    request: web.Request,
    *,
    error: str = "",
    status: int = 200,
    name: str = "",
    next_: str | None = None,
) -> web.Response:
    """The login page, with a login CSRF token (double-submit cookie). After a failed attempt
    it keeps the name typed and where the user was going."""
    services = _services(request)
    token = secrets.token_urlsafe(24)
    response = render(
        "login.html",
        None,
        status=status,
        error=error,
        login_token=token,
        next=local_path(next_ if next_ is not None else request.query.get("next")),
        name=name,
    )
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        max_age=600,
        path="/login",
        httponly=True,
        samesite="Strict",
        secure=services.auth.secure(request),
    )
    harden(response, secure=services.auth.secure(request))
    return response


async def login_submit(request: web.Request) -> web.StreamResponse:
    services = _services(request)
    form = await read_form(request)
    presented, expected = form.get("login_token"), request.cookies.get(LOGIN_COOKIE)
    if (
        not isinstance(presented, str)
        or not expected
        or not secrets.compare_digest(presented, expected)
    ):
        return await login_form(request, error=_("The login form expired; try again."), status=403)
    settings = services.settings
    typed = {"name": str(form.get("name", ""))[:64], "next_": str(form.get("next", "/"))}
    try:
        user = await accounts.login(
            services.db,
            typed["name"],
            str(form.get("password", "")),
            remote=remote_of(request),
            now=services.auth.now(),
            max_failures=settings.login_max_failures,
            window=timedelta(minutes=settings.login_window_minutes),
        )
    except accounts.LoginThrottled:
        throttled = _(
            "too many failed logins for this name or from this address in the last %(minutes)s "
            "minutes; logins stay refused until fewer have failed in that time"
        ) % {"minutes": settings.login_window_minutes}
        return await login_form(request, error=throttled, status=429, **typed)
    except accounts.LoginRefused:
        return await login_form(request, error=_("Wrong name or password."), status=401, **typed)
    await services.auth.end_session(request)  # a login never continues an older session
    token = await services.auth.start_session(user, request)
    response = _see_other(local_path(str(form.get("next", "/"))))
    services.auth.set_cookie(response, request, token)
    response.del_cookie(LOGIN_COOKIE, path="/login")
    language = language_of(str(form.get("lang", "")))
    if language is not None:  # the language the login page was shown in stays
        remember_language(response, request, language)
    harden(response, secure=services.auth.secure(request))
    return response


@page("viewer")
async def logout(request: web.Request, principal: Principal) -> web.StreamResponse:
    services = _services(request)
    await services.auth.end_session(request)
    response = _see_other("/login")
    services.auth.clear_cookie(response, request)
    return response


__all__ = ["LOGIN_COOKIE", "local_path", "login_form", "login_submit", "logout"]
