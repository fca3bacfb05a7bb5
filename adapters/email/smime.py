"""S/MIME for referral mail: sign with the lender's key, then encrypt to the firm (pure).

* Signing is a detached ``multipart/signed`` over the inner MIME entity exactly as given
  (CRLF line endings), SHA-256, with cryptography's ``PKCS7SignatureBuilder``.
* Encryption wraps the signed entity in ``application/pkcs7-mime; smime-type=enveloped-data``
  with AES-256-CBC (``PKCS7EnvelopeBuilder``, cryptography >= 45). Envelope recipients must
  hold RSA keys; anything else is refused when the key is loaded, not when mail is sent.
* Every entity returned here starts with its own ``MIME-Version`` and ``Content-Type``
  headers and uses CRLF, so the caller prepends the outer headers and sends the bytes as is.
* ``sign_message`` signs a whole RFC 5322 message the way a firm signs its reply: the
  content headers move into the signed entity, the others stay outside.
* cryptography has no public API to verify PKCS7 signatures; replies are verified with the
  openssl command line (adapters.email.reply_signature), as are the lender's mails in the sandbox.
"""

from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.serialization import pkcs7

from gateway.errors import ConfigError

SignerKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True, slots=True)
class Signer:
    """The lender's S/MIME identity."""

    cert: x509.Certificate
    key: SignerKey


def crlf(data: bytes) -> bytes:
    """Normalise line endings to CRLF (cryptography writes enveloped data with LF)."""
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def load_certificate(pem: str | bytes, *, what: str) -> x509.Certificate:
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise ConfigError(f"{what}: not a PEM certificate ({exc})") from None


def load_signer(cert_pem: str | bytes, key_pem: str | bytes, *, what: str) -> Signer:
    """Parse the signing certificate and its private key (RSA or EC) and check they match."""
    cert = load_certificate(cert_pem, what=f"{what} certificate")
    data = key_pem.encode() if isinstance(key_pem, str) else key_pem
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{what} key: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{what} key: S/MIME signing needs an RSA or EC key")
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, public) != (
        cert.public_key().public_bytes(serialization.Encoding.DER, public)
    ):
        raise ConfigError(f"{what}: the key does not belong to the certificate")
    return Signer(cert, key)


def load_recipient(cert_pem: str | bytes, *, what: str) -> x509.Certificate:
    """Parse the firm's certificate; PKCS7 envelopes can only be addressed to RSA keys."""
    cert = load_certificate(cert_pem, what=what)
    if not isinstance(cert.public_key(), rsa.RSAPublicKey):
        raise ConfigError(f"{what}: S/MIME encryption needs an RSA certificate")
    return cert


def sign(inner: bytes, signer: Signer) -> bytes:
    """A detached ``multipart/signed`` entity over ``inner`` (a CRLF MIME entity)."""
    return crlf(
        pkcs7.PKCS7SignatureBuilder()
        .set_data(inner)
        .add_signer(signer.cert, signer.key, hashes.SHA256())
        .sign(serialization.Encoding.SMIME, [pkcs7.PKCS7Options.DetachedSignature])
    )


def sign_message(message: bytes, signer: Signer) -> bytes:
    """``message`` (headers and body) as a signed message: its ``Content-*`` headers and body
    become the signed entity; every other header stays on the outside, unsigned."""
    head, _, body = crlf(message).partition(b"\r\n\r\n")
    fields: list[bytes] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b"\r\n" + line  # a folded header goes on
        else:
            fields.append(line)
    outer: list[bytes] = []
    inner: list[bytes] = []
    for field in fields:
        name = field.split(b":", 1)[0].strip().lower()
        if name != b"mime-version":
            (inner if name.startswith(b"content-") else outer).append(field)
    entity = b"\r\n".join(inner) + b"\r\n\r\n" + body
    return b"\r\n".join(outer) + b"\r\n" + sign(entity, signer)


def encrypt(entity: bytes, recipient: x509.Certificate) -> bytes:
    """An ``enveloped-data`` entity holding ``entity``, AES-256 for ``recipient``."""
    return crlf(
        pkcs7.PKCS7EnvelopeBuilder()
        .set_data(entity)
        .add_recipient(recipient)
        .set_content_encryption_algorithm(algorithms.AES256)
        .encrypt(serialization.Encoding.SMIME, [])
    )


def decrypt(message: bytes, cert: x509.Certificate, key: rsa.RSAPrivateKey) -> bytes:
    """The entity inside an S/MIME ``enveloped-data`` message (the firm's side)."""
    return pkcs7.pkcs7_decrypt_smime(message, cert, key, [])


def protect(inner: bytes, signer: Signer, recipient: x509.Certificate | None) -> bytes:
    """Sign, then encrypt when the firm's certificate is known."""
    signed = sign(inner, signer)
    return encrypt(signed, recipient) if recipient is not None else signed


__all__ = [
    "Signer",
    "crlf",
    "decrypt",
    "encrypt",
    "load_certificate",
    "load_recipient",
    "load_signer",
    "protect",
    "sign",
    "sign_message",
]
