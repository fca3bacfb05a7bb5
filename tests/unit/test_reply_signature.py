"""A firm's reply is read only when the firm's pinned certificate signed it (real openssl)."""

import base64
import shutil
from email.message import EmailMessage
from email.policy import SMTP, default as default_policy

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from adapters.email.reply import read_message
from adapters.email.reply_signature import (
    ACCEPTED,
    ReplyOpener,
    fingerprint,
    signed_form,
)
from adapters.email.smime import Signer, encrypt, load_signer, sign_message
from gateway.errors import ConfigError
from gateway.keys import self_signed

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl")

SHEET = "event_type,placement_id,occurred_at\r\nplacement.acknowledged,PL-1,2026-03-03\r\n"


@pytest.fixture(scope="module")
def firm() -> Signer:
    return load_signer(*self_signed("正义律师事务所", email="intake@zhengyi.test"), what="firm")


@pytest.fixture(scope="module")
def stranger() -> Signer:
    return load_signer(*self_signed("Someone Else", email="x@elsewhere.test"), what="other")


@pytest.fixture(scope="module")
def lender() -> Signer:
    return load_signer(*self_signed("LenderX 法务部", email="legal@lender.test"), what="lender")


def reply(sheet: str = SHEET) -> bytes:
    message = EmailMessage(policy=default_policy)
    message["From"] = "intake@zhengyi.test"
    message["To"] = "legal@lender.test"
    message["Subject"] = "回复: 委托函 [委托 PL-1]"
    message["Message-ID"] = "<reply-1@zhengyi.test>"
    message["In-Reply-To"] = "<ref-1@lender.test>"
    message.set_content("贵司来函收悉。\n", cte="base64")
    message.add_attachment(sheet.encode(), maintype="text", subtype="csv", filename="回复表.csv")
    return message.as_bytes(policy=SMTP)


def opener(policy: str, *pinned: Signer, lender: Signer | None = None) -> ReplyOpener:
    return ReplyOpener(
        policy=policy,  # type: ignore[arg-type]
        pinned=[p.cert for p in pinned],
        signer=lender,
    )


async def test_a_reply_signed_by_the_firm_is_read_from_what_the_signature_covers(firm):
    raw = sign_message(reply(), firm)
    assert signed_form(raw) == "detached"
    opened = await opener("required", firm).open(raw)
    assert opened.status == "verified" and opened.readable
    assert opened.signer_sha256 == fingerprint(firm.cert)
    message = read_message(opened.raw, opened.content)
    assert message.message_id == "<reply-1@zhengyi.test>"
    assert message.references == ("<ref-1@lender.test>",)
    assert [name for name, _ in message.attachments] == ["回复表.csv"]  # no smime.p7s
    assert message.attachments[0][1].decode() == SHEET


async def test_a_reply_changed_after_signing_is_not_read(firm):
    raw = sign_message(reply(), firm)
    body = SHEET.encode()
    tampered = raw.replace(
        _base64_of(body), _base64_of(body.replace(b"acknowledged", b"rejected0000"))
    )
    assert tampered != raw
    opened = await opener("required", firm).open(tampered)
    assert opened.status == "invalid" and not opened.readable
    assert opened.detail.startswith("bad signature:")
    # however the policy is set, a signature that is there must hold
    assert not (await opener("if_signed", firm).open(tampered)).readable


async def test_a_reply_signed_by_anyone_else_is_not_read(firm, stranger):
    opened = await opener("required", firm).open(sign_message(reply(), stranger))
    assert opened.status == "unknown_signer" and not opened.readable
    assert opened.signer_sha256 == fingerprint(stranger.cert)
    assert "Someone Else" in opened.detail


async def test_an_unsigned_reply_is_read_only_when_the_policy_allows_it(firm):
    raw = reply()
    required = await opener("required", firm).open(raw)
    assert required.status == "unsigned" and not required.readable
    optional = await opener("if_signed", firm).open(raw)
    assert optional.status == "unsigned" and optional.readable
    off = await opener("off").open(raw)
    assert off.status == "not_checked" and off.readable and off.content is raw


async def test_a_part_added_outside_the_signed_entity_makes_the_reply_unsigned(firm):
    # A forwarder wraps the firm's genuine signed reply and adds a sheet of its own.
    wrapper = EmailMessage(policy=default_policy)
    wrapper["From"] = "intake@zhengyi.test"
    wrapper["Subject"] = "回复: 委托函 [委托 PL-1]"
    wrapper["In-Reply-To"] = "<ref-1@lender.test>"
    wrapper.set_content("see attached\n")
    wrapper.add_attachment(
        sign_message(reply(), firm), maintype="message", subtype="rfc822", filename="a.eml"
    )
    forged = SHEET.replace("acknowledged", "rejected").encode()
    wrapper.add_attachment(forged, maintype="text", subtype="csv", filename="回复表.csv")
    opened = await opener("required", firm).open(wrapper.as_bytes(policy=SMTP))
    assert opened.status == "unsigned" and not opened.readable


async def test_a_reply_encrypted_to_the_lender_is_opened_then_verified(firm, lender):
    signed = sign_message(reply(), firm)
    outer, _, _ = signed.partition(b"MIME-Version:")
    entity = signed[len(outer) :]
    raw = outer + encrypt(entity, lender.cert)
    assert signed_form(raw) == "enveloped"
    opened = await opener("required", firm, lender=lender).open(raw)
    assert opened.status == "verified" and opened.readable
    message = read_message(opened.raw, opened.content)
    assert message.message_id == "<reply-1@zhengyi.test>"  # headers of the outer message
    assert message.attachments[0][1].decode() == SHEET
    # without the lender's key there is nothing to verify
    closed = await opener("required", firm).open(raw)
    assert closed.status == "invalid" and "do not hold" in closed.detail


async def test_an_opaque_signed_reply_is_verified_too(firm):
    entity = b'Content-Type: text/plain; charset="utf-8"\r\n\r\nok\r\n'
    der = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(entity)
        .add_signer(firm.cert, firm.key, hashes.SHA256())
        .sign(serialization.Encoding.DER, [])
    )
    raw = (
        b"From: intake@zhengyi.test\r\nMessage-ID: <o@zhengyi.test>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: application/pkcs7-mime; smime-type=signed-data; name="smime.p7m"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(der).replace(b"\n", b"\r\n")
    )
    assert signed_form(raw) == "opaque"
    opened = await opener("required", firm).open(raw)
    assert opened.status == "verified", opened.detail
    message = read_message(opened.raw, opened.content)
    assert message.text.strip() == "ok" and message.message_id == "<o@zhengyi.test>"


def test_a_policy_that_checks_needs_a_pinned_certificate():
    with pytest.raises(ConfigError, match="needs the firm's certificate"):
        opener("required")
    opener("off")  # nothing to check against, nothing needed
    assert ACCEPTED["required"] == {"verified"}


def _base64_of(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n").rstrip(b"\r\n")


async def test_a_vouched_reply_is_opened_whatever_its_signature_says(firm, stranger, lender):
    """Ops vouched: the envelope is opened and the signed content read, though the signer
    is unknown or the signature does not hold; only a key we do not hold stops it."""
    signed = sign_message(reply(), stranger)
    outer, _, _ = signed.partition(b"MIME-Version:")
    sealed = outer + encrypt(signed[len(outer) :], lender.cert)
    for raw in (signed, sealed, reply()):
        opened = await opener("required", firm, lender=lender).open_vouched(raw)
        assert opened.readable and opened.status == "not_checked", opened.detail
        message = read_message(opened.raw, opened.content)
        assert [name for name, _ in message.attachments] == ["回复表.csv"]
        assert message.attachments[0][1].decode() == SHEET
    closed = await opener("required", firm).open_vouched(sealed)
    assert not closed.readable and "do not hold" in closed.detail
