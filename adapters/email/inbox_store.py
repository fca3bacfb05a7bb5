"""The store side of inbound email: messages read back, what became of them, and where
reading the mailbox stopped.

Every function works in the caller's open transaction and never commits.

* ``store_raw`` keeps a message read from the firm's mailbox (or a sheet handed over by other
  means) in ``inbound_messages`` with an ``inbound`` evidence leaf; its Message-ID (or the
  sheet's hash) is the external id, so the same message is never applied twice.
* ``record_reply`` notes what became of the message at one UID (``mail_replies``);
  ``mailbox_position`` and ``save_mailbox_position`` keep (UIDVALIDITY, last UID).
* ``raise_mismatch`` puts a message that could not be read, matched or trusted in front of
  ops, once per message.
* ``apply_reply_events`` reconciles a reply's events; a settlement answer its statement
  cannot take is returned as refused, for the caller to report like a refused row.
* ``record_sheet`` stores a sheet imported by hand and reconciles its events.

The mail that was sent, and bounces, are kept by adapters.email.journal.
"""

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.evidence.log import LeafInput, append_leaves
from gateway.reconciliation.kinds import MismatchDraft
from gateway.reconciliation.recorder import (
    ArrivalPolicy,
    IncomingEvent,
    apply_events,
    insert_mismatches,
)
from gateway.settlement import answers as settlement_answers
from gateway.store.database import dialect_insert
from gateway.store.mail_tables import MailboxState, MailReply
from gateway.store.tables import InboundMessage
from schemas.events import AgencyEvent

MAILBOXES = MailboxState.__table__  # type: ignore[attr-defined]
REPLIES = MailReply.__table__  # type: ignore[attr-defined]
INBOUND = InboundMessage.__table__  # type: ignore[attr-defined]


async def mailbox_position(
    conn: AsyncConnection, agency_id: str, mailbox: str
) -> tuple[int, int] | None:
    """(UIDVALIDITY, last UID processed), or None for a mailbox never read."""
    row = (
        await conn.execute(
            sa.select(MAILBOXES.c.uidvalidity, MAILBOXES.c.last_uid).where(
                MAILBOXES.c.agency_id == agency_id, MAILBOXES.c.mailbox == mailbox
            )
        )
    ).first()
    return (int(row[0]), int(row[1])) if row is not None else None


async def save_mailbox_position(
    conn: AsyncConnection,
    agency_id: str,
    mailbox: str,
    uidvalidity: int,
    last_uid: int,
    now: datetime,
) -> None:
    updated = await conn.execute(
        MAILBOXES.update()
        .where(MAILBOXES.c.agency_id == agency_id, MAILBOXES.c.mailbox == mailbox)
        .values(uidvalidity=uidvalidity, last_uid=last_uid, updated_at=now)
    )
    if updated.rowcount == 0:
        await conn.execute(
            MAILBOXES.insert().values(
                agency_id=agency_id,
                mailbox=mailbox,
                uidvalidity=uidvalidity,
                last_uid=last_uid,
                updated_at=now,
            )
        )


async def store_raw(
    conn: AsyncConnection,
    *,
    agency_id: str,
    channel: str,
    external_id: str,
    raw: bytes,
    status: str,
    event_type: str | None,
    now: datetime,
    signature_scheme: str = "none",
) -> tuple[int, bool]:
    """Keep a raw inbound message with its evidence leaf; (inbound id, newly stored).

    A message whose external id was stored before is not stored again: the first copy's id
    comes back with ``False``. ``signature_scheme`` says what authenticated it (``smime``
    for a reply whose firm signature verified).
    """
    existing = (
        await conn.execute(
            sa.select(INBOUND.c.id).where(
                INBOUND.c.agency_id == agency_id,
                INBOUND.c.channel == channel,
                INBOUND.c.external_id == external_id,
            )
        )
    ).first()
    if existing is not None:
        return int(existing[0]), False
    sha256 = hashlib.sha256(raw).hexdigest()
    inbound_id = (
        await conn.execute(
            INBOUND.insert()
            .values(
                agency_id=agency_id,
                channel=channel,
                external_id=external_id[:300],
                body=raw,
                body_sha256=sha256,
                signature_scheme=signature_scheme,
                event_type=event_type,
                status=status,
                response_status=0,
                response_body=b"",
                received_at=now,
            )
            .returning(INBOUND.c.id)
        )
    ).scalar_one()
    await append_leaves(
        conn,
        [
            LeafInput(
                kind="inbound",
                ref=f"inbound:{inbound_id}",
                fields={
                    "inbound_id": inbound_id,
                    "sha256": sha256,
                    "agency_id": agency_id,
                    "channel": channel,
                    "external_id": external_id[:300],
                    "status": status,
                },
            )
        ],
        now=now,
    )
    return int(inbound_id), True


async def set_inbound_status(
    conn: AsyncConnection, inbound_id: int, status: str, event_type: str | None
) -> None:
    await conn.execute(
        INBOUND.update()
        .where(INBOUND.c.id == inbound_id)
        .values(status=status, event_type=event_type)
    )


async def record_reply(
    conn: AsyncConnection,
    *,
    agency_id: str,
    mailbox: str,
    uidvalidity: int,
    uid: int,
    inbound_id: int | None,
    rfc_message_id: str | None,
    kind: str,
    matched_message_id: str | None,
    events: int,
    detail: str,
    signature: str,
    signer_sha256: str | None,
    now: datetime,
) -> None:
    await conn.execute(
        dialect_insert(conn, REPLIES).on_conflict_do_nothing(
            index_elements=["agency_id", "mailbox", "uidvalidity", "uid"]
        ),
        {
            "agency_id": agency_id,
            "mailbox": mailbox,
            "uidvalidity": uidvalidity,
            "uid": uid,
            "inbound_id": inbound_id,
            "rfc_message_id": rfc_message_id[:300] if rfc_message_id else None,
            "kind": kind,
            "matched_message_id": matched_message_id,
            "events": events,
            "detail": detail[:1000],
            "signature": signature,
            "signer_sha256": signer_sha256,
            "received_at": now,
        },
    )


async def raise_mismatch(
    conn: AsyncConnection,
    *,
    kind: str,
    agency_id: str,
    placement_id: str | None,
    detail: str,
    ours: dict[str, object],
    theirs: dict[str, object],
    key: str,
    now: datetime,
) -> None:
    """One ops item; ``key`` makes it idempotent (a second poll raises nothing new)."""
    await insert_mismatches(
        conn,
        [
            (
                f"{kind}:{key}",
                MismatchDraft(kind, placement_id, detail, ours, theirs),
                agency_id,
                None,
                None,
            )
        ],
        now=now,
    )


async def apply_reply_events(
    conn: AsyncConnection,
    agency_id: str,
    inbound_id: int,
    events: Sequence[AgencyEvent],
    now: datetime,
    *,
    arrival: ArrivalPolicy | None = None,
) -> list[str]:
    """Reconcile a reply's events in order and return the answers refused. A settlement
    answer (``settlement.confirmed`` / ``settlement.disputed``) is checked against its
    statement as it stands after the events before it (gateway.settlement.answers) and
    applied alone: one the statement cannot take (unknown statement, another revision or
    SHA-256, already confirmed, unknown lines) is still stored and changes nothing, and its
    reason is returned, to be reported like a refused row of the sheet (never dropped)."""
    refused: list[str] = []
    pending: list[IncomingEvent] = []
    for event in events:
        if event.type not in settlement_answers.ANSWER_TYPES:
            pending.append(IncomingEvent(agency_id, inbound_id, event, now))
            continue
        if pending:
            await apply_events(conn, pending, now=now, policy=arrival)
            pending = []
        refusal = await settlement_answers.event_problem(conn, agency_id, event)
        if refusal is not None:
            refused.append(f"{event.type}: {refusal.field}: {refusal.reason}")
        await apply_events(
            conn, [IncomingEvent(agency_id, inbound_id, event, now)], now=now, policy=arrival
        )
    if pending:
        await apply_events(conn, pending, now=now, policy=arrival)
    return refused


@dataclass(frozen=True, slots=True)
class SheetImport:
    inbound_id: int
    new: bool
    applied: int
    refused: tuple[str, ...] = ()
    """Settlement answers the statement could not take (``apply_reply_events``)."""


async def record_sheet(
    conn: AsyncConnection,
    *,
    agency_id: str,
    data: bytes,
    events: Sequence[AgencyEvent],
    refused_lines: int,
    now: datetime,
    arrival: ArrivalPolicy | None = None,
) -> SheetImport:
    """A sheet handed over outside the live channels: stored raw (external id = its hash,
    so importing it twice changes nothing), then its events reconciled like any reply's."""
    external_id = f"sha256:{hashlib.sha256(data).hexdigest()}"
    status = "accepted" if not refused_lines else "partial"
    inbound_id, new = await store_raw(
        conn,
        agency_id=agency_id,
        channel="file",
        external_id=external_id,
        raw=data,
        status=status if events else "invalid",
        event_type=events[0].type if len(events) == 1 else None,
        now=now,
    )
    if not new or not events:
        return SheetImport(inbound_id, new, 0)
    refused = await apply_reply_events(conn, agency_id, inbound_id, events, now, arrival=arrival)
    if refused:
        event_type = events[0].type if len(events) == 1 else None
        await set_inbound_status(conn, inbound_id, "partial", event_type)
    return SheetImport(inbound_id, True, len(events), tuple(refused))


__all__ = [
    "SheetImport",
    "apply_reply_events",
    "mailbox_position",
    "raise_mismatch",
    "record_reply",
    "record_sheet",
    "save_mailbox_position",
    "set_inbound_status",
    "store_raw",
]
