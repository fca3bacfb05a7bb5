"""Reading the firm-facing mailbox over IMAP (always over TLS, adapters.email.imap):
replies and bounces become events.

Theory of operation
-------------------
One poll: connect, log in, ``SELECT`` the mailbox and read its ``UIDVALIDITY``. The stored
position (UIDVALIDITY, last UID processed) says where the previous poll stopped; a new
UIDVALIDITY means the server renumbered the mailbox, so the poll starts again from UID 1
(Message-IDs already stored are recognised and skipped). Each new message, in UID order, is
fetched with ``BODY.PEEK[]``, its signature checked (adapters.email.reply_signature), then handled
in ONE transaction by adapters.email.triage: the raw bytes are stored with an evidence leaf,
the message is classified and its effects written, and the position moves past its UID.
Only after that commit is it flagged ``\\Seen`` on the server. A crash between the two
leaves a message that the next poll skips by position.
"""

import asyncio
import logging
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from adapters.email import inbox_store as mail_inbox_store
from adapters.email.imap import close_imap, connect_imap
from adapters.email.reply_signature import ReplyOpener, build_reply_opener
from adapters.email.triage import MailTriage
from gateway.config.agencies import EmailAgency
from gateway.errors import GatewayError
from gateway.reconciliation.recorder import ArrivalPolicy
from gateway.store.database import Database

log = logging.getLogger(__name__)

_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")


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
        opener: decrypts replies and checks their signatures (adapters.email.reply_signature).
        clock: returns Unix time.
        arrival: the lender's rules events are judged by as they arrive (None: quiet hours
            and caps are left to the batch run).
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
        arrival: ArrivalPolicy | None = None,
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
        self._triage = MailTriage(agency=agency, mailbox=self._imap.mailbox, arrival=arrival)

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
        stats = PollStats()
        try:
            async with asyncio.timeout(imap.timeout_seconds):
                client = await connect_imap(imap, self._tls)
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise GatewayError(f"{where}: {type(exc).__name__}: {exc}") from exc
        try:
            async with asyncio.timeout(imap.timeout_seconds):
                login = await client.login(imap.username, self._password)
            _expect(login, f"{where}: login as {imap.username} refused")
            selected = await client.select(imap.mailbox)
            _expect(selected, f"{where}: cannot select mailbox {imap.mailbox!r}")
            uidvalidity = _uidvalidity(selected.lines)
            stats.uidvalidity = uidvalidity
            async with self._db.snapshot() as conn:
                position = await mail_inbox_store.mailbox_position(
                    conn, self._agency.id, imap.mailbox
                )
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
                    kind = await self._triage.process(
                        conn, opened, uidvalidity=uidvalidity, uid=uid, now=self._now()
                    )
                stats.fetched += 1
                stats.count(kind)
                await client.uid("store", str(uid), "+FLAGS", "(\\Seen)")
            if not uids and (position is None or stats.rescanned):
                async with self._db.transaction() as conn:
                    await mail_inbox_store.save_mailbox_position(
                        conn, self._agency.id, imap.mailbox, uidvalidity, last_uid, self._now()
                    )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise GatewayError(f"{where}: {type(exc).__name__}: {exc}") from exc
        finally:
            await close_imap(client)
        return stats


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
    agency: EmailAgency,
    *,
    base_dir: Path,
    db: Database,
    clock: Callable[[], float],
    arrival: ArrivalPolicy | None = None,
) -> MailboxReader:
    """Resolve the firm's IMAP password, trust anchors and our S/MIME key; build its reader
    (``arrival``: the lender's rules the replies' events are judged by as they arrive)."""
    imap = agency.email.imap
    if imap is None:
        raise GatewayError(f"{agency.id}: no [email.imap] section; nothing to read")

    def path(value: str | None) -> Path | None:
        if value is None:
            return None
        p = Path(value)
        return p if p.is_absolute() else base_dir / p

    return MailboxReader(
        agency=agency,
        db=db,
        password=imap.password.resolve(base_dir),
        tls=client_tls_context(path(imap.ca_file)),
        opener=build_reply_opener(agency, base_dir=base_dir),
        clock=clock,
        arrival=arrival,
    )


__all__ = [
    "MailboxReader",
    "PollStats",
    "build_mailbox_reader",
    "client_tls_context",
]
