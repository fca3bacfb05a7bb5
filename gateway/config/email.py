"""Configuration of a law firm reached by email (the ``[email]`` section of its agency file).

Outbound mail goes through our SMTP relay with STARTTLS required (never opportunistic) or
implicit TLS, is signed with the lender's S/MIME certificate and, when the firm's certificate
is configured, encrypted to it. Replies and bounces are read back from the firm-facing
mailbox over IMAP with implicit TLS. Every key is documented in README ("Law-firm email").
"""

import re
from collections.abc import Mapping
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.config.secrets import SecretRef

EMAIL_PATTERN = r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$"
DOMAIN_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$"

DEFAULT_TEMPLATE_NAMES: Mapping[str, str] = {
    "placement.created": "referral",
    "placement.amended": "amendment",
    "placement.expiring": "expiring",
    "placement.recalled": "recall",
    "payment.direct": "direct_payment",
    "payment.attributed": "attributed_payment",
    "data.deletion_requested": "deletion",
    "request.decided": "decision",
    "settlement.statement": "settlement_statement",
    "batch": "batch",
}
"""Packet type (or ``batch``) → template base name under ``<templates_dir>/<language>/``."""

ReplySignature = Literal["required", "if_signed", "off"]
"""What a firm's reply must carry to be read (adapters.email.reply_signature)."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SmtpSection(_Section):
    """Our outgoing relay. ``tls = "starttls"`` refuses a server that does not offer STARTTLS."""

    host: str = Field(min_length=1)
    port: int = Field(default=587, ge=1, le=65535)
    tls: Literal["starttls", "implicit"] = "starttls"
    username: str | None = None
    password: SecretRef | None = None
    ca_file: str | None = Field(
        default=None, description="PEM trust anchors for the server certificate (default: system)"
    )
    timeout_seconds: float = Field(default=60, gt=0, le=600)
    connect_timeout_seconds: float = Field(default=15, gt=0, le=120)

    @model_validator(mode="after")
    def _auth_pair(self) -> Self:
        if (self.username is None) != (self.password is None):
            raise ValueError("give both username and password, or neither")
        return self


class SmimeSection(_Section):
    """S/MIME: the lender's signing certificate and key; the firm's certificate to encrypt to."""

    sign_cert: SecretRef
    sign_key: SecretRef
    encrypt_cert: SecretRef | None = Field(
        default=None, description="The firm's RSA certificate; mail is encrypted when set"
    )
    reply_certs: tuple[SecretRef, ...] = Field(
        default=(),
        max_length=10,
        description="The firm's signing certificates, pinned (default: encrypt_cert)",
    )
    reply_signature: ReplySignature = Field(
        default="required",
        description="required: read only replies the firm signed; if_signed: a signature "
        "that is there must verify; off: read replies without checking",
    )

    def reply_cert_refs(self) -> tuple[SecretRef, ...]:
        """The certificates a reply's signer must be one of."""
        if self.reply_certs:
            return self.reply_certs
        return (self.encrypt_cert,) if self.encrypt_cert is not None else ()


class ImapSection(_Section):
    """The firm-facing mailbox where replies and delivery reports arrive, always over TLS:
    implicit (993) or STARTTLS required (143; adapters.email.imap)."""

    host: str = Field(min_length=1)
    port: int = Field(default=993, ge=1, le=65535)
    tls: Literal["implicit", "starttls"] = "implicit"
    username: str = Field(min_length=1)
    password: SecretRef
    mailbox: str = "INBOX"
    ca_file: str | None = None
    timeout_seconds: float = Field(default=30, gt=0, le=600)
    poll_seconds: float = Field(default=60, gt=0, le=86_400)
    max_messages_per_poll: int = Field(default=200, ge=1, le=10_000)

    @model_validator(mode="before")
    @classmethod
    def _starttls_port(cls, data: object) -> object:
        """STARTTLS is spoken on 143 unless a port is given."""
        if isinstance(data, dict) and data.get("tls") == "starttls" and "port" not in data:
            return {**data, "port": 143}
        return data


class RepliesSection(_Section):
    """How replies are read: a filled-in CSV/JSON/XLSX attachment, and/or a form in the body."""

    structured_attachment: bool = True
    body_form: bool = False
    default_currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")
    timezone: str = Field(
        default="Asia/Shanghai", description="Zone of dates the firm writes without an offset"
    )


class DocumentLinksSection(_Section):
    """Links to the placement's documents, listed in the mail instead of attachments when the
    pack is larger than ``max_attachment_bytes``: each link names one document of one
    placement, is signed with ``key`` (HMAC-SHA256) and expires after ``valid_days``; the
    gateway serves it only while the placement is open with this firm
    (adapters.email.link_service)."""

    base_url: str = Field(
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description="The gateway's address as the firm reaches it, e.g. https://gw.lender.cn",
    )
    key: SecretRef = Field(description="At least 32 bytes; shared with nobody")
    valid_days: int = Field(default=14, ge=1, le=90)


class EmailSection(_Section):
    """How referral mail is sent to the firm and how its replies are read."""

    from_address: str = Field(pattern=EMAIL_PATTERN)
    from_name: str = ""
    message_id_domain: str = Field(pattern=DOMAIN_PATTERN)
    bounce_address: str | None = Field(
        default=None,
        pattern=EMAIL_PATTERN,
        description="VERP base: the envelope sender becomes local+<ref>@domain",
    )
    to: tuple[str, ...] = Field(min_length=1, max_length=20)
    cc: tuple[str, ...] = Field(default=(), max_length=20)
    mode: Literal["per_case", "per_batch"] = "per_case"
    batch_max_cases: int = Field(default=50, ge=1, le=1000)
    batch_window_seconds: float = Field(default=0.5, ge=0, le=60)
    templates_dir: str = "config/templates/email"
    language: Literal["zh", "en"] = "zh"
    template_names: dict[str, str] = Field(default_factory=dict)
    case_file: Literal["csv", "json", "none"] = "csv"
    attach_documents: bool = Field(
        default=True,
        description="attach the placement's document pack (up to max_attachment_bytes); "
        "false: list it with links (or, without [email.links], list it only)",
    )
    max_attachment_bytes: int = Field(
        default=10 * 1024 * 1024,
        ge=0,
        description="above this total per mail the documents are listed with links instead",
    )
    links: DocumentLinksSection | None = None
    smtp: SmtpSection
    smime: SmimeSection
    imap: ImapSection | None = None
    replies: RepliesSection = RepliesSection()

    @model_validator(mode="before")
    @classmethod
    def _removed_keys(cls, data: object) -> object:
        if isinstance(data, dict) and "documents_dir" in data:
            raise ValueError(
                "documents_dir was removed: the mail now carries each placement's own "
                "document pack (its authorisation letter and the case's documents from the "
                "lender's document store, [documents] store in gateway.toml); move the "
                "<documents_dir>/<case_id>/ folders into that store and delete this key"
            )
        return data

    @model_validator(mode="after")
    def _addresses(self) -> Self:
        bad = [a for a in (*self.to, *self.cc) if not re.match(EMAIL_PATTERN, a)]
        if bad:
            raise ValueError(f"to/cc: not an email address: {bad}")
        unknown = sorted(set(self.template_names) - set(DEFAULT_TEMPLATE_NAMES))
        if unknown:
            raise ValueError(
                f"template_names: unknown key(s) {unknown}; known: {list(DEFAULT_TEMPLATE_NAMES)}"
            )
        return self

    def template_name(self, kind: str) -> str:
        """The template base name for a packet type or ``batch``."""
        return self.template_names.get(kind, DEFAULT_TEMPLATE_NAMES[kind])


__all__ = [
    "DEFAULT_TEMPLATE_NAMES",
    "DocumentLinksSection",
    "EmailSection",
    "ImapSection",
    "RepliesSection",
    "ReplySignature",
    "SmimeSection",
    "SmtpSection",
]
