"""The lender's document-signing certificate: a demo CA and a signing certificate it issued,
made by ``agency-gateway keys generate`` (``setup``) when ``[lender] signing_certificate``
names a file that does not exist.

Files (next to the configured certificate, ``var/keys/`` by default):

* ``lender-signing.crt``: the signing certificate, then the CA certificate (the chain that
  pyHanko embeds in every signature);
* ``lender-signing.key``: its private key (PKCS#8 PEM, mode 0600);
* ``lender-signing-ca.crt``: the CA certificate alone, the trust anchor handed to agencies
  and verifiers (``pdfsig``, Adobe Reader, ``openssl cms -verify -CAfile``).

The CA's private key is thrown away once it has signed: a demo CA never issues a second
certificate (run the command again after removing the three files). In production the
lender's certificate comes from a CA it trusts (a CFCA-style document signing
certificate); point ``signing_certificate``/``signing_key`` at it and drop the demo files.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


@dataclass(frozen=True, slots=True)
class DemoSigningSet:
    """PEM texts of a demo signing certificate (chain included), its key and its CA."""

    chain: str
    key: str
    ca: str


def ca_path_for(certificate: Path) -> Path:
    """Where the CA certificate sits beside ``certificate`` (``<stem>-ca.crt``)."""
    return certificate.with_name(f"{certificate.stem}-ca.crt")


def _name(common_name: str, organisation: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def demo_signing_set(
    organisation: str, *, now: datetime | None = None, days: int = 825
) -> DemoSigningSet:
    """A fresh RSA-2048 CA and a document-signing certificate for ``organisation``.

    RSA because every PDF reader verifies it (Adobe, poppler's NSS, pyHanko, openssl).
    The signing certificate has no extended key usage: readers treat one without it as good
    for document signatures, while an EKU that is not theirs makes some of them refuse.
    """
    at = now or datetime.now(UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = _name(f"{organisation} document signing CA (demo)", organisation)
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(at - timedelta(days=1))
        .not_valid_after(at + timedelta(days=days + 365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{organisation} document signing (demo)", organisation))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(at - timedelta(days=1))
        .not_valid_after(at + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_pem = ca_cert.public_bytes(pem).decode()
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return DemoSigningSet(chain=cert.public_bytes(pem).decode() + ca_pem, key=key_pem, ca=ca_pem)


__all__ = ["DemoSigningSet", "ca_path_for", "demo_signing_set"]
