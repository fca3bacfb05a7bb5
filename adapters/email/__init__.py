"""The law-firm email channel: referral mail out, replies and delivery reports back.

Outbound, a packet becomes a referral mail (``render``, from the firm's templates, under
``headers`` folded within RFC 2047's limits) carrying the placement's document pack, attached
or as signed links (``attachments``, ``links``; the gateway serves the links with
``link_service``), signed
with the lender's key and encrypted to the firm (``smime``), sent through the firm's SMTP relay
over TLS (``relay``) and kept on record with what it carried (``journal``). Inbound, the
firm-facing mailbox is read over IMAP with TLS before any credential (``imap``, ``mailbox``);
each message is stored (``inbox_store``), classified as a reply or a delivery report
(``triage``, ``reply``), its S/MIME signature checked against the firm's pinned certificate
(``reply_signature``), and its events handed to reconciliation. ``checks`` validates the
firm's keys, certificates and templates at start-up.
"""

from typing import TYPE_CHECKING

from gateway.exports import lazy_exports

if TYPE_CHECKING:
    from adapters.email.adapter import EmailAdapter, build_email_adapter
    from adapters.email.checks import check_email_agency
    from adapters.email.mailbox import MailboxReader, build_mailbox_reader

__all__ = [
    "EmailAdapter",
    "MailboxReader",
    "build_email_adapter",
    "build_mailbox_reader",
    "check_email_agency",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "EmailAdapter": "adapters.email.adapter",
        "MailboxReader": "adapters.email.mailbox",
        "build_email_adapter": "adapters.email.adapter",
        "build_mailbox_reader": "adapters.email.mailbox",
        "check_email_agency": "adapters.email.checks",
    },
)
