"""How a console request is authenticated: server-side sessions behind a cookie, bearer API
tokens, CSRF tokens and the security headers of every console response.

Sessions
--------
Logging in creates a session: a 256-bit random token goes to the browser in a cookie
(``HttpOnly``, ``SameSite=Strict``, ``Path=/``; ``Secure`` and the ``__Host-`` name prefix when
served over https or when ``[console] cookie_secure = "always"``); the database keeps only its
SHA-256, the user, a CSRF token, and the times that bound it: it ends after
``session_idle_minutes`` without a request and ``session_absolute_hours`` after login, when the
user is disabled, or at logout. A new login always gets a new session (no fixation).

CSRF
----
Every state-changing console form carries the session's CSRF token (synchroniser token) and
is refused without it; JSON API calls authenticated by the cookie must send it in the
``X-CSRF-Token`` header. Calls with a bearer token need no CSRF token (a browser never adds
one by itself). Requests whose ``Origin`` names another host are refused as well.
"""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal
from urllib.parse import urlsplit

import sqlalchemy as sa
from aiohttp import web

from gateway.clock import to_datetime
from gateway.config.settings import ConsoleSection
from gateway.console.accounts import User, user_for_token
from gateway.ports import Clock
from gateway.store.console_tables import ConsoleSession, ConsoleUser
from gateway.store.database import Database

SESSIONS = ConsoleSession.__table__  # type: ignore[attr-defined]
USERS = ConsoleUser.__table__  # type: ignore[attr-defined]
S = SESSIONS.c

COOKIE: Final = "agw_session"
SECURE_COOKIE: Final = "__Host-agw_session"
CSRF_FIELD: Final = "csrf_token"
CSRF_HEADER: Final = "X-CSRF-Token"
_TOUCH_EVERY = timedelta(seconds=60)

CSP: Final = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is making a request, and how they proved it."""

    user: User
    via: Literal["session", "token"]
    csrf_token: str = ""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def remote_of(request: web.Request) -> str:
    return (request.remote or "unknown")[:64]


class Auth:
    """Sessions and tokens over the console tables.

    Args:
        db: the database.
        settings: the ``[console]`` settings (cookie flag, lifetimes).
        clock: time source (tests move it to expire sessions).
    """

    def __init__(self, *, db: Database, settings: ConsoleSection, clock: Clock) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock

    def now(self) -> datetime:
        return to_datetime(self.clock.now())

    def secure(self, request: web.Request) -> bool:
        mode = self.settings.cookie_secure
        return mode == "always" or (mode == "auto" and request.secure)

    def cookie_name(self, request: web.Request) -> str:
        return SECURE_COOKIE if self.secure(request) else COOKIE

    async def start_session(self, user: User, request: web.Request) -> str:
        """A new session for ``user``; returns the cookie value (shown once, never stored)."""
        token = secrets.token_urlsafe(32)
        now = self.now()
        absolute = timedelta(hours=self.settings.session_absolute_hours)
        async with self.db.transaction() as conn:
            await conn.execute(SESSIONS.delete().where(S.expires_at < now))
            await conn.execute(
                SESSIONS.insert(),
                [
                    {
                        "id": _digest(token),
                        "user_id": user.id,
                        "csrf_token": secrets.token_urlsafe(32),
                        "remote": remote_of(request),
                        "created_at": now,
                        "last_seen_at": now,
                        "expires_at": now + absolute,
                    }
                ],
            )
        return token

    async def from_cookie(self, request: web.Request) -> Principal | None:
        """The principal of the request's session cookie, or None (absent, expired, ended)."""
        token = request.cookies.get(self.cookie_name(request))
        if not token:
            return None
        now = self.now()
        idle = timedelta(minutes=self.settings.session_idle_minutes)
        key = _digest(token)
        async with self.db.snapshot() as conn:
            row = (
                await conn.execute(
                    sa.select(
                        S.csrf_token,
                        S.last_seen_at,
                        S.expires_at,
                        USERS.c.id,
                        USERS.c.name,
                        USERS.c.role,
                        USERS.c.disabled,
                    )
                    .join(USERS, USERS.c.id == S.user_id)
                    .where(S.id == key)
                )
            ).first()
        if row is None:
            return None
        if row.disabled or now >= row.expires_at or now - row.last_seen_at > idle:
            async with self.db.transaction() as conn:
                await conn.execute(SESSIONS.delete().where(S.id == key))
            return None
        if now - row.last_seen_at > _TOUCH_EVERY:
            async with self.db.transaction() as conn:
                await conn.execute(SESSIONS.update().where(S.id == key).values(last_seen_at=now))
        return Principal(User(row.id, row.name, row.role), "session", row.csrf_token)

    async def from_bearer(self, request: web.Request) -> Principal | None:
        """The principal of an ``Authorization: Bearer`` API token, or None."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        user = await user_for_token(self.db, token.strip(), now=self.now())
        return None if user is None else Principal(user, "token")

    async def end_session(self, request: web.Request) -> None:
        token = request.cookies.get(self.cookie_name(request))
        if token:
            async with self.db.transaction() as conn:
                await conn.execute(SESSIONS.delete().where(S.id == _digest(token)))

    def set_cookie(self, response: web.StreamResponse, request: web.Request, token: str) -> None:
        response.set_cookie(
            self.cookie_name(request),
            token,
            max_age=self.settings.session_absolute_hours * 3600,
            path="/",
            secure=self.secure(request),
            httponly=True,
            samesite="Strict",
        )

    def clear_cookie(self, response: web.StreamResponse, request: web.Request) -> None:
        response.del_cookie(
            self.cookie_name(request),
            path="/",
            secure=self.secure(request),
            httponly=True,
            samesite="Strict",
        )


def csrf_matches(principal: Principal, presented: str | None) -> bool:
    """True when ``presented`` is this session's CSRF token (constant-time)."""
    if not principal.csrf_token or not presented:
        return False
    return hmac.compare_digest(principal.csrf_token.encode(), presented.encode())


def same_origin(request: web.Request) -> bool:
    """False when the request says it comes from a page on another host."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return origin != "null" and urlsplit(origin).netloc == request.host


def harden(response: web.StreamResponse, *, secure: bool) -> None:
    """The security headers of every console response."""
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CSP)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("Cache-Control", "no-store")
    if secure:
        headers.setdefault("Strict-Transport-Security", "max-age=31536000")


__all__ = [
    "COOKIE",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "SECURE_COOKIE",
    "Auth",
    "Principal",
    "csrf_matches",
    "harden",
    "remote_of",
    "same_origin",
]
