"""Law-firm email channel, outbound: referral mail over SMTP, S/MIME signed and encrypted.

* One mail per packet, or, in ``per_batch`` mode, one mail for the referrals
  (``placement.created``) that the dispatcher hands over together, up to
  ``batch_max_cases`` (bounded by ``retry.concurrency``); every packet of a batch gets the
  batch's outcome.
* The Message-ID is fixed by the dispatch (``<dedupe key@domain>``, or the batch reference),
  so a resend keeps it. When an earlier attempt may have reached the firm, the resend says so
  (``X-Gateway-Possible-Duplicate: yes`` and a subject mark). Mail is not idempotent for the
  firm, so an unknown outcome parks the item in ``unknown`` for ops.
* Each referral (and renewal) carries the documents its packet lists from the placement's
  document pack: attached up to ``max_attachment_bytes`` per mail, else listed with signed
  links (adapters.email.attachments), always with their SHA-256 in the body. A document
  that changed since it was recorded stops the mail (permanent error naming the file).
* A deletion request (``data.deletion_requested``) never lists or attaches the case's
  documents: a mail asking the firm to delete the case's personal data must not carry it.
* A settlement statement (``settlement.statement``) is a ``settlement_statement`` letter
  with the statement's XLSX and signed PDF attached whole and a reply sheet pre-filled to
  confirm it (statement, revision, SHA-256); no case file.
* The mail goes out through the firm's relay (adapters.email.relay: TLS always, SMTP answers
  translated into the error tree, every attempt stored before DATA).
"""

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import jinja2
from cryptography import x509

from adapters.email import journal as mail_journal
from adapters.email.attachments import LinkKey, listed_document_ids, mail_documents
from adapters.email.headers import message_id_for, outer_headers
from adapters.email.journal import CarriedItem
from adapters.email.links import MIN_KEY_BYTES
from adapters.email.mailbox import client_tls_context
from adapters.email.relay import SmtpRelay
from adapters.email.render import (
    CaseDocument,
    MailCase,
    inner_entity,
    mail_case,
    render_content,
)
from adapters.email.smime import Signer, load_recipient, load_signer, protect
from gateway.config.agencies import AgencyConfig, EmailAgency
from gateway.errors import (
    ConfigError,
    DeliveryError,
    DocumentError,
    OutcomeUnknown,
    PermanentDeliveryError,
    SettlementError,
)
from gateway.ports import (
    AdapterContext,
    DocumentSource,
    NoDocumentStore,
    OutboundPacket,
    Receipt,
)
from gateway.settlement.packets import statement_documents
from gateway.store.database import Database

EXCERPT_CHARS = 500
WITHOUT_DOCUMENTS = frozenset({"data.deletion_requested"})
"""Packet types whose mail carries no case documents (see the module docstring)."""
STATEMENT = "settlement.statement"
"""A settlement statement's letter: its XLSX and signed PDF attached, no case file."""


def template_environment(directory: Path) -> jinja2.Environment:
    """Plain-text templates; an undefined name is an error, never an empty string."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )


def batch_reference(dedupe_keys: Sequence[str]) -> str:
    """A batch's reference (and Message-ID local part): fixed by the set of packets."""
    return "batch_" + hashlib.sha256("|".join(sorted(dedupe_keys)).encode()).hexdigest()[:24]


class EmailAdapter:
    """Sends packets to one law firm by email.

    Args:
        agency: the firm's configuration.
        signer: the lender's S/MIME certificate and key.
        recipient: the firm's certificate; mail is encrypted to it when given.
        templates: the Jinja2 environment over the firm's template directory.
        relay: the firm's SMTP relay.
        db: where earlier attempts are looked up and the placements' document packs read
            (None: never a possible duplicate and no documents, tests only).
        documents: the lender's document store (the packs' store documents).
        links: how the firm's document links are made; None without ``[email.links]``.
        clock: returns Unix time.
    """

    idempotent_receiver = False

    def __init__(
        self,
        *,
        agency: EmailAgency,
        signer: Signer,
        recipient: x509.Certificate | None,
        templates: jinja2.Environment,
        relay: SmtpRelay,
        db: Database | None,
        clock: Callable[[], float],
        documents: DocumentSource | None = None,
        links: LinkKey | None = None,
    ) -> None:
        self._agency = agency
        self._email = agency.email
        self._signer = signer
        self._recipient = recipient
        self._templates = templates
        self._relay = relay
        self._db = db
        self._store: DocumentSource = documents if documents is not None else NoDocumentStore()
        self._links = links
        self._clock = clock
        self._allowed = frozenset(agency.fields)
        self._pending: list[tuple[OutboundPacket, asyncio.Future[Receipt]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: set[asyncio.Task[None]] = set()

    async def send(self, packet: OutboundPacket) -> Receipt:
        if self._email.mode == "per_batch" and packet.packet_type == "placement.created":
            return await self._join_batch(packet)
        return await self._deliver([packet], batch_ref=None)

    async def _join_batch(self, packet: OutboundPacket) -> Receipt:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Receipt] = loop.create_future()
        self._pending.append((packet, future))
        if len(self._pending) >= self._email.batch_max_cases:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self._email.batch_window_seconds, self._flush)
        return await future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, []
        if batch:
            task = asyncio.create_task(self._send_batch(batch), name="email-batch")
            self._flushing.add(task)
            task.add_done_callback(self._flushing.discard)

    async def _send_batch(
        self, batch: list[tuple[OutboundPacket, asyncio.Future[Receipt]]]
    ) -> None:
        packets = [p for p, _ in batch]
        try:
            receipt = await self._deliver(packets, batch_reference([p.dedupe_key for p in packets]))
        except BaseException as exc:
            # Every packet of the batch shares the outcome; a waiter must never hang.
            error = (
                exc
                if isinstance(exc, DeliveryError)
                else OutcomeUnknown(
                    f"{self._agency.id}: batch mail failed: {exc!r}", agency_id=self._agency.id
                )
            )
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(exc, Exception):
                raise
            return
        for _, future in batch:
            if not future.done():
                future.set_result(receipt)

    async def _with_documents(
        self, packets: Sequence[OutboundPacket], cases: list[MailCase]
    ) -> list[MailCase]:
        """The cases with the documents their packets list (none on a deletion request)."""
        listed = {
            c.placement_id: listed_document_ids(p.payload)
            for p, c in zip(packets, cases, strict=True)
            if p.packet_type not in WITHOUT_DOCUMENTS
        }
        if self._db is None or not any(listed.values()):
            return cases
        try:
            async with self._db.snapshot() as conn:
                documents = await mail_documents(
                    conn,
                    listed,
                    agency_id=self._agency.id,
                    email=self._email,
                    store=self._store,
                    links=self._links,
                    now=self._clock(),
                )
        except DocumentError as exc:
            raise PermanentDeliveryError(
                f"{self._agency.id}: {exc}", agency_id=self._agency.id
            ) from exc
        return [
            replace(c, documents=documents[c.placement_id]) if c.placement_id in documents else c
            for c in cases
        ]

    async def _with_statement_documents(self, cases: list[MailCase]) -> list[MailCase]:
        """A settlement statement's letter carries its XLSX and signed PDF, attached whole
        (gateway.settlement.packets.statement_documents); one without them is not sent."""
        if self._db is None or not any(c.packet_type == STATEMENT for c in cases):
            return cases
        out = []
        async with self._db.snapshot() as conn:
            for case in cases:
                if case.packet_type != STATEMENT:
                    out.append(case)
                    continue
                sid = int(case.fields["statement_id"])
                try:
                    found = await statement_documents(conn, self._agency.id, sid)
                except SettlementError as exc:
                    raise PermanentDeliveryError(
                        f"{self._agency.id}: {exc}", agency_id=self._agency.id
                    ) from exc
                if not found:
                    raise PermanentDeliveryError(
                        f"{self._agency.id}: statement {sid} has no documents to attach",
                        agency_id=self._agency.id,
                    )
                documents = tuple(
                    CaseDocument(kind, name, sha, len(body), data=body)
                    for kind, name, sha, body in found
                )
                out.append(replace(case, documents=documents))
        return out

    async def _deliver(self, packets: Sequence[OutboundPacket], batch_ref: str | None) -> Receipt:
        email = self._email
        ref = batch_ref or packets[0].dedupe_key
        message_id = message_id_for(ref, email.message_id_domain)
        cases = await asyncio.to_thread(
            lambda: [mail_case(p.payload, self._allowed) for p in packets]
        )
        cases = await self._with_documents(packets, cases)
        cases = await self._with_statement_documents(cases)
        possible_duplicate = False
        if self._db is not None:
            async with self._db.snapshot() as conn:
                possible_duplicate = await mail_journal.sent_before(conn, message_id)
        kind = "batch" if batch_ref is not None else packets[0].packet_type
        try:
            content = render_content(
                self._templates,
                template=email.template_name(kind),
                language=email.language,
                cases=cases,
                firm_name=self._agency.name,
                sender_name=email.from_name or email.from_address,
                # a statement's lines are in its attached XLSX: no case file
                case_file_kind="none" if kind == STATEMENT else email.case_file,
                batch_ref=batch_ref,
                possible_duplicate=possible_duplicate,
                with_reply_sheet=email.replies.structured_attachment,
                with_reply_form=email.replies.body_form,
            )
        except jinja2.TemplateError as exc:
            raise PermanentDeliveryError(
                f"{self._agency.id}: template {email.language}/{email.template_name(kind)} "
                f"failed: {exc}",
                agency_id=self._agency.id,
            ) from exc
        entity = await asyncio.to_thread(
            protect, inner_entity(content), self._signer, self._recipient
        )
        now = datetime.fromtimestamp(self._clock(), UTC)
        message = (
            outer_headers(
                from_address=email.from_address,
                from_name=email.from_name,
                to=email.to,
                cc=email.cc,
                subject=content.subject,
                message_id=message_id,
                date=now,
                ref=ref,
                possible_duplicate=possible_duplicate,
            )
            + entity
        )
        items = [
            CarriedItem(p.outbox_id, p.dedupe_key, c.placement_id)
            for p, c in zip(packets, cases, strict=True)
        ]
        answer = await self._relay.send(message, message_id, ref, items, possible_duplicate)
        return Receipt(
            request_timestamp=int(now.timestamp()),
            status=answer.code,
            response_sha256=hashlib.sha256(answer.text.encode()).hexdigest(),
            response_excerpt=answer.text[:EXCERPT_CHARS],
            details={
                "message_id": message_id,
                "message_sha256": hashlib.sha256(message).hexdigest(),
                "possible_duplicate": "yes" if possible_duplicate else "no",
            },
        )

    async def aclose(self) -> None:
        """Send what is still waiting for a batch, then return."""
        self._flush()
        if self._flushing:
            await asyncio.gather(*self._flushing, return_exceptions=True)


def build_email_adapter(agency: AgencyConfig, context: AdapterContext) -> EmailAdapter:
    """The registry's factory: load the S/MIME keys, the templates and the relay password."""
    if not isinstance(agency, EmailAgency):
        raise ConfigError(f"{agency.id}: channel {agency.channel} has no email settings")
    email = agency.email
    base = context.base_dir

    def path(value: str | None) -> Path | None:
        if value is None:
            return None
        p = Path(value)
        return p if p.is_absolute() else base / p

    smime = email.smime
    where = f"{agency.source or agency.id}: email.smime"
    signer = load_signer(
        smime.sign_cert.resolve(base), smime.sign_key.resolve(base), what=f"{where}.sign_cert"
    )
    recipient = (
        load_recipient(smime.encrypt_cert.resolve(base), what=f"{where}.encrypt_cert")
        if smime.encrypt_cert is not None
        else None
    )
    links: LinkKey | None = None
    if email.links is not None:
        key = email.links.key.resolve(base).encode()
        if len(key) < MIN_KEY_BYTES:
            raise ConfigError(
                f"{agency.source or agency.id}: email.links.key: {len(key)} bytes; a link key "
                f"needs at least {MIN_KEY_BYTES} (e.g. openssl rand -hex 32)"
            )
        links = LinkKey(email.links.base_url, key, email.links.valid_days)
    templates_dir = path(email.templates_dir)
    assert templates_dir is not None
    relay = SmtpRelay(
        agency=agency,
        password=email.smtp.password.resolve(base) if email.smtp.password else None,
        tls=client_tls_context(path(email.smtp.ca_file)),
        db=context.db,
        clock=context.clock,
    )
    return EmailAdapter(
        agency=agency,
        signer=signer,
        recipient=recipient,
        templates=template_environment(templates_dir),
        relay=relay,
        db=context.db,
        clock=context.clock,
        documents=context.documents,
        links=links,
    )


__all__ = [
    "EmailAdapter",
    "batch_reference",
    "build_email_adapter",
    "template_environment",
]
