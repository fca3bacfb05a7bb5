"""Console accounts: users with roles, password hashing, API tokens, and rate-limited login.

Passwords are hashed with scrypt (RFC 7914, ``hashlib.scrypt``): N = 2^15, r = 8, p = 1, a
32-byte key and a 16-byte random salt per user, stored as
``scrypt$<log2 N>$<r>$<p>$<salt b64>$<key b64>`` so the cost can be raised later without
breaking stored hashes. One check costs about 32 MiB and tens of milliseconds; it runs in a
worker thread. API tokens and session ids are 256-bit random values; only their SHA-256 is
stored. Login is refused after ``login_max_failures`` failures for one name (or four times
that from one address) within ``login_window_minutes``, counted since the last success.
"""

import asyncio
import base64
import binascii
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.errors import GatewayError, LoginRefused, LoginThrottled, NotFound
from gateway.resolutions.rules import ROLES
from gateway.store.console_tables import ApiToken, ConsoleSession, ConsoleUser, LoginAttempt
from gateway.store.database import Database

USERS = ConsoleUser.__table__  # type: ignore[attr-defined]
TOKENS = ApiToken.__table__  # type: ignore[attr-defined]
SESSIONS = ConsoleSession.__table__  # type: ignore[attr-defined]
ATTEMPTS = LoginAttempt.__table__  # type: ignore[attr-defined]
U = USERS.c

SCRYPT_LOG2_N: Final = 15
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
KEY_BYTES: Final = 32
SALT_BYTES: Final = 16
MIN_PASSWORD_CHARS: Final = 12
NAME_PATTERN: Final = r"^[a-z][a-z0-9._-]{1,63}$"
TOKEN_PREFIX: Final = "agw_"
_MAXMEM = 64 * 1024 * 1024
_ZERO_SALT, _ZERO_KEY = base64.b64encode(bytes(SALT_BYTES)), base64.b64encode(bytes(KEY_BYTES))
_DUMMY_HASH = (
    f"scrypt${SCRYPT_LOG2_N}${SCRYPT_R}${SCRYPT_P}${_ZERO_SALT.decode()}${_ZERO_KEY.decode()}"
)


@dataclass(frozen=True, slots=True)
class User:
    id: int
    name: str
    role: str

    def at_least(self, role: str) -> bool:
        """True when this user's role is ``role`` or stronger."""
        return ROLES.index(self.role) >= ROLES.index(role)


def _scrypt(password: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=2**log2_n, r=r, p=p, maxmem=_MAXMEM, dklen=KEY_BYTES
    )


def hash_password(password: str) -> str:
    """The storable scrypt hash of ``password`` with a fresh random salt."""
    salt = secrets.token_bytes(SALT_BYTES)
    key = _scrypt(password, salt, SCRYPT_LOG2_N, SCRYPT_R, SCRYPT_P)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_LOG2_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(key).decode()}"


def verify_password(password: str, encoded: str) -> bool:
    """True when ``password`` matches ``encoded`` (constant-time); False if malformed."""
    try:
        scheme, log2_n, r, p, salt_b64, key_b64 = encoded.split("$")
        salt, key = base64.b64decode(salt_b64), base64.b64decode(key_b64)
        if scheme != "scrypt" or not 10 <= int(log2_n) <= 20:
            return False
        actual = _scrypt(password, salt, int(log2_n), int(r), int(p))
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(actual, key)


def password_problem(password: str) -> str | None:
    """Why ``password`` is not acceptable, or None."""
    if len(password) < MIN_PASSWORD_CHARS:
        return f"the password must have at least {MIN_PASSWORD_CHARS} characters"
    if password.strip() != password:
        return "the password must not start or end with whitespace"
    return None


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def add_user(db: Database, name: str, role: str, password: str, *, now: datetime) -> User:
    """Create a user; raise GatewayError for a bad name, role or password, or a taken name."""
    if not re.fullmatch(NAME_PATTERN, name):
        raise GatewayError(
            f"user name {name!r}: use 2-64 lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter"
        )
    if role not in ROLES:
        raise GatewayError(f"role {role!r}: one of {', '.join(ROLES)}")
    if problem := password_problem(password):
        raise GatewayError(problem)
    encoded = await asyncio.to_thread(hash_password, password)
    async with db.transaction() as conn:
        if (await conn.execute(sa.select(U.id).where(U.name == name))).first() is not None:
            raise GatewayError(f"user {name} already exists")
        row = {
            "name": name,
            "role": role,
            "password_hash": encoded,
            "disabled": False,
            "created_at": now,
            "updated_at": now,
        }
        user_id = (await conn.execute(USERS.insert().returning(U.id), [row])).scalar_one()
    return User(user_id, name, role)


async def list_users(db: Database) -> list[dict[str, object]]:
    """Every user with role, status and activity (no hashes)."""
    sessions = (
        sa.select(SESSIONS.c.user_id, sa.func.max(SESSIONS.c.last_seen_at).label("last_seen_at"))
        .group_by(SESSIONS.c.user_id)
        .subquery()
    )
    tokens = (
        sa.select(TOKENS.c.user_id, sa.func.count().label("tokens"))
        .where(TOKENS.c.revoked_at.is_(None))
        .group_by(TOKENS.c.user_id)
        .subquery()
    )
    query = (
        sa.select(
            U.name,
            U.role,
            U.disabled,
            U.created_at,
            sessions.c.last_seen_at,
            sa.func.coalesce(tokens.c.tokens, 0).label("api_tokens"),
        )
        .outerjoin(sessions, sessions.c.user_id == U.id)
        .outerjoin(tokens, tokens.c.user_id == U.id)
        .order_by(U.name)
    )
    async with db.snapshot() as conn:
        return [dict(r) for r in (await conn.execute(query)).mappings()]


async def set_disabled(db: Database, name: str, *, disabled: bool, now: datetime) -> None:
    """Disable (ends every session and revokes every API token) or re-enable a user."""
    async with db.transaction() as conn:
        user_id = (await conn.execute(sa.select(U.id).where(U.name == name))).scalar()
        if user_id is None:
            raise NotFound(f"no console user {name!r}")
        await conn.execute(
            USERS.update().where(U.id == user_id).values(disabled=disabled, updated_at=now)
        )
        if disabled:
            await conn.execute(SESSIONS.delete().where(SESSIONS.c.user_id == user_id))
            await conn.execute(
                TOKENS.update()
                .where(TOKENS.c.user_id == user_id, TOKENS.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )


async def set_password(db: Database, name: str, password: str, *, now: datetime) -> None:
    """Replace a user's password and end their sessions."""
    if problem := password_problem(password):
        raise GatewayError(problem)
    encoded = await asyncio.to_thread(hash_password, password)
    async with db.transaction() as conn:
        user_id = (await conn.execute(sa.select(U.id).where(U.name == name))).scalar()
        if user_id is None:
            raise NotFound(f"no console user {name!r}")
        await conn.execute(
            USERS.update().where(U.id == user_id).values(password_hash=encoded, updated_at=now)
        )
        await conn.execute(SESSIONS.delete().where(SESSIONS.c.user_id == user_id))


async def create_token(db: Database, name: str, label: str, *, now: datetime) -> str:
    """A new API token acting as ``name``; the only time it is shown."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    async with db.transaction() as conn:
        row = (await conn.execute(sa.select(U.id, U.disabled).where(U.name == name))).first()
        if row is None or row.disabled:
            raise NotFound(f"no active console user {name!r}")
        await conn.execute(
            TOKENS.insert(),
            [
                {
                    "token_hash": token_digest(token),
                    "user_id": row.id,
                    "label": label[:64],
                    "created_at": now,
                }
            ],
        )
    return token


async def user_for_token(db: Database, token: str, *, now: datetime) -> User | None:
    """The active user an API token acts as, or None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    async with db.transaction() as conn:
        row = (
            await conn.execute(
                sa.select(TOKENS.c.id, U.id.label("user_id"), U.name, U.role)
                .join(USERS, U.id == TOKENS.c.user_id)
                .where(
                    TOKENS.c.token_hash == token_digest(token),
                    TOKENS.c.revoked_at.is_(None),
                    U.disabled.is_(False),
                )
            )
        ).first()
        if row is None:
            return None
        await conn.execute(TOKENS.update().where(TOKENS.c.id == row.id).values(last_used_at=now))
    return User(row.user_id, row.name, row.role)


async def active_user(db: Database, name: str) -> User:
    """The active user called ``name``; NotFound otherwise (CLI ``--as``)."""
    async with db.snapshot() as conn:
        row = (
            await conn.execute(
                sa.select(U.id, U.name, U.role).where(U.name == name, U.disabled.is_(False))
            )
        ).first()
    if row is None:
        raise NotFound(f"no active console user {name!r}; create one with `users add`")
    return User(row.id, row.name, row.role)


LOGIN_LOCK_KEY = 0x4556_4C4F_4701_0010
"""PostgreSQL advisory lock that makes the throttle check and the attempt's record one step."""


async def login(
    db: Database,
    name: str,
    password: str,
    *,
    remote: str,
    now: datetime,
    max_failures: int,
    window: timedelta,
) -> User:
    """Check a login; every attempt is recorded. Raise LoginThrottled when the name or the
    address has failed too often recently, LoginRefused for a wrong name or password.

    The attempt is counted before the password is checked, in the same serialised step as the
    throttle check (``BEGIN IMMEDIATE`` on SQLite, an advisory lock on PostgreSQL), and
    recorded as failed until the password proves right: forty parallel guesses get no more
    tries than forty guesses one after another."""
    name = name.strip()[:64]
    remote = remote[:64]
    async with db.transaction() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(LOGIN_LOCK_KEY)))
        throttled = await _throttled(conn, name, remote, now - window, max_failures)
        attempt_id = (
            await conn.execute(
                ATTEMPTS.insert()
                .values(name=name, remote=remote, succeeded=False, at=now)
                .returning(ATTEMPTS.c.id)
            )
        ).scalar_one()
        row = (
            None
            if throttled
            else (
                await conn.execute(
                    sa.select(U.id, U.name, U.role, U.password_hash, U.disabled).where(
                        U.name == name
                    )
                )
            ).first()
        )
    if throttled:
        minutes = int(window.total_seconds() // 60)
        raise LoginThrottled(
            f"too many failed logins for this name or from this address in the last {minutes} "
            "minutes; logins stay refused until fewer have failed in that time"
        )
    # Unknown names cost a hash check too, so timing does not reveal which names exist.
    encoded = row.password_hash if row is not None else _DUMMY_HASH
    matches = await asyncio.to_thread(verify_password, password, encoded)
    if not matches or row is None or row.disabled:
        raise LoginRefused()
    async with db.transaction() as conn:
        await conn.execute(
            ATTEMPTS.update().where(ATTEMPTS.c.id == attempt_id).values(succeeded=True)
        )
    return User(row.id, row.name, row.role)


async def _throttled(
    conn: AsyncConnection, name: str, remote: str, since: datetime, limit: int
) -> bool:
    """Too many failures in the window: for the name, since its last success; for the address,
    all of them (another account's success from the same address resets nothing)."""
    a = ATTEMPTS.c
    last_ok = (
        await conn.execute(sa.select(sa.func.max(a.at)).where(a.name == name, a.succeeded))
    ).scalar()
    name_since = max(since, last_ok) if last_ok is not None else since
    for column, value, start, allowed in (
        (a.name, name, name_since, limit),
        (a.remote, remote, since, limit * 4),
    ):
        failures = (
            await conn.execute(
                sa.select(sa.func.count()).where(
                    column == value, a.succeeded.is_(False), a.at > start
                )
            )
        ).scalar_one()
        if failures >= allowed:
            return True
    return False


__all__ = [
    "LOGIN_LOCK_KEY",
    "MIN_PASSWORD_CHARS",
    "NAME_PATTERN",
    "LoginRefused",
    "LoginThrottled",
    "User",
    "active_user",
    "add_user",
    "create_token",
    "hash_password",
    "list_users",
    "login",
    "password_problem",
    "set_disabled",
    "set_password",
    "token_digest",
    "user_for_token",
    "verify_password",
]
