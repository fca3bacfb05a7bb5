"""S/MIME sign-then-encrypt with cryptography, checked by openssl as a firm would."""

import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from adapters.email.smime import decrypt, encrypt, load_recipient, load_signer, protect, sign
from gateway.errors import ConfigError
from gateway.keys import self_signed

OPENSSL = shutil.which("openssl")
INNER = (
    b'Content-Type: text/plain; charset="utf-8"\r\n'
    b"Content-Transfer-Encoding: base64\r\n\r\n"
    b"5aeU5omY5b6L5biI5YKs5pS25Ye9\r\n"
)


@pytest.fixture(scope="module")
def lender() -> tuple[str, str]:
    return self_signed("LenderX 法务部", email="legal@lender.test")


@pytest.fixture(scope="module")
def firm() -> tuple[str, str]:
    return self_signed("正义律师事务所", email="intake@zhengyi.test")


def openssl(tmp_path: Path, data: bytes, *args: str) -> subprocess.CompletedProcess[bytes]:
    assert OPENSSL is not None
    source = tmp_path / "in.eml"
    source.write_bytes(data)
    return subprocess.run([OPENSSL, "smime", "-in", str(source), *args], capture_output=True)


def test_decrypt_opens_what_encrypt_sealed(lender, firm):
    signer = load_signer(*lender, what="lender")
    recipient = load_recipient(firm[0], what="firm")
    sealed = protect(INNER, signer, recipient)
    assert b"enveloped-data" in sealed and INNER.rstrip() not in sealed
    assert b"\n" not in sealed.replace(b"\r\n", b"")  # CRLF only, ready for SMTP
    key = serialization.load_pem_private_key(firm[1].encode(), None)
    opened = decrypt(sealed, recipient, key)  # type: ignore[arg-type]
    assert b"Content-Type: multipart/signed" in opened
    assert INNER.rstrip() in opened


@pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")
def test_openssl_verifies_our_signature_and_decrypts_our_envelope(lender, firm, tmp_path):
    signer = load_signer(*lender, what="lender")
    recipient = load_recipient(firm[0], what="firm")
    (tmp_path / "lender.pem").write_text(lender[0])
    (tmp_path / "firm.pem").write_text(firm[0])
    (tmp_path / "firm.key").write_text(firm[1])
    signed = sign(INNER, signer)
    verified = openssl(
        tmp_path, signed, "-verify", "-CAfile", str(tmp_path / "lender.pem"), "-purpose", "any"
    )
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.replace(b"\r\n", b"\n") == INNER.replace(b"\r\n", b"\n")

    decrypted = openssl(
        tmp_path,
        encrypt(signed, recipient),
        "-decrypt",
        "-recip",
        str(tmp_path / "firm.pem"),
        "-inkey",
        str(tmp_path / "firm.key"),
    )
    assert decrypted.returncode == 0, decrypted.stderr
    again = openssl(
        tmp_path,
        decrypted.stdout,
        "-verify",
        "-CAfile",
        str(tmp_path / "lender.pem"),
        "-purpose",
        "any",
    )
    assert again.returncode == 0, again.stderr
    # AES-256 as configured, not the library's AES-128 default.
    cms = subprocess.run(
        [str(OPENSSL), "cms", "-cmsout", "-print", "-inform", "SMIME", "-in", "-"],
        input=encrypt(signed, recipient),
        capture_output=True,
    )
    assert b"aes-256-cbc" in cms.stdout


@pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")
def test_a_tampered_mail_fails_verification(lender, tmp_path):
    signed = sign(INNER, load_signer(*lender, what="lender"))
    tampered = signed.replace(b"5aeU5omY", b"5aeU5omZ")
    (tmp_path / "lender.pem").write_text(lender[0])
    result = openssl(
        tmp_path, tampered, "-verify", "-CAfile", str(tmp_path / "lender.pem"), "-purpose", "any"
    )
    assert result.returncode != 0


def test_a_key_of_another_certificate_is_refused(lender, firm):
    with pytest.raises(ConfigError, match="does not belong to the certificate"):
        load_signer(lender[0], firm[1], what="lender")


def test_an_ec_certificate_cannot_be_an_envelope_recipient(tmp_path):
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ec firm")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(ConfigError, match="needs an RSA certificate"):
        load_recipient(cert.public_bytes(serialization.Encoding.PEM), what="firm")


def test_garbage_is_not_a_certificate():
    with pytest.raises(ConfigError, match="not a PEM certificate"):
        load_recipient("not a cert", what="email.smime.encrypt_cert")
