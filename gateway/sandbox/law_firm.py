"""The sandbox law firm: receives our referral mail over SMTP and answers by email, via IMAP.

Theory of operation
-------------------
* **SMTP** (aiosmtpd, in the caller's event loop, 127.0.0.1): STARTTLS is required before
  anything else and AUTH only after it, with the relay password from the firm's config.
  Every accepted mail is queued for the firm's clerk.
* **The clerk** opens each mail as the firm would: decrypts it with the firm's private key
  (``<encrypt_cert>.sandbox``), verifies the lender's signature with
  ``openssl smime -verify`` (recorded as unverified when openssl is missing), checks every
  document the body lists (name and SHA-256) against the attachment of that name, or
  downloads it by its link, reads the attached case file, and writes a reply per mail,
  signed with the firm's key (its script, with the faults below, is
  gateway.sandbox.firm_script): a CSV reply sheet with an acknowledgement,
  a lawyer's letter, often a suit with its court case number, sometimes a payment or a
  return. Recalls are answered with a return, deletion requests
  (``data.deletion_requested``) with a ``data.deleted`` row (method ``deleted``).
* **Faults**, at ``fault_rate`` per mail: a reply with no sheet (``unparseable``), a sheet
  with a bad line (``bad_line``), a reply without threading headers or subject tag
  (``unthreaded``), the same reply delivered twice (``duplicate``), and a reply sent
  unsigned (``unsigned``). Some clean replies lose their threading headers but keep the
  subject tag (``subject_only``), which the gateway matches by the tag.
* **IMAP**: replies are APPENDed to the firm-facing mailbox of a throwaway Dovecot
  (gateway.sandbox.dovecot); the gateway reads them back with its normal mailbox reader.
  Where Dovecot cannot start, ``reply_path_skipped`` says why and mail is still received.
"""

import asyncio
import email
import hashlib
import logging
import re
import shutil
import ssl
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import aiohttp
from aioimaplib import IMAP4_SSL  # type: ignore[import-untyped]
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography.hazmat.primitives.asymmetric import rsa

from adapters.email.imap import close_imap
from adapters.email.mailbox import client_tls_context
from adapters.email.smime import Signer, decrypt, load_signer, sign_message
from gateway.config.agencies import EmailAgency
from gateway.config.secrets import SecretRef
from gateway.errors import ConfigError, GatewayError
from gateway.sandbox.dovecot import ThrowawayDovecot, unavailable_reason
from gateway.sandbox.firm_script import FirmScript, cases_in

log = logging.getLogger(__name__)


def server_tls_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


class _QuietLoginData(logging.Filter):
    """aiosmtpd warns on every successful AUTH about its own use of ``Session.login_data``
    (deprecated in its 1.4 series); nothing here uses it, so that line is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


_AIOSMTPD_LOG = logging.getLogger("mail.log")


async def smtp_server(
    handler: object,
    *,
    port: int = 0,
    tls_context: ssl.SSLContext | None = None,
    require_starttls: bool = True,
    authenticator: Callable[..., AuthResult] | None = None,
) -> asyncio.Server:
    """An aiosmtpd server on 127.0.0.1 in the running loop (``require_starttls`` only
    applies when ``tls_context`` is given: without one the server offers no STARTTLS)."""
    if not any(isinstance(f, _QuietLoginData) for f in _AIOSMTPD_LOG.filters):
        _AIOSMTPD_LOG.addFilter(_QuietLoginData())
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: SMTP(
            handler,
            hostname="sandbox.law-firm.test",
            tls_context=tls_context,
            require_starttls=require_starttls and tls_context is not None,
            authenticator=authenticator,
            auth_require_tls=tls_context is not None,
            loop=loop,
        ),
        "127.0.0.1",
        port,
    )


def _resolve(base_dir: Path, value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else base_dir / path


def _file_of(ref: SecretRef, base_dir: Path, what: str) -> Path:
    if ref.file is None:
        raise ConfigError(f"the sandbox law firm needs {what} in a file, not an env var")
    return _resolve(base_dir, ref.file)


@dataclass(slots=True)
class FirmStats:
    """What the sandbox firm saw and did."""

    mails_received: int = 0
    decrypted: int = 0
    signatures_verified: int = 0
    signatures_unverified: int = 0
    cases: int = 0
    documents_verified: int = 0
    documents_downloaded: int = 0
    documents_listed_only: int = 0
    document_problems: list[str] = field(default_factory=list)
    replies_appended: int = 0
    faults: Counter[str] = field(default_factory=Counter)


class SandboxLawFirm:
    """A simulated law firm behind real SMTP and IMAP servers on loopback.

    Args:
        agency: the firm's config (its SMTP port is where the sandbox listens).
        base_dir: where the config's key files resolve.
        seed: makes replies and faults repeatable.
        fault_rate: share of mails answered with a fault.
    """

    def __init__(
        self, *, agency: EmailAgency, base_dir: Path, seed: int = 1, fault_rate: float = 0.1
    ) -> None:
        email_cfg = agency.email
        if email_cfg.smtp.ca_file is None:
            raise ConfigError(f"{agency.id}: the sandbox needs email.smtp.ca_file (its TLS cert)")
        self.agency = agency
        self._base = base_dir
        self._script = FirmScript(
            seed=seed,
            fault_rate=fault_rate,
            firm_address=email_cfg.to[0],
            lender_address=email_cfg.from_address,
        )
        ca = _resolve(base_dir, email_cfg.smtp.ca_file)
        self._smtp_tls = server_tls_context(ca, Path(f"{ca}.key"))
        self._smtp_password = (
            email_cfg.smtp.password.resolve(base_dir) if email_cfg.smtp.password else None
        )
        self._lender_cert = _file_of(email_cfg.smime.sign_cert, base_dir, "the lender cert")
        self._firm: Signer | None = None
        if email_cfg.smime.encrypt_cert is not None:
            cert_path = _file_of(email_cfg.smime.encrypt_cert, base_dir, "the firm cert")
            self._firm = load_signer(
                cert_path.read_bytes(),
                Path(f"{cert_path}.sandbox").read_bytes(),
                what=f"{agency.id} sandbox firm key",
            )
        self.stats = FirmStats(faults=self._script.faults)
        self.reply_path_skipped: str | None = None
        self.bodies: list[str] = []
        """The text of every referral read, decrypted (what the firm's clerk saw)."""
        self._inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._busy = 0
        self._server: asyncio.Server | None = None
        self._worker: asyncio.Task[None] | None = None
        self._dovecot: ThrowawayDovecot | None = None
        self._imap_client: Any = None
        self.smtp_port = email_cfg.smtp.port
        self.imap_port = email_cfg.imap.port if email_cfg.imap else 0

    # SMTP side -------------------------------------------------------------------------

    def _authenticate(
        self, _server: SMTP, _session: Session, _envelope: Envelope, _mechanism: str, data: Any
    ) -> AuthResult:
        smtp = self.agency.email.smtp
        ok = (
            isinstance(data, LoginPassword)
            and data.login.decode() == (smtp.username or "")
            and data.password.decode() == (self._smtp_password or "")
        )
        return AuthResult(success=ok)

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content
        raw = content if isinstance(content, bytes) else str(content).encode()
        self.stats.mails_received += 1
        self._inbox.put_nowait(raw)
        return f"250 2.0.0 Ok: queued as SBX{self.stats.mails_received:06d}"

    async def start(self) -> None:
        """Start SMTP (on the configured port, or a free one) and, if possible, Dovecot."""
        try:
            self._server = await smtp_server(
                self,
                port=self.smtp_port,
                tls_context=self._smtp_tls,
                authenticator=self._authenticate,
            )
        except OSError:
            self._server = await smtp_server(
                self, tls_context=self._smtp_tls, authenticator=self._authenticate
            )
        self.smtp_port = int(self._server.sockets[0].getsockname()[1])
        imap = self.agency.email.imap
        self.reply_path_skipped = unavailable_reason() if imap else "no [email.imap] section"
        if imap is not None and self.reply_path_skipped is None:
            if imap.ca_file is None:
                raise ConfigError(f"{self.agency.id}: the sandbox needs email.imap.ca_file")
            cert_pem, key_pem = await asyncio.to_thread(self._imap_tls_pair)
            self._dovecot = ThrowawayDovecot(
                users={imap.username: imap.password.resolve(self._base)},
                cert_pem=cert_pem,
                key_pem=key_pem,
                port=imap.port,
            )
            try:
                self.imap_port = await self._dovecot.start()
            except GatewayError:
                self._dovecot.port = 0
                self.imap_port = await self._dovecot.start()
        self._worker = asyncio.create_task(self._clerk(), name="sandbox-law-firm")

    def _imap_tls_pair(self) -> tuple[str, str]:
        imap = self.agency.email.imap
        assert imap is not None and imap.ca_file is not None
        ca = _resolve(self._base, imap.ca_file)
        return ca.read_text(encoding="utf-8"), Path(f"{ca}.key").read_text(encoding="utf-8")

    def updated_agency(self) -> EmailAgency:
        """The firm's config pointing at the ports the sandbox really listens on."""
        email_cfg = self.agency.email
        update: dict[str, object] = {
            "smtp": email_cfg.smtp.model_copy(update={"host": "127.0.0.1", "port": self.smtp_port})
        }
        if email_cfg.imap is not None and self.imap_port:
            update["imap"] = email_cfg.imap.model_copy(
                update={"host": "127.0.0.1", "port": self.imap_port}
            )
        return self.agency.model_copy(update={"email": email_cfg.model_copy(update=update)})

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        if self._imap_client is not None:
            await close_imap(self._imap_client)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._dovecot is not None:
            await self._dovecot.stop()

    async def drain(self, timeout: float) -> bool:  # noqa: ASYNC109 (the demo's contract)
        """Wait until every received mail is answered; False if still busy at the timeout."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._inbox.qsize() or self._busy:
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    def stats_json(self) -> dict[str, object]:
        return {
            "agency_id": self.agency.id,
            "mails_received": self.stats.mails_received,
            "decrypted": self.stats.decrypted,
            "signatures_verified": self.stats.signatures_verified,
            "signatures_unverified": self.stats.signatures_unverified,
            "cases": self.stats.cases,
            "documents_verified": self.stats.documents_verified,
            "documents_downloaded": self.stats.documents_downloaded,
            "documents_listed_only": self.stats.documents_listed_only,
            "document_problems": list(self.stats.document_problems),
            "replies_appended": self.stats.replies_appended,
            "faults": dict(self.stats.faults),
            "reply_path_skipped": self.reply_path_skipped,
        }

    # The clerk -------------------------------------------------------------------------

    async def _clerk(self) -> None:
        while True:
            raw = await self._inbox.get()
            self._busy += 1
            try:
                await self._answer(raw)
            except Exception:
                # One unreadable mail must not stop the firm.
                log.exception("sandbox law firm could not answer a mail")
            finally:
                self._busy -= 1

    async def _open(self, raw: bytes) -> bytes:
        head = raw.split(b"\r\n\r\n", 1)[0].lower()
        firm = self._firm
        if b"application/pkcs7-mime" in head and firm is not None:
            assert isinstance(firm.key, rsa.RSAPrivateKey)
            entity = await asyncio.to_thread(decrypt, raw, firm.cert, firm.key)
            self.stats.decrypted += 1
        else:
            entity = raw
        if await self._verify(entity):
            self.stats.signatures_verified += 1
        else:
            self.stats.signatures_unverified += 1
        return entity

    async def _verify(self, entity: bytes) -> bool:
        openssl = shutil.which("openssl")
        if openssl is None or b"multipart/signed" not in entity[:2048].lower():
            return False
        process = await asyncio.create_subprocess_exec(
            openssl,
            "smime",
            "-verify",
            "-CAfile",
            str(self._lender_cert),
            "-purpose",
            "any",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await process.communicate(entity)
        return process.returncode == 0

    async def _check_documents(self, inner: Message) -> None:
        """Each document the body lists, checked against its attachment or downloaded by its
        link; what does not match is recorded in ``document_problems``."""
        body = next((p for p in inner.walk() if p.get_content_type() == "text/plain"), None)
        if body is None:
            return
        payload = body.get_payload(decode=True)
        text = payload.decode("utf-8") if isinstance(payload, bytes) else ""
        self.bodies.append(text)
        listed = listed_documents(text)
        attached = [
            (str(p.get_filename()), hashlib.sha256(data).hexdigest())
            for p in inner.walk()
            if p.get_filename() and isinstance(data := p.get_payload(decode=True), bytes)
        ]
        for doc in listed:
            if doc.link is not None:
                data = await self._download(doc.link)
                found = (doc.name, hashlib.sha256(data).hexdigest()) if data is not None else None
                self.stats.documents_downloaded += data is not None
            elif (doc.name, doc.sha256) in attached:
                found = (doc.name, doc.sha256)
                attached.remove(found)
            elif any(name == doc.name for name, _ in attached):
                found = (doc.name, "")
            else:
                self.stats.documents_listed_only += 1
                continue
            if found == (doc.name, doc.sha256):
                self.stats.documents_verified += 1
            else:
                self.stats.document_problems.append(f"{doc.name}: SHA-256 differs from the body")

    async def _download(self, url: str) -> bytes | None:
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
                session.get(url) as response,
            ):
                if response.status != 200:
                    self.stats.document_problems.append(f"{url}: HTTP {response.status}")
                    return None
                return await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.stats.document_problems.append(f"{url}: {exc!r}")
            return None

    async def _answer(self, raw: bytes) -> None:
        entity = await self._open(raw)
        inner = email.message_from_bytes(entity, policy=default_policy)
        await self._check_documents(inner)
        cases = cases_in(inner)
        self.stats.cases += len(cases)
        answer = self._script.answer(
            email.message_from_bytes(raw, policy=default_policy),
            cases,
            now=datetime.now(UTC).astimezone(),
        )
        if answer is None or self._dovecot is None:
            return
        reply = answer.reply
        if self._firm is not None and answer.fault != "unsigned":
            reply = sign_message(reply, self._firm)  # the firm signs its replies
        for _ in range(answer.copies):
            await self._append(reply)

    async def _append(self, message: bytes) -> None:
        """APPEND to the firm-facing mailbox over one kept-open IMAPS connection."""
        imap = self.agency.email.imap
        assert imap is not None and imap.ca_file is not None
        if self._imap_client is None:
            client = IMAP4_SSL(
                host="127.0.0.1",
                port=self.imap_port,
                timeout=10,
                ssl_context=client_tls_context(_resolve(self._base, imap.ca_file)),
            )
            await client.wait_hello_from_server()
            await client.login(imap.username, imap.password.resolve(self._base))
            self._imap_client = client
        try:
            response = await self._imap_client.append(message, mailbox=imap.mailbox)
        except (OSError, TimeoutError):
            self._imap_client = None
            raise
        if response.result != "OK":
            raise GatewayError(f"sandbox APPEND failed: {response.lines[-1:]}")
        self.stats.replies_appended += 1


@dataclass(frozen=True, slots=True)
class ListedDocument:
    """A document as a referral's body lists it (gateway templates ``_documents.j2``)."""

    name: str
    sha256: str
    link: str | None = None


_LISTED = re.compile(
    r"^\s*- (?P<name>.+?)\s*[（(]\d+ (?:字节|bytes)[）)]\s*sha256=(?P<sha256>[0-9a-f]{64})"
)
_LINK = re.compile(r"^\s*(?:下载：|download: )(?P<url>https?://[^\s（(]+)")


def listed_documents(text: str) -> list[ListedDocument]:
    """The documents a body lists, each with the download link on the line after it."""
    found: list[ListedDocument] = []
    for line in text.splitlines():
        if (m := _LISTED.match(line)) is not None:
            found.append(ListedDocument(m["name"], m["sha256"]))
        elif (link := _LINK.match(line)) is not None and found:
            found[-1] = ListedDocument(found[-1].name, found[-1].sha256, link["url"])
    return found


__all__ = [
    "FirmStats",
    "ListedDocument",
    "SandboxLawFirm",
    "listed_documents",
    "server_tls_context",
    "smtp_server",
]
