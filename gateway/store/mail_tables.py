"""Tables of the law-firm email channel: mail sent, what each mail carried, mailbox state,
and every message read back from the firm's mailbox.

SQLModel needs runtime annotations here: no `from __future__ import annotations`.
"""

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from gateway.store.types import UtcDateTime


def _ts(nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(UtcDateTime(), nullable=nullable)


class MailMessage(SQLModel, table=True):
    """One SMTP attempt: the exact bytes put on the wire and the server's answer.

    ``state``: ``sending`` (written before the first byte leaves) → ``accepted`` (2xx),
    ``deferred`` (4xx), ``refused`` (5xx), ``unknown`` (no answer after DATA); an accepted
    message becomes ``bounced`` when a delivery-status report says it failed.
    """

    __tablename__ = "mail_messages"

    id: int | None = Field(default=None, primary_key=True)
    agency_id: str = Field(max_length=32, index=True)
    message_id: str = Field(max_length=300, index=True)
    ref: str = Field(max_length=64, description="dedupe key, or the batch reference")
    attempt_no: int
    envelope_from: str = Field(max_length=320)
    recipients: str = Field(max_length=2000)
    body: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    body_sha256: str = Field(max_length=64)
    possible_duplicate: bool
    dsn: bool = Field(description="DSN parameters were sent (the server offered DSN)")
    state: str = Field(max_length=16)
    smtp_code: int | None = None
    smtp_answer: str | None = Field(default=None, max_length=2000)
    bounce_reason: str | None = Field(default=None, max_length=1000)
    created_at: datetime = Field(sa_column=_ts())
    answered_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))


class MailDispatch(SQLModel, table=True):
    """Which outbox items a Message-ID carries: one for a per-case mail, several for a batch."""

    __tablename__ = "mail_dispatches"
    __table_args__ = (sa.UniqueConstraint("message_id", "outbox_id", name="uq_mail_dispatch"),)

    id: int | None = Field(default=None, primary_key=True)
    message_id: str = Field(max_length=300, index=True)
    agency_id: str = Field(max_length=32)
    outbox_id: int = Field(foreign_key="outbox.id", index=True)
    dedupe_key: str = Field(max_length=64)
    placement_id: str = Field(max_length=128, index=True)
    created_at: datetime = Field(sa_column=_ts())


class MailboxState(SQLModel, table=True):
    """Where reading a mailbox stopped: a new UIDVALIDITY means rescan from UID 1."""

    __tablename__ = "mailbox_state"

    agency_id: str = Field(primary_key=True, max_length=32)
    mailbox: str = Field(primary_key=True, max_length=200)
    uidvalidity: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    last_uid: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    updated_at: datetime = Field(sa_column=_ts())


class MailReply(SQLModel, table=True):
    """A message read from the firm's mailbox and what became of it.

    ``kind``: ``reply`` (events applied), ``unparsed`` (matched, no usable events),
    ``unmatched`` (no dispatch found), ``bounce``, ``delivery_report`` (not a failure),
    ``duplicate`` (its Message-ID was read before; nothing applied twice), ``unverified``
    (its signature did not vouch for it; nothing read). ``signature``: ``verified`` (by the
    pinned certificate ``signer_sha256``), ``unsigned``, ``invalid``, ``unknown_signer`` or
    ``not_checked`` (adapters.email.reply_signature).
    """

    __tablename__ = "mail_replies"
    __table_args__ = (
        sa.UniqueConstraint("agency_id", "mailbox", "uidvalidity", "uid", name="uq_mail_reply"),
    )

    id: int | None = Field(default=None, primary_key=True)
    agency_id: str = Field(max_length=32, index=True)
    mailbox: str = Field(max_length=200)
    uidvalidity: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    uid: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    inbound_id: int | None = Field(default=None, foreign_key="inbound_messages.id")
    rfc_message_id: str | None = Field(default=None, max_length=300)
    kind: str = Field(max_length=16)
    matched_message_id: str | None = Field(default=None, max_length=300)
    events: int = 0
    detail: str = Field(default="", max_length=1000)
    signature: str = Field(default="", max_length=16)
    signer_sha256: str | None = Field(default=None, max_length=64)
    received_at: datetime = Field(sa_column=_ts())


__all__ = ["MailDispatch", "MailMessage", "MailReply", "MailboxState"]
