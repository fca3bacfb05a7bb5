"""Reading a message from the firm's mailbox: reply or delivery report, and its events (pure).

* A **delivery-status report** (RFC 3464: ``multipart/report; report-type=delivery-status``)
  names the failed mail by the Message-ID in its returned headers, by the ``ENVID`` we sent
  (``Original-Envelope-Id``) or by the VERP address it was sent back to.
* A **reply** names the mail it answers by ``In-Reply-To`` and ``References`` (newest first);
  when a client dropped them, the subject tag (``[案件 PL-...]``, ``[Case PL-...]``,
  ``[批次 batch_...]``, ``[Batch batch_...]``) is the fallback.
* Its events come from attached sheets (CSV, XLSX, JSON; see gateway.inbound.sheets) and,
  when the firm's config allows it, from reply forms in the plain-text body.
"""

import email
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from email.policy import default as default_policy
from email.utils import getaddresses, parsedate_to_datetime

from gateway.inbound.sheets import (
    ParsedEvents,
    RowDefaults,
    form_rows,
    merge,
    parse_sheet,
    rows_to_events,
)

_MSGID = re.compile(r"<[^<>\s]+>")
_TAG = re.compile(r"\[(?:案件|Case|批次|Batch)\s+([A-Za-z0-9][A-Za-z0-9_.:\-]*)\]", re.IGNORECASE)
SHEET_SUFFIXES = (".csv", ".xlsx", ".json")


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """The gist of an RFC 3464 report: the worst recipient action and why."""

    action: str
    status: str
    diagnostic: str
    recipient: str
    envelope_id: str | None
    original_message_id: str | None

    @property
    def failed(self) -> bool:
        return self.action == "failed"

    def reason(self) -> str:
        parts = [f"{self.action} {self.status}".strip(), self.recipient, self.diagnostic]
        return "; ".join(p for p in parts if p)


@dataclass(frozen=True, slots=True)
class ReadMessage:
    message_id: str | None
    references: tuple[str, ...]
    subject: str
    date: datetime | None
    recipients: tuple[str, ...]
    text: str
    attachments: tuple[tuple[str, bytes], ...] = field(default=())
    report: DeliveryReport | None = None


def _ids(value: str | None) -> list[str]:
    return _MSGID.findall(value or "")


def _report(message: Message) -> DeliveryReport | None:
    if message.get_content_type() != "multipart/report":
        return None
    status_part = None
    original_id = None
    for part in message.walk():
        ctype = part.get_content_type()
        if ctype == "message/delivery-status":
            status_part = part
        elif ctype == "text/rfc822-headers":
            payload = part.get_payload(decode=True)
            headers = email.message_from_bytes(payload if isinstance(payload, bytes) else b"")
            original_id = next(iter(_ids(headers.get("Message-ID"))), None)
        elif ctype == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                original_id = next(iter(_ids(inner[0].get("Message-ID"))), None)
    if status_part is None:
        return None
    blocks = status_part.get_payload()
    if not isinstance(blocks, list) or not blocks:
        return None
    fields = [b for b in blocks if isinstance(b, Message)]
    if not fields:
        return None
    per_message, recipients = fields[0], fields[1:] or fields[:1]
    rank = {"failed": 3, "delayed": 2, "delivered": 1, "relayed": 1, "expanded": 1}
    worst = max(recipients, key=lambda b: rank.get(str(b.get("Action", "")).lower(), 0))
    envid = per_message.get("Original-Envelope-Id")
    return DeliveryReport(
        action=str(worst.get("Action", "")).strip().lower(),
        status=str(worst.get("Status", "")).strip(),
        diagnostic=" ".join(str(worst.get("Diagnostic-Code", "")).split())[:400],
        recipient=str(worst.get("Final-Recipient", "")).split(";")[-1].strip(),
        envelope_id=str(envid).strip() if envid else None,
        original_message_id=original_id,
    )


def read_message(raw: bytes, content: bytes | None = None) -> ReadMessage:
    """Parse what the mail server handed over; never raises on odd input. The headers are
    always ``raw``'s; the text and attachments are ``content``'s when it is given (the
    entity a signature covers, or the one decryption revealed: adapters.email.reply_signature)."""
    message = email.message_from_bytes(raw, policy=default_policy)
    assert isinstance(message, EmailMessage)
    body = message
    if content is not None:
        body = email.message_from_bytes(content, policy=default_policy)
        assert isinstance(body, EmailMessage)
    references = _ids(message.get("In-Reply-To"))
    references += [i for i in reversed(_ids(message.get("References"))) if i not in references]
    try:
        date = parsedate_to_datetime(str(message.get("Date", "")))
        date = date.astimezone(UTC) if date.tzinfo else date.replace(tzinfo=UTC)
    except (TypeError, ValueError, OverflowError):
        date = None
    texts: list[str] = []
    attachments: list[tuple[str, bytes]] = []
    for part in body.walk():
        if part.is_multipart() or part.get_content_type().startswith("message/"):
            continue
        filename = part.get_filename()
        if filename:
            payload = part.get_payload(decode=True)
            attachments.append((filename, payload if isinstance(payload, bytes) else b""))
        elif part.get_content_type() == "text/plain":
            try:
                texts.append(str(part.get_content()))
            except (LookupError, UnicodeDecodeError):
                payload = part.get_payload(decode=True)
                texts.append(
                    payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
                )
    recipients = tuple(
        addr.lower() for _, addr in getaddresses([str(v) for v in message.get_all("To", [])])
    ) + tuple(
        addr.lower()
        for _, addr in getaddresses([str(v) for v in message.get_all("Delivered-To", [])])
    )
    return ReadMessage(
        message_id=next(iter(_ids(message.get("Message-ID"))), None),
        references=tuple(references),
        subject=str(message.get("Subject", "")),
        date=date,
        recipients=recipients,
        text="\n".join(texts),
        attachments=tuple(attachments),
        report=_report(message),
    )


def subject_ref(subject: str) -> str | None:
    """The placement id or batch reference in the subject tag, if any."""
    match = _TAG.search(subject)
    return match.group(1) if match else None


def verp_ref(recipients: Sequence[str], bounce_address: str | None) -> str | None:
    """The dispatch reference a bounce was sent back to (``local+<ref>@domain``)."""
    if bounce_address is None:
        return None
    local, _, domain = bounce_address.lower().partition("@")
    for address in recipients:
        mine, _, their_domain = address.partition("@")
        if their_domain == domain and mine.startswith(local + "+"):
            return mine[len(local) + 1 :]
    return None


def reply_events(
    message: ReadMessage, defaults: RowDefaults, *, sheets: bool, body_form: bool
) -> ParsedEvents:
    """Events from attached sheets and (if allowed) body forms; errors by file and line."""
    parts: list[ParsedEvents] = []
    if sheets:
        for name, data in message.attachments:
            if not name.lower().endswith(SHEET_SUFFIXES):
                continue
            parsed = parse_sheet(name, data, defaults)
            parts.append(
                ParsedEvents(
                    parsed.events,
                    tuple(type(e)(e.line, f"{name}: {e.field}", e.message) for e in parsed.errors),
                )
            )
    if body_form:
        parts.append(rows_to_events(form_rows(message.text), defaults))
    return merge(parts)


__all__ = [
    "DeliveryReport",
    "ReadMessage",
    "read_message",
    "reply_events",
    "subject_ref",
    "verp_ref",
]
