"""Tables of the ops console: users, sessions, API tokens, login attempts, and the audit of
what people did to mismatches (assignments, comments, actions) and which PII they revealed.

SQLModel needs runtime annotations here: no `from __future__ import annotations`.
Secrets are never stored: sessions and API tokens are kept as SHA-256 of the token, passwords
as scrypt hashes (see gateway/console/accounts.py).
"""

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from gateway.store.types import UtcDateTime


def _ts(nullable: bool = False, index: bool = False) -> sa.Column[datetime]:
    return sa.Column(UtcDateTime(), nullable=nullable, index=index)


class ConsoleUser(SQLModel, table=True):
    """A person who uses the ops console or acts on mismatches from the CLI."""

    __tablename__ = "console_users"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=64)
    role: str = Field(max_length=16, description="viewer|operator|admin")
    password_hash: str = Field(max_length=255, description="scrypt$<log2 n>$<r>$<p>$salt$hash")
    disabled: bool = False
    created_at: datetime = Field(sa_column=_ts())
    updated_at: datetime = Field(sa_column=_ts())


class ConsoleSession(SQLModel, table=True):
    """A logged-in browser. ``id`` is the SHA-256 of the cookie value, never the value."""

    __tablename__ = "console_sessions"

    id: str = Field(primary_key=True, max_length=64)
    user_id: int = Field(foreign_key="console_users.id", index=True)
    csrf_token: str = Field(max_length=64)
    remote: str = Field(max_length=64)
    created_at: datetime = Field(sa_column=_ts())
    last_seen_at: datetime = Field(sa_column=_ts())
    expires_at: datetime = Field(sa_column=_ts(index=True), description="absolute expiry")


class ApiToken(SQLModel, table=True):
    """A bearer token for the JSON API, acting as its user. Stored as SHA-256."""

    __tablename__ = "console_api_tokens"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(unique=True, max_length=64)
    user_id: int = Field(foreign_key="console_users.id", index=True)
    label: str = Field(max_length=64)
    created_at: datetime = Field(sa_column=_ts())
    last_used_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    revoked_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))


class LoginAttempt(SQLModel, table=True):
    """Every login attempt; recent failures per name and per address rate-limit logins."""

    __tablename__ = "console_login_attempts"
    __table_args__ = (
        sa.Index("ix_login_attempts_name_at", "name", "at"),
        sa.Index("ix_login_attempts_remote_at", "remote", "at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64)
    remote: str = Field(max_length=64)
    succeeded: bool
    at: datetime = Field(sa_column=_ts())


class MismatchAssignment(SQLModel, table=True):
    """Who is working a mismatch (at most one person)."""

    __tablename__ = "mismatch_assignments"

    mismatch_id: int = Field(foreign_key="mismatches.id", primary_key=True)
    assignee: str = Field(max_length=64, index=True)
    assigned_by: str = Field(max_length=64)
    assigned_at: datetime = Field(sa_column=_ts())


class MismatchComment(SQLModel, table=True):
    """A note on a mismatch; attested by an ``action`` evidence leaf like every action."""

    __tablename__ = "mismatch_comments"

    id: int | None = Field(default=None, primary_key=True)
    mismatch_id: int = Field(foreign_key="mismatches.id", index=True)
    author: str = Field(max_length=64)
    body: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    evidence_seq: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    created_at: datetime = Field(sa_column=_ts())


class MismatchAction(SQLModel, table=True):
    """The audit of one action on a mismatch: who, why, the state change and its effect.

    ``details`` is JSON (e.g. the outbox item resent, the balance before and after);
    ``evidence_seq`` is the leaf that attests this row; ``batch`` groups a bulk action.
    """

    __tablename__ = "mismatch_actions"

    id: int | None = Field(default=None, primary_key=True)
    mismatch_id: int = Field(foreign_key="mismatches.id", index=True)
    action: str = Field(max_length=24)
    actor: str = Field(max_length=64)
    reason: str = Field(max_length=1000)
    from_state: str = Field(max_length=16)
    to_state: str = Field(max_length=16)
    details: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    batch: str | None = Field(default=None, max_length=32, index=True)
    evidence_seq: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    created_at: datetime = Field(sa_column=_ts())


class PiiReveal(SQLModel, table=True):
    """Someone was shown a case's personal data (which fields, never the values)."""

    __tablename__ = "pii_reveals"

    id: int | None = Field(default=None, primary_key=True)
    user_name: str = Field(max_length=64, index=True)
    case_id: str = Field(max_length=128, index=True)
    fields: str = Field(max_length=200)
    reason: str = Field(max_length=500)
    remote: str = Field(max_length=64)
    evidence_seq: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    created_at: datetime = Field(sa_column=_ts())


class SavedView(SQLModel, table=True):
    """A person's named mismatch-queue filter: ``query`` is the queue's query string."""

    __tablename__ = "console_saved_views"
    __table_args__ = (sa.UniqueConstraint("user_name", "name", name="uq_saved_views_user_name"),)

    id: int | None = Field(default=None, primary_key=True)
    user_name: str = Field(max_length=64, index=True)
    name: str = Field(max_length=80)
    query: str = Field(max_length=2000)
    created_at: datetime = Field(sa_column=_ts())


__all__ = [
    "ApiToken",
    "ConsoleSession",
    "ConsoleUser",
    "LoginAttempt",
    "MismatchAction",
    "MismatchAssignment",
    "MismatchComment",
    "PiiReveal",
    "SavedView",
]
