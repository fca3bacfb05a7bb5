"""check-config on a law firm's reply signatures: what must be pinned, and what is wrong."""

from pathlib import Path

from adapters.email.checks import email_problems
from gateway.config.email import EmailSection
from gateway.keys import self_signed


def section(smime: dict[str, object], *, imap: bool = True) -> EmailSection:
    return EmailSection.model_validate(
        {
            "from_address": "legal@lender.test",
            "message_id_domain": "lender.test",
            "to": ["intake@zhengyi.test"],
            "smtp": {"host": "127.0.0.1"},
            "smime": {
                "sign_cert": {"file": "lender.pem"},
                "sign_key": {"file": "lender.key"},
                **smime,
            },
            **(
                {"imap": {"host": "127.0.0.1", "username": "r", "password": {"env": "PW"}}}
                if imap
                else {}
            ),
        }
    )


def reply_problems(base: Path, smime: dict[str, object], *, imap: bool = True) -> list[str]:
    cert, key = self_signed("LenderX", email="legal@lender.test")
    (base / "lender.pem").write_text(cert)
    (base / "lender.key").write_text(key)
    problems = email_problems("zhengyi.toml", section(smime, imap=imap), base, {"PW": "x"})
    return [p for p in problems if "reply" in p]


def test_replies_must_be_signed_by_default_and_that_needs_the_firms_certificate(tmp_path):
    assert section({}).smime.reply_signature == "required"
    [problem] = reply_problems(tmp_path, {})
    assert problem.startswith("zhengyi.toml: email.smime.reply_signature = 'required'")
    assert "reply_certs" in problem and 'reply_signature = "off"' in problem


def test_the_firms_encryption_certificate_is_pinned_when_no_other_is_given(tmp_path):
    (tmp_path / "firm.pem").write_text(self_signed("Firm", email="intake@zhengyi.test")[0])
    smime = {"encrypt_cert": {"file": "firm.pem"}}
    assert reply_problems(tmp_path, smime) == []
    refs = section(smime).smime.reply_cert_refs()
    assert [r.describe() for r in refs] == [section(smime).smime.encrypt_cert.describe()]  # type: ignore[union-attr]


def test_a_pinned_certificate_that_is_not_one_is_named(tmp_path):
    (tmp_path / "firm.pem").write_text("not a certificate")
    problems = reply_problems(tmp_path, {"reply_certs": [{"file": "firm.pem"}]})
    assert len(problems) == 1 and "email.smime.reply_certs[0]: not a PEM certificate" in problems[0]


def test_nothing_is_needed_when_replies_are_not_read_or_not_checked(tmp_path):
    assert reply_problems(tmp_path, {}, imap=False) == []
    assert reply_problems(tmp_path, {"reply_signature": "off"}) == []
