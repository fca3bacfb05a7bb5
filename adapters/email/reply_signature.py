"""Is a reply really from the firm? Replies are opened and their S/MIME signature checked
before a byte of their content is read.

Theory of operation
-------------------
``ReplyOpener.open`` takes a message as the mailbox handed it over:

1. A message encrypted to the lender's certificate (``application/pkcs7-mime``,
   enveloped-data) is decrypted with the lender's key. Its headers (Message-ID,
   In-Reply-To, Subject) stay those of the outer message.
2. A signed entity (``multipart/signed``, or opaque ``application/pkcs7-mime`` signed-data)
   is verified by ``openssl cms -verify``: the signature must hold over the content, and the
   certificate that made it must be one of the firm's pinned certificates, compared by
   SHA-256 fingerprint (no chain, no CA: the firm gave us its certificate). Only the content
   openssl verified is read afterwards; a part outside the signed entity is never read.
3. The agency's ``email.smime.reply_signature`` decides what may be read: ``required`` (the
   default) only verified replies; ``if_signed`` also unsigned ones, but a signature that is
   there must verify; ``off`` reads everything and checks nothing.

``ReplyOpener.open_vouched`` is for a reply ops has vouched for (they confirmed it with the
firm by other means): it is decrypted as above and its content taken out of a signed entity
whatever the signature says, since the reason the reply was held back is exactly that the
signature did not vouch for it.

cryptography has no public PKCS #7 verification API, so the check runs the openssl command
line in a child process (the bytes on its stdin, a timeout, a private temporary directory
for the signer certificate and the verified content). Delivery reports from mail servers
are never signed: adapters.email.triage handles a report whatever its verdict says.
"""

import asyncio
import contextlib
import hashlib
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from adapters.email.smime import Signer, decrypt, load_certificate, load_signer
from gateway.config.agencies import EmailAgency
from gateway.config.email import ReplySignature
from gateway.errors import ConfigError

SignatureStatus = Literal["verified", "unsigned", "invalid", "unknown_signer", "not_checked"]

ACCEPTED: dict[ReplySignature, frozenset[SignatureStatus]] = {
    "required": frozenset({"verified"}),
    "if_signed": frozenset({"verified", "unsigned"}),
    "off": frozenset({"not_checked"}),
}
"""Which signature states each policy lets the reader read."""

_SIGNATURE_TYPES = ("application/pkcs7-signature", "application/x-pkcs7-signature")
_OPAQUE_TYPES = ("application/pkcs7-mime", "application/x-pkcs7-mime")


@dataclass(frozen=True, slots=True)
class OpenedReply:
    """A message as received, what may be read of it, and why.

    ``content`` is the entity whose parts are read (the verified content of a signed reply,
    the decrypted entity, or the message itself); the headers are always the outer
    message's. ``readable`` says whether the policy allows reading ``content`` at all."""

    raw: bytes
    content: bytes
    status: SignatureStatus
    signer_sha256: str | None
    detail: str
    readable: bool


def fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _content_type(entity: bytes) -> tuple[str, dict[str, str]]:
    head = BytesHeaderParser(policy=default_policy).parsebytes(entity[:65_536], headersonly=True)
    ctype = head.get_content_type()
    params = {
        k.lower(): str(v).lower() for k, v in head.get_params(failobj=[], header="content-type")
    }
    return ctype, params


def signed_form(entity: bytes) -> Literal["detached", "opaque", "enveloped"] | None:
    """How ``entity`` is protected, from its own top-level Content-Type."""
    ctype, params = _content_type(entity)
    if ctype == "multipart/signed" and params.get("protocol") in _SIGNATURE_TYPES:
        return "detached"
    if ctype in _OPAQUE_TYPES:
        kind = params.get("smime-type", "")
        if kind == "signed-data":
            return "opaque"
        if kind == "enveloped-data" or not kind:
            return "enveloped"
    return None


def openssl_missing() -> str | None:
    """Why replies cannot be verified here, or None when they can."""
    return None if shutil.which("openssl") else "the openssl command is not installed"


class ReplyOpener:
    """Opens and judges one firm's replies (see the module docstring).

    Args:
        policy: the agency's ``email.smime.reply_signature``.
        pinned: the firm's signing certificates.
        signer: the lender's S/MIME identity, to open replies encrypted to us (RSA only).
        timeout: seconds for one openssl run.
    """

    def __init__(
        self,
        *,
        policy: ReplySignature,
        pinned: Iterable[x509.Certificate],
        signer: Signer | None,
        timeout: float = 30.0,
    ) -> None:
        self._policy = policy
        self._pinned = {fingerprint(c) for c in pinned}
        self._signer = signer
        self._timeout = timeout
        if policy != "off" and not self._pinned:
            raise ConfigError(
                f"email.smime.reply_signature = {policy!r} needs the firm's certificate "
                "(email.smime.reply_certs, or encrypt_cert)"
            )

    async def open(self, raw: bytes) -> OpenedReply:
        entity, decrypted = self._decrypt(raw)
        if self._policy == "off":
            return self._judged(raw, entity, "not_checked", None, "signature not checked")
        form = signed_form(entity)
        if form is None:
            return self._judged(raw, entity, "unsigned", None, "the reply is not signed")
        if form == "enveloped":
            return self._judged(raw, entity, "invalid", None, _still_sealed(decrypted))
        return await self._verify(raw, entity)

    async def open_vouched(self, raw: bytes) -> OpenedReply:
        """Open a reply ops has vouched for: decrypted, and read from inside its signed
        entity without judging the signature (see the module docstring)."""
        entity, decrypted = self._decrypt(raw)
        form = signed_form(entity)
        if form == "enveloped":
            return OpenedReply(raw, entity, "not_checked", None, _still_sealed(decrypted), False)
        if form is None:
            return OpenedReply(raw, entity, "not_checked", None, "vouched for by ops", True)
        run = await self._cms(entity, "-nosigs")
        if isinstance(run, str):
            return OpenedReply(raw, entity, "not_checked", None, run, False)
        _signers, content = run
        return OpenedReply(raw, content, "not_checked", None, "vouched for by ops", True)

    def _decrypt(self, raw: bytes) -> tuple[bytes, bool]:
        signer = self._signer
        if signed_form(raw) != "enveloped" or signer is None:
            return raw, False
        if not isinstance(signer.key, rsa.RSAPrivateKey):
            return raw, False
        try:
            return decrypt(raw, signer.cert, signer.key), True
        except ValueError:
            return raw, False

    async def _verify(self, raw: bytes, entity: bytes) -> OpenedReply:
        run = await self._cms(entity)
        if isinstance(run, str):
            return self._judged(raw, entity, "invalid", None, run)
        signers, content = run
        prints = [fingerprint(c) for c in signers]
        known = [p for p in prints if p in self._pinned]
        if not known:
            subject = signers[0].subject.rfc4514_string() if signers else "nobody"
            detail = f"signed by a certificate we do not know ({subject}, sha256 {prints[:1]})"
            return self._judged(
                raw, entity, "unknown_signer", prints[0] if prints else None, detail
            )
        return self._judged(raw, content, "verified", known[0], "signed by the firm")

    async def _cms(self, entity: bytes, *flags: str) -> tuple[list[x509.Certificate], bytes] | str:
        """``openssl cms -verify`` of a signed entity: the certificates that signed it and
        the content they signed, or why that failed. ``flags`` go to openssl as they are
        (``-nosigs`` takes the content out without checking the signature)."""
        openssl = shutil.which("openssl")
        if openssl is None:
            return "openssl is not installed"
        with tempfile.TemporaryDirectory(prefix="reply-") as tmp:
            signer_file, content_file = Path(tmp) / "signer.pem", Path(tmp) / "content"
            process = await asyncio.create_subprocess_exec(
                openssl,
                "cms",
                "-verify",
                "-inform",
                "SMIME",
                "-noverify",  # no chain: the signer is pinned by fingerprint instead
                *flags,
                "-signer",
                str(signer_file),
                "-out",
                str(content_file),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            try:
                async with asyncio.timeout(self._timeout):
                    _, errors = await process.communicate(entity)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
                return "signature check timed out"
            if process.returncode != 0:
                return f"bad signature: {_first_error(errors)}"
            signers = (
                x509.load_pem_x509_certificates(signer_file.read_bytes())
                if signer_file.exists()
                else []
            )
            return signers, content_file.read_bytes()

    def _judged(
        self,
        raw: bytes,
        content: bytes,
        status: SignatureStatus,
        signer: str | None,
        detail: str,
    ) -> OpenedReply:
        readable = status in ACCEPTED[self._policy]
        return OpenedReply(raw, content, status, signer, detail, readable)


def build_reply_opener(agency: EmailAgency, *, base_dir: Path) -> ReplyOpener:
    """The firm's reply opener from its ``[email.smime]`` settings: our S/MIME key (to
    decrypt) and the firm's pinned certificates, read from their files or env."""
    smime = agency.email.smime
    where = f"{agency.source or agency.id}: email.smime"
    signer = load_signer(
        smime.sign_cert.resolve(base_dir),
        smime.sign_key.resolve(base_dir),
        what=f"{where}.sign_cert",
    )
    pinned = (
        []
        if smime.reply_signature == "off"
        else [
            load_certificate(ref.resolve(base_dir), what=f"{where}.reply_certs")
            for ref in smime.reply_cert_refs()
        ]
    )
    timeout = agency.email.imap.timeout_seconds if agency.email.imap is not None else 30.0
    return ReplyOpener(policy=smime.reply_signature, pinned=pinned, signer=signer, timeout=timeout)


def _still_sealed(decrypted: bool) -> str:
    """Why an entity is still enveloped after ``_decrypt``."""
    return "the reply is " + (
        "encrypted twice" if decrypted else "encrypted to a key we do not hold"
    )


def _first_error(stderr: bytes) -> str:
    """The reason in openssl's first error line (``...:error:code:library:function:reason:...``)."""
    for line in stderr.decode("utf-8", "replace").splitlines():
        parts = line.strip().split(":")
        if len(parts) >= 6 and parts[1] == "error":
            return f"{parts[4]}: {parts[5]}"[:200]
    return "openssl refused it"


__all__ = [
    "ACCEPTED",
    "OpenedReply",
    "ReplyOpener",
    "ReplySignature",
    "SignatureStatus",
    "build_reply_opener",
    "fingerprint",
    "openssl_missing",
    "signed_form",
]
