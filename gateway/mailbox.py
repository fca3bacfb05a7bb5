"""Reading the firm-facing mailbox over IMAP (implicit TLS): replies and bounces become events.

Theory of operation
-------------------
One poll: connect, log in, ``SELECT`` the mailbox and read its ``UIDVALIDITY``. The stored
position (UIDVALIDITY, last UID processed) says where the previous poll stopped; a new
UIDVALIDITY means the server renumbered the mailbox, so the poll starts again from UID 1
(Message-IDs already stored are recognised and skipped). Each new message, in UID order, is
fetched with ``BODY.PEEK[]`` and handled in ONE transaction: the raw bytes are stored with an
evidence leaf, the message is classified and its effects written, and the position moves
past its UID. Only after that commit is it flagged ``\\Seen`` on the server. A crash between
the two leaves a message that the next poll skips by position.

A message is one of:

* a **duplicate**: its Message-ID was stored before. Nothing is applied twice.
* a **bounce** (RFC 3464, action ``failed``): the mail it names is marked bounced, its outbox
  items dead, and a ``dead_delivery`` mismatch raised. Other reports (delayed, delivered)
  are only recorded.
* a reply the firm's signature does not vouch for (gateway.reply_signature: unsigned where
  a signature is required, a bad signature, an unknown signer): nothing in it is read; an
  ``unverified_reply`` mismatch names why. The signature is checked before the transaction.
* a **reply** matched to a dispatch (In-Reply-To / References, else the subject tag): its
  events are reconciled like webhook events. No usable events, or bad lines, raise an
  ``unparsed_reply`` mismatch.
* **unmatched**: no dispatch found; an ``unmatched_reply`` mismatch. The raw message is kept
  in every case, never dropped.
"""

import asyncio
import hashlib
import logging
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from aioimaplib import IMAP4_SSL  # type: ignore[import-untyped]
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway import mail_journal
from gateway.agency_config import EmailAgency
from gateway.errors import GatewayError
from gateway.event_import import RowDefaults
from gateway.mail_journal import Dispatch
from gateway.mail_render import message_id_for
from gateway.mail_reply import ReadMessage, read_message, reply_events, subject_ref, verp_ref
from gateway.reconciler import IncomingEvent, apply_events
from gateway.reply_signature import OpenedReply, ReplyOpener
from gateway.smime import load_certificate, load_signer
from gateway.store.database import Database

log = logging.getLogger(__name__)

CHANNEL = "email"
_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")
_FETCH_UID = re.compile(rb"UID (\d+)")


@dataclass(slots=True)
class PollStats:
    """What one poll did, by message kind."""

    fetched: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    uidvalidity: int | None = None
    rescanned: bool = False

    def count(self, kind: str) -> None:
        self.kinds[kind] = self.kinds.get(kind, 0) + 1


class MailboxReader:
    """Reads one firm's mailbox. Build one per email agency with an ``[email.imap]`` section.

    Args:
        agency: the firm (its ``email.imap`` section must be set).
        db: the database.
        password: the IMAP password.
        tls: the TLS context that verifies the IMAP server.
        opener: decrypts replies and checks their signatures (gateway.reply_signature).
        clock: returns Unix time.
    """

    def __init__(
        self,
        *,
        agency: EmailAgency,
        db: Database,
        password: str,
        tls: ssl.SSLContext,
        opener: ReplyOpener,
        clock: Callable[[], float],
    ) -> None:
        if agency.email.imap is None:
            raise GatewayError(f"{agency.id}: no [email.imap] section; nothing to read")
        self._agency = agency
        self._imap = agency.email.imap
        self._db = db
        self._password = password
        self._tls = tls
        self._opener = opener
        self._clock = clock

    @property
    def agency_id(self) -> str:
        return self._agency.id

    @property
    def name(self) -> str:
        return f"mailbox {self._agency.id}"

    @property
    def interval_seconds(self) -> float:
        return self._imap.poll_seconds

    async def poll_once(self) -> dict[str, int]:
        """One poll, as an ``InboundPoller`` (gateway.ports): counts by message kind."""
        return (await self.poll()).kinds

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    async def poll(self) -> PollStats:
        """Read every new message once; see the module docstring."""
        imap = self._imap
        where = f"{self._agency.id}: IMAP {imap.host}:{imap.port}"
        client = IMAP4_SSL(
            host=imap.host, port=imap.port, timeout=imap.timeout_seconds, ssl_context=self._tls
        )
        stats = PollStats()
        try:
            async with asyncio.timeout(imap.timeout_seconds):
                await client.wait_hello_from_server()
                login = await client.login(imap.username, self._password)
            _expect(login, f"{where}: login as {imap.username} refused")
            selected = await client.select(imap.mailbox)
            _expect(selected, f"{where}: cannot select mailbox {imap.mailbox!r}")
            uidvalidity = _uidvalidity(selected.lines)
            stats.uidvalidity = uidvalidity
            async with self._db.snapshot() as conn:
                position = await mail_journal.mailbox_position(conn, self._agency.id, imap.mailbox)
            last_uid = 0
            if position is not None and position[0] == uidvalidity:
                last_uid = position[1]
            elif position is not None:
                stats.rescanned = True
                log.warning("%s: UIDVALIDITY changed; rescanning %s", where, imap.mailbox)
            found = await client.uid_search("UID", f"{last_uid + 1}:*", charset=None)
            _expect(found, f"{where}: UID SEARCH failed")
            uids = sorted(
                uid
                for line in found.lines[:-1]
                for uid in (int(t) for t in bytes(line).split() if t.isdigit())
                if uid > last_uid
            )[: imap.max_messages_per_poll]
            for uid in uids:
                fetched = await client.uid("fetch", str(uid), "(BODY.PEEK[])")
                _expect(fetched, f"{where}: cannot fetch UID {uid}")
                raw = _literal(fetched.lines)
                if raw is None:
                    continue
                opened = await self._opener.open(raw)
                async with self._db.transaction() as conn:
                    kind = await self.process(conn, opened, uidvalidity=uidvalidity, uid=uid)
                stats.fetched += 1
                stats.count(kind)
                await client.uid("store", str(uid), "+FLAGS", "(\\Seen)")
            if not uids and (position is None or stats.rescanned):
                async with self._db.transaction() as conn:
                    await mail_journal.save_mailbox_position(
                        conn, self._agency.id, imap.mailbox, uidvalidity, last_uid, self._now()
                    )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise GatewayError(f"{where}: {type(exc).__name__}: {exc}") from exc
        finally:
            try:
                async with asyncio.timeout(5):
                    await client.logout()
            except Exception:
                # Logging out of a broken connection can fail in many ways; none matter.
                log.debug("%s: logout failed", where, exc_info=True)
        return stats

    async def process(
        self, conn: AsyncConnection, opened: OpenedReply, *, uidvalidity: int, uid: int
    ) -> str:
        """Store, classify and apply one opened message in the caller's transaction; its
        kind."""
        now = self._now()
        agency_id = self._agency.id
        raw = opened.raw
        message = read_message(raw, None if opened.content is raw else opened.content)
        external_id = message.message_id or "sha256:" + hashlib.sha256(raw).hexdigest()
        inbound_id, new = await mail_journal.store_raw(
            conn,
            agency_id=agency_id,
            channel=CHANNEL,
            external_id=external_id,
            raw=raw,
            status="received",
            event_type=None,
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
            await mail_journal.set_inbound_status(conn, inbound_id, kind, None)
        await mail_journal.record_reply(
            conn,
            agency_id=agency_id,
            mailbox=self._imap.mailbox,
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
        await mail_journal.save_mailbox_position(
            conn, agency_id, self._imap.mailbox, uidvalidity, uid, now
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
        parsed = reply_events(
            message,
            RowDefaults(
                received_at=message.date or now,
                placement_id=placements[0] if len(placements) == 1 else None,
                currency=replies.default_currency,
                timezone=replies.timezone,
            ),
            sheets=replies.structured_attachment,
            body_form=replies.body_form,
        )
        if parsed.events:
            await apply_events(
                conn,
                [IncomingEvent(self._agency.id, inbound_id, e, now) for e in parsed.events],
                now=now,
            )
        message_id = matched[0].message_id
        if parsed.errors or not parsed.events:
            problems = [str(e) for e in parsed.errors] or [
                "no reply sheet (CSV, XLSX, JSON)"
                + (" and no reply form" if replies.body_form else "")
                + " with events was found"
            ]
            await mail_journal.raise_mismatch(
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
        await mail_journal.raise_mismatch(
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
        await mail_journal.raise_mismatch(
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


def _expect(response: object, what: str) -> None:
    result = getattr(response, "result", None)
    if result != "OK":
        lines = getattr(response, "lines", [])
        text = b" ".join(bytes(line) for line in lines[-1:]).decode("utf-8", "replace")
        raise GatewayError(f"{what}: {result} {text}".strip())


def _uidvalidity(lines: list[bytes]) -> int:
    for line in lines:
        match = _UIDVALIDITY.search(bytes(line))
        if match:
            return int(match.group(1))
    raise GatewayError("the IMAP server sent no UIDVALIDITY on SELECT")


def _literal(lines: list[bytes | bytearray]) -> bytes | None:
    """The message bytes of a one-message ``UID FETCH ... (BODY.PEEK[])`` answer
    (aioimaplib hands the literal over as the one ``bytearray`` among the lines)."""
    for line in lines:
        if isinstance(line, bytearray):
            return bytes(line)
    return None


def client_tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """Verify the server (system CAs, or ``ca_file``), TLS 1.2 or later."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def build_mailbox_reader(
    agency: EmailAgency, *, base_dir: Path, db: Database, clock: Callable[[], float]
) -> MailboxReader:
    """Resolve the firm's IMAP password, trust anchors and our S/MIME key; build its reader."""
    imap = agency.email.imap
    if imap is None:
        raise GatewayError(f"{agency.id}: no [email.imap] section; nothing to read")

    def path(value: str | None) -> Path | None:
        if value is None:
            return None
        p = Path(value)
        return p if p.is_absolute() else base_dir / p

    smime = agency.email.smime
    where = f"{agency.source or agency.id}: email.smime"
    signer = load_signer(
        smime.sign_cert.resolve(base_dir),
        smime.sign_key.resolve(base_dir),
        what=f"{where}.sign_cert",
    )
    pinned = (
        []
        if smime.reply_signature == "off"
        else [
            load_certificate(ref.resolve(base_dir), what=f"{where}.reply_certs")
            for ref in smime.reply_cert_refs()
        ]
    )
    return MailboxReader(
        agency=agency,
        db=db,
        password=imap.password.resolve(base_dir),
        tls=client_tls_context(path(imap.ca_file)),
        opener=ReplyOpener(
            policy=smime.reply_signature,
            pinned=pinned,
            signer=signer,
            timeout=imap.timeout_seconds,
        ),
        clock=clock,
    )


__all__ = [
    "CHANNEL",
    "MailboxReader",
    "PollStats",
    "build_mailbox_reader",
    "client_tls_context",
]
