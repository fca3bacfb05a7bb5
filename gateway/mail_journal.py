"""The store side of the email channel: mail sent, mailbox state, messages read back.

Every function works in the caller's open transaction and never commits.

* ``record_attempt`` writes the exact bytes of a mail (with an evidence leaf of kind ``mail``)
  and the outbox items it carries *before* the first byte goes to the SMTP server, so an
  attempt whose answer never came is still on record; ``record_answer`` adds the answer.
* ``store_raw`` keeps a message read from the firm's mailbox (or a sheet handed over by other
  means) in ``inbound_messages`` with an ``inbound`` evidence leaf; its Message-ID (or the
  sheet's hash) is the external id, so the same message is never applied twice.
* ``mark_bounced`` turns a delivery-status failure into a dead outbox item and a
  ``dead_delivery`` mismatch, as the dispatcher does for a send that was given up.
"""

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.evidence import LeafInput, append_leaves
from gateway.reconciler import IncomingEvent, apply_events, insert_mismatches
from gateway.reconciliation import MismatchDraft
from gateway.store.database import dialect_insert
from gateway.store.mail_tables import MailboxState, MailDispatch, MailMessage, MailReply
from gateway.store.tables import InboundMessage, OutboxItem
from schemas.events import AgencyEvent

MESSAGES = MailMessage.__table__  # type: ignore[attr-defined]
DISPATCHES = MailDispatch.__table__  # type: ignore[attr-defined]
MAILBOXES = MailboxState.__table__  # type: ignore[attr-defined]
REPLIES = MailReply.__table__  # type: ignore[attr-defined]
INBOUND = InboundMessage.__table__  # type: ignore[attr-defined]
OUTBOX = OutboxItem.__table__  # type: ignore[attr-defined]

MAY_HAVE_ARRIVED = ("sending", "accepted", "unknown", "bounced")
"""Attempt states after which a resend of the same Message-ID may be a duplicate."""


@dataclass(frozen=True, slots=True)
class CarriedItem:
    """An outbox item a mail carries."""

    outbox_id: int
    dedupe_key: str
    placement_id: str


@dataclass(frozen=True, slots=True)
class Dispatch:
    message_id: str
    outbox_id: int
    dedupe_key: str
    placement_id: str


async def sent_before(conn: AsyncConnection, message_id: str) -> bool:
    """True when an earlier attempt with this Message-ID may have reached the firm."""
    row = await conn.execute(
        sa.select(MESSAGES.c.id)
        .where(MESSAGES.c.message_id == message_id, MESSAGES.c.state.in_(MAY_HAVE_ARRIVED))
        .limit(1)
    )
    return row.first() is not None


async def attempt_count(conn: AsyncConnection, message_id: str) -> int:
    """How many attempts were recorded for this Message-ID."""
    count = await conn.execute(
        sa.select(sa.func.count()).where(MESSAGES.c.message_id == message_id)
    )
    return int(count.scalar_one())


async def record_attempt(
    conn: AsyncConnection,
    *,
    agency_id: str,
    message_id: str,
    ref: str,
    attempt_no: int,
    envelope_from: str,
    recipients: Sequence[str],
    body: bytes,
    possible_duplicate: bool,
    dsn: bool,
    items: Sequence[CarriedItem],
    now: datetime,
) -> int:
    """Store the mail about to be sent; return its row id."""
    sha256 = hashlib.sha256(body).hexdigest()
    mail_id = (
        await conn.execute(
            MESSAGES.insert()
            .values(
                agency_id=agency_id,
                message_id=message_id,
                ref=ref,
                attempt_no=attempt_no,
                envelope_from=envelope_from,
                recipients=", ".join(recipients)[:2000],
                body=body,
                body_sha256=sha256,
                possible_duplicate=possible_duplicate,
                dsn=dsn,
                state="sending",
                created_at=now,
            )
            .returning(MESSAGES.c.id)
        )
    ).scalar_one()
    await conn.execute(
        dialect_insert(conn, DISPATCHES).on_conflict_do_nothing(
            index_elements=["message_id", "outbox_id"]
        ),
        [
            {
                "message_id": message_id,
                "agency_id": agency_id,
                "outbox_id": item.outbox_id,
                "dedupe_key": item.dedupe_key,
                "placement_id": item.placement_id,
                "created_at": now,
            }
            for item in items
        ],
    )
    await append_leaves(
        conn,
        [
            LeafInput(
                kind="mail",
                ref=f"mail:{mail_id}",
                fields={
                    "mail_id": mail_id,
                    "agency_id": agency_id,
                    "message_id": message_id,
                    "sha256": sha256,
                    "attempt_no": attempt_no,
                    "outbox_ids": [item.outbox_id for item in items],
                    "possible_duplicate": possible_duplicate,
                },
            )
        ],
        now=now,
    )
    return int(mail_id)


async def record_answer(
    conn: AsyncConnection,
    mail_id: int,
    *,
    state: str,
    code: int | None,
    answer: str | None,
    now: datetime,
) -> None:
    await conn.execute(
        MESSAGES.update()
        .where(MESSAGES.c.id == mail_id)
        .values(
            state=state,
            smtp_code=code,
            smtp_answer=answer[:2000] if answer else None,
            answered_at=now,
        )
    )


async def dispatches(
    conn: AsyncConnection, agency_id: str, message_ids: Sequence[str]
) -> list[Dispatch]:
    """What the given Message-IDs carried, for this agency, in the order given."""
    if not message_ids:
        return []
    rows = (
        await conn.execute(
            sa.select(
                DISPATCHES.c.message_id,
                DISPATCHES.c.outbox_id,
                DISPATCHES.c.dedupe_key,
                DISPATCHES.c.placement_id,
            )
            .where(
                DISPATCHES.c.agency_id == agency_id,
                DISPATCHES.c.message_id.in_(sorted(set(message_ids))),
            )
            .order_by(DISPATCHES.c.id)
        )
    ).all()
    found = [Dispatch(*r) for r in rows]
    order = {m: n for n, m in enumerate(message_ids)}
    return sorted(found, key=lambda d: order.get(d.message_id, len(order)))


async def dispatches_by_ref(
    conn: AsyncConnection, agency_id: str, *, placement_id: str | None, ref: str | None
) -> list[Dispatch]:
    """The latest mail that carried a placement, or the mail of a batch reference."""
    if ref is not None:
        message_ids = (
            await conn.execute(
                sa.select(MESSAGES.c.message_id)
                .where(MESSAGES.c.agency_id == agency_id, MESSAGES.c.ref == ref)
                .limit(1)
            )
        ).scalars()
        return await dispatches(conn, agency_id, list(message_ids))
    row = (
        await conn.execute(
            sa.select(DISPATCHES.c.message_id)
            .where(DISPATCHES.c.agency_id == agency_id, DISPATCHES.c.placement_id == placement_id)
            .order_by(DISPATCHES.c.id.desc())
            .limit(1)
        )
    ).first()
    if row is None:
        return []
    found = await dispatches(conn, agency_id, [row[0]])
    return [d for d in found if d.placement_id == placement_id]


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
) -> tuple[int, bool]:
    """Keep a raw inbound message with its evidence leaf; (inbound id, newly stored).

    A message whose external id was stored before is not stored again: the first copy's id
    comes back with ``False``.
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
                signature_scheme="none",
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


@dataclass(frozen=True, slots=True)
class SheetImport:
    inbound_id: int
    new: bool
    applied: int


async def record_sheet(
    conn: AsyncConnection,
    *,
    agency_id: str,
    data: bytes,
    events: Sequence[AgencyEvent],
    refused_lines: int,
    now: datetime,
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
    await apply_events(
        conn, [IncomingEvent(agency_id, inbound_id, e, now) for e in events], now=now
    )
    return SheetImport(inbound_id, True, len(events))


async def mark_bounced(
    conn: AsyncConnection, agency_id: str, message_id: str, reason: str, now: datetime
) -> list[Dispatch]:
    """A delivery-status failure: the mail is bounced, its outbox items dead, ops told."""
    carried = await dispatches(conn, agency_id, [message_id])
    await conn.execute(
        MESSAGES.update()
        .where(MESSAGES.c.message_id == message_id, MESSAGES.c.state == "accepted")
        .values(state="bounced", bounce_reason=reason[:1000])
    )
    if not carried:
        return []
    ids = [d.outbox_id for d in carried]
    error = f"bounced: {reason}"[:2000]
    await conn.execute(
        OUTBOX.update()
        .where(OUTBOX.c.id.in_(ids), OUTBOX.c.state == "delivered")
        .values(state="dead", last_error=error)
    )
    types: dict[int, str] = dict(
        (
            await conn.execute(
                sa.select(OUTBOX.c.id, OUTBOX.c.packet_type).where(OUTBOX.c.id.in_(ids))
            )
        ).all()
    )
    await insert_mismatches(
        conn,
        [
            (
                f"dead_delivery:outbox:{d.outbox_id}",
                MismatchDraft(
                    "dead_delivery",
                    d.placement_id,
                    f"{types.get(d.outbox_id, 'mail')} to {agency_id} bounced: {reason}"[:1000],
                    {"message_id": message_id, "dedupe_key": d.dedupe_key},
                    {"delivery_status": reason[:500]},
                ),
                agency_id,
                None,
                d.outbox_id,
            )
            for d in carried
        ],
        now=now,
    )
    return carried


__all__ = [
    "MAY_HAVE_ARRIVED",
    "CarriedItem",
    "Dispatch",
    "SheetImport",
    "attempt_count",
    "dispatches",
    "dispatches_by_ref",
    "mailbox_position",
    "mark_bounced",
    "raise_mismatch",
    "record_answer",
    "record_attempt",
    "record_reply",
    "record_sheet",
    "save_mailbox_position",
    "sent_before",
    "set_inbound_status",
    "store_raw",
]
