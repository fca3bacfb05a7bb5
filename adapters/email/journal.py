"""The store side of outbound email: the mail sent, what each mail carried, and bounces.

Every function works in the caller's open transaction and never commits.

* ``record_attempt`` writes the exact bytes of a mail (with an evidence leaf of kind ``mail``)
  and the outbox items it carries *before* the first byte goes to the SMTP server, so an
  attempt whose answer never came is still on record; ``record_answer`` adds the answer.
* ``dispatches`` and ``dispatches_by_ref`` say which outbox items a mail carried, so a reply
  or a bounce read back finds the placements it is about.
* ``mark_bounced`` turns a delivery-status failure into a dead outbox item and a
  ``dead_delivery`` mismatch, as the dispatcher does for a send that was given up.

What the firm's mailbox hands back is stored by adapters.email.inbox_store.
"""

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.evidence.log import LeafInput, append_leaves
from gateway.reconciliation.kinds import MismatchDraft
from gateway.reconciliation.recorder import insert_mismatches
from gateway.store.database import dialect_insert
from gateway.store.mail_tables import MailDispatch, MailMessage
from gateway.store.tables import OutboxItem

MESSAGES = MailMessage.__table__  # type: ignore[attr-defined]
DISPATCHES = MailDispatch.__table__  # type: ignore[attr-defined]
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
    "attempt_count",
    "dispatches",
    "dispatches_by_ref",
    "mark_bounced",
    "record_answer",
    "record_attempt",
    "sent_before",
]
