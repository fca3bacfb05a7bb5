"""What becomes of one message read from a firm's mailbox: it is stored, classified, and its
effects written, all in the caller's transaction.

A message is one of:

* a **duplicate**: its Message-ID was stored before. Nothing is applied twice.
* a **bounce** (RFC 3464, action ``failed``): the mail it names is marked bounced, its outbox
  items dead, and a ``dead_delivery`` mismatch raised. Other reports (delayed, delivered)
  are only recorded.
* a reply the firm's signature does not vouch for (adapters.email.reply_signature: unsigned where
  a signature is required, a bad signature, an unknown signer): nothing in it is read; an
  ``unverified_reply`` mismatch names why.
* a **reply** matched to a dispatch (In-Reply-To / References, else the subject tag): its
  events are reconciled like webhook events. No usable events, bad lines, or a settlement
  answer its statement cannot take (another revision or SHA-256, an unknown statement or
  line), raise an ``unparsed_reply`` mismatch naming each.
* **unmatched**: no dispatch found; an ``unmatched_reply`` mismatch. The raw message is kept
  in every case, never dropped.

Whatever the kind, the message's UID is recorded with it and the mailbox position moves past
it in the same transaction (adapters.email.mailbox reads the messages and commits).
"""

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.email import inbox_store as mail_inbox_store, journal as mail_journal
from adapters.email.headers import message_id_for
from adapters.email.journal import Dispatch
from adapters.email.reply import ReadMessage, read_message, reply_events, subject_ref, verp_ref
from adapters.email.reply_signature import OpenedReply, ReplyOpener, build_reply_opener
from gateway.config.agencies import EmailAgency
from gateway.inbound.sheets import RowDefaults
from gateway.reconciliation.recorder import ArrivalPolicy

CHANNEL = "email"


class MailTriage:
    """Files the messages read from one firm's mailbox.

    Args:
        agency: the firm.
        mailbox: the IMAP mailbox the messages are read from (their UIDs count in it).
        arrival: the lender's rules the replies' events are judged by as they arrive.
    """

    def __init__(
        self, *, agency: EmailAgency, mailbox: str, arrival: ArrivalPolicy | None = None
    ) -> None:
        self._agency = agency
        self._mailbox = mailbox
        self._arrival = arrival

    async def process(
        self,
        conn: AsyncConnection,
        opened: OpenedReply,
        *,
        uidvalidity: int,
        uid: int,
        now: datetime,
    ) -> str:
        """Store, classify and apply one opened message in the caller's transaction; its
        kind."""
        agency_id = self._agency.id
        raw = opened.raw
        message = read_message(raw, None if opened.content is raw else opened.content)
        external_id = message.message_id or "sha256:" + hashlib.sha256(raw).hexdigest()
        inbound_id, new = await mail_inbox_store.store_raw(
            conn,
            agency_id=agency_id,
            channel=CHANNEL,
            external_id=external_id,
            raw=raw,
            status="received",
            event_type=None,
            signature_scheme="smime" if opened.status == "verified" else "none",
            now=now,
        )
        matched: str | None = None
        events = 0
        if not new:
            kind, detail = "duplicate", f"Message-ID already read (inbound {inbound_id})"
        elif message.report is not None:
            kind, detail, matched = await self._report(conn, message, now)
        elif not opened.readable:
            kind, detail, matched = await self._unverified(conn, message, opened, inbound_id, now)
        else:
            kind, detail, matched, events = await self._reply(conn, message, inbound_id, now)
        if new:
            await mail_inbox_store.set_inbound_status(conn, inbound_id, kind, None)
        await mail_inbox_store.record_reply(
            conn,
            agency_id=agency_id,
            mailbox=self._mailbox,
            uidvalidity=uidvalidity,
            uid=uid,
            inbound_id=inbound_id,
            rfc_message_id=message.message_id,
            kind=kind,
            matched_message_id=matched,
            events=events,
            detail=detail,
            signature=opened.status,
            signer_sha256=opened.signer_sha256,
            now=now,
        )
        await mail_inbox_store.save_mailbox_position(
            conn, agency_id, self._mailbox, uidvalidity, uid, now
        )
        return kind

    async def _report(
        self, conn: AsyncConnection, message: ReadMessage, now: datetime
    ) -> tuple[str, str, str | None]:
        report = message.report
        assert report is not None
        domain = self._agency.email.message_id_domain
        ref = report.envelope_id or verp_ref(message.recipients, self._agency.email.bounce_address)
        candidates = [report.original_message_id] if report.original_message_id else []
        if ref:
            candidates.append(message_id_for(ref, domain))
        found = await mail_journal.dispatches(conn, self._agency.id, candidates)
        message_id = found[0].message_id if found else None
        if not report.failed:
            return "delivery_report", report.reason(), message_id
        if message_id is None:
            await self._unmatched(
                conn, message, now, f"bounce for an unknown mail: {report.reason()}"
            )
            return "unmatched", report.reason(), None
        await mail_journal.mark_bounced(conn, self._agency.id, message_id, report.reason(), now)
        return "bounce", report.reason(), message_id

    async def _match(self, conn: AsyncConnection, message: ReadMessage) -> list[Dispatch]:
        found = await mail_journal.dispatches(conn, self._agency.id, list(message.references))
        if found:
            first = found[0].message_id
            return [d for d in found if d.message_id == first]
        ref = subject_ref(message.subject)
        if ref is None:
            return []
        if ref.startswith("batch_"):
            return await mail_journal.dispatches_by_ref(
                conn, self._agency.id, placement_id=None, ref=ref
            )
        return await mail_journal.dispatches_by_ref(
            conn, self._agency.id, placement_id=ref, ref=None
        )

    async def _reply(
        self, conn: AsyncConnection, message: ReadMessage, inbound_id: int, now: datetime
    ) -> tuple[str, str, str | None, int]:
        matched = await self._match(conn, message)
        if not matched:
            await self._unmatched(
                conn,
                message,
                now,
                "no In-Reply-To, References or subject tag names a mail we sent",
                inbound_id,
            )
            return "unmatched", "no dispatch matched", None, 0
        placements = sorted({d.placement_id for d in matched})
        replies = self._agency.email.replies
        # a statement's letter stands on ``statement:<id>``, never a row's placement
        real = [p for p in placements if not p.startswith("statement:")]
        parsed = reply_events(
            message,
            RowDefaults(
                received_at=message.date or now,
                placement_id=real[0] if len(real) == 1 else None,
                currency=replies.default_currency,
                timezone=replies.timezone,
            ),
            sheets=replies.structured_attachment,
            body_form=replies.body_form,
        )
        refused: list[str] = []
        if parsed.events:
            refused = await mail_inbox_store.apply_reply_events(
                conn, self._agency.id, inbound_id, parsed.events, now, arrival=self._arrival
            )
        message_id = matched[0].message_id
        if parsed.errors or refused or not parsed.events:
            # A settlement answer its statement cannot take is a refused row like any other.
            problems = [str(e) for e in parsed.errors] + refused or [
                "no reply sheet (CSV, XLSX, JSON)"
                + (" and no reply form" if replies.body_form else "")
                + " with events was found"
            ]
            await mail_inbox_store.raise_mismatch(
                conn,
                kind="unparsed_reply",
                agency_id=self._agency.id,
                placement_id=placements[0] if len(placements) == 1 else None,
                detail=f"reply to {message_id} could not be read in full: {problems[0]}",
                ours={"message_id": message_id, "placements": placements},
                theirs={
                    "inbound_id": inbound_id,
                    "message_id": message.message_id,
                    "subject": message.subject[:200],
                    "errors": problems[:20],
                    "events_applied": len(parsed.events),
                },
                key=f"inbound:{inbound_id}",
                now=now,
            )
            kind = "unparsed" if not parsed.events else "reply"
            return kind, "; ".join(problems)[:1000], message_id, len(parsed.events)
        return "reply", f"{len(parsed.events)} event(s)", message_id, len(parsed.events)

    async def _unverified(
        self,
        conn: AsyncConnection,
        message: ReadMessage,
        opened: OpenedReply,
        inbound_id: int,
        now: datetime,
    ) -> tuple[str, str, str | None]:
        """A reply whose signature does not vouch for it: kept, shown to ops, never read."""
        matched = await self._match(conn, message)
        message_id = matched[0].message_id if matched else None
        placements = sorted({d.placement_id for d in matched})
        policy = self._agency.email.smime.reply_signature
        await mail_inbox_store.raise_mismatch(
            conn,
            kind="unverified_reply",
            agency_id=self._agency.id,
            placement_id=placements[0] if len(placements) == 1 else None,
            detail=f"{self._agency.id}: a reply was not read: {opened.detail} "
            f"(reply_signature = {policy})",
            ours={"message_id": message_id, "placements": placements, "policy": policy},
            theirs={
                "inbound_id": inbound_id,
                "message_id": message.message_id,
                "subject": message.subject[:200],
                "signature": opened.status,
                "signer_sha256": opened.signer_sha256,
            },
            key=f"inbound:{inbound_id}",
            now=now,
        )
        return "unverified", opened.detail, message_id

    async def _unmatched(
        self,
        conn: AsyncConnection,
        message: ReadMessage,
        now: datetime,
        why: str,
        inbound_id: int | None = None,
    ) -> None:
        key = message.message_id or f"inbound:{inbound_id}"
        await mail_inbox_store.raise_mismatch(
            conn,
            kind="unmatched_reply",
            agency_id=self._agency.id,
            placement_id=None,
            detail=f"{self._agency.id}: a message could not be matched to a dispatch: {why}",
            ours={"references_known": False},
            theirs={
                "inbound_id": inbound_id,
                "message_id": message.message_id,
                "in_reply_to": list(message.references[:5]),
                "subject": message.subject[:200],
            },
            key=key,
            now=now,
        )


@dataclass(frozen=True, slots=True)
class VouchedReplyReader:
    """The email channel's ``gateway.ports.VouchedReplies``: opens the stored reply with the
    firm's reply opener (keys found from ``base_dir``) and reads it like a signed one,
    judging its events by ``arrival`` (the lender's rules)."""

    base_dir: Path
    arrival: ArrivalPolicy | None = None

    async def read(
        self, conn: AsyncConnection, agency: EmailAgency, inbound_id: int, *, now: datetime
    ) -> tuple[str, str, int]:
        opener = build_reply_opener(agency, base_dir=self.base_dir)
        return await vouched_reply(conn, agency, inbound_id, opener, now=now, arrival=self.arrival)


async def vouched_reply(
    conn: AsyncConnection,
    agency: EmailAgency,
    inbound_id: int,
    opener: ReplyOpener,
    *,
    now: datetime,
    arrival: ArrivalPolicy | None = None,
) -> tuple[str, str, int]:
    """Read the stored reply ``inbound_id`` whose signature did not vouch for it, because ops
    has (they confirmed it with the firm): opened with ``opener.open_vouched`` (decrypted,
    taken out of its signed entity), then matched and applied like any reply, in the
    caller's transaction; the stored message is marked with what became of it. Its (kind,
    detail, events applied)."""
    assert agency.email.imap is not None
    raw = bytes(
        (
            await conn.execute(
                sa.select(mail_inbox_store.INBOUND.c.body).where(
                    mail_inbox_store.INBOUND.c.id == inbound_id,
                    mail_inbox_store.INBOUND.c.agency_id == agency.id,
                )
            )
        ).scalar_one()
    )
    opened = await opener.open_vouched(raw)
    if not opened.readable:
        return "unverified", opened.detail, 0
    triage = MailTriage(agency=agency, mailbox=agency.email.imap.mailbox, arrival=arrival)
    message = read_message(raw, None if opened.content is raw else opened.content)
    kind, detail, _matched, events = await triage._reply(conn, message, inbound_id, now)
    await mail_inbox_store.set_inbound_status(conn, inbound_id, kind, None)
    return kind, detail, events


__all__ = ["CHANNEL", "MailTriage", "vouched_reply"]
