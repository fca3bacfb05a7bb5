"""PAdES signatures on letters (pyHanko): the lender's certificate and key sign each PDF.

``LetterSigner.from_pem`` loads the certificate chain and key once (the composition root
resolves the ``[lender]`` SecretRefs); ``sign`` adds an invisible PAdES B-B signature
(``ETSI.CAdES.detached``, SHA-256, the certificate chain embedded) as an incremental update,
so ``pdfsig``, Adobe Reader, pyHanko and ``openssl cms`` over the ByteRange can verify it.
Synchronous and CPU-bound: callers run it off the event loop.
"""

import dataclasses
import io
import warnings
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from gateway.errors import ConfigError

with warnings.catch_warnings():
    # pyHanko imports cryptography's DSA types for its key-type checks; cryptography 51
    # deprecated DSA. Letters are signed with RSA (gateway.letters.certificates).
    warnings.filterwarnings("ignore", "DSA is deprecated")
    from asn1crypto import cms  # type: ignore[import-untyped]
    from pyhanko.keys import load_certs_from_pemder_data, load_private_key_from_pemder_data
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers
    from pyhanko_certvalidator.registry import SimpleCertificateStore

_HASHES: dict[str, hashes.HashAlgorithm] = {
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}


class _KeyedSigner(signers.SimpleSigner):
    """``SimpleSigner`` that keeps the parsed private key (pyHanko parses it again for every
    signature, and the RSA consistency check on load costs more than everything else), and
    that reuses its CMS structure.

    A letter's PAdES signature container differs from the previous letter's in two places
    only: the message digest (32 bytes) and the RSA signature over the signed attributes
    (always the modulus' length). Building it with asn1crypto costs two thirds of a
    letter's signing, so after pyHanko has built one, the next ones are that one with the
    two values replaced. The shortcut proves itself before it is used: on the second
    signature both ways are computed and must give the same bytes (PKCS#1 v1.5 signatures
    are deterministic); if they ever differ, or the request is not the plain PAdES one
    (a timestamp, a dry run, other attributes, a non-RSA key), pyHanko builds it in full.
    """

    def __init__(self, *, private_key: PrivateKeyTypes, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._private_key = private_key
        self._template: tuple[bytes, bytes, bytes, bytes] | None = None
        """(container DER, its digest, its signature, its signed attributes DER)."""
        self._proven: bool | None = None

    async def async_sign(  # type: ignore[no-untyped-def]
        self,
        data_digest: bytes,
        digest_algorithm: str,
        dry_run=False,
        use_pades=False,
        timestamper=None,
        signed_attr_settings=None,
        is_pdf_sig=True,
        encap_content_info=None,
    ) -> cms.ContentInfo:
        plain = (
            not dry_run
            and use_pades
            and timestamper is None
            and is_pdf_sig
            and encap_content_info is None
            and digest_algorithm == "sha256"
            and isinstance(self._private_key, rsa.RSAPrivateKey)
        )
        if plain and self._proven and self._template is not None:
            return cms.ContentInfo.load(self._from_template(data_digest))
        built: cms.ContentInfo = await super().async_sign(
            data_digest,
            digest_algorithm,
            dry_run=dry_run,
            use_pades=use_pades,
            timestamper=timestamper,
            signed_attr_settings=signed_attr_settings,
            is_pdf_sig=is_pdf_sig,
            encap_content_info=encap_content_info,
        )
        if not plain or self._proven is False:
            return built
        der = built.dump()
        if self._template is not None:
            # The proof: the shortcut must rebuild exactly what pyHanko just built.
            self._proven = self._from_template(data_digest) == der
        info = built["content"]["signer_infos"][0]
        signature = info["signature"].native
        attrs = info["signed_attrs"].untag().dump()
        if der.count(data_digest) == 1 and der.count(signature) == 1:
            self._template = (der, data_digest, signature, attrs)
        else:
            self._proven = False
        return built

    def _from_template(self, digest: bytes) -> bytes:
        assert self._template is not None and isinstance(self._private_key, rsa.RSAPrivateKey)
        der, old_digest, old_signature, attrs = self._template
        if attrs.count(old_digest) != 1:
            return b""
        signature = self._private_key.sign(
            attrs.replace(old_digest, digest), padding.PKCS1v15(), hashes.SHA256()
        )
        return der.replace(old_digest, digest).replace(old_signature, signature)

    def sign_raw(self, data: bytes, digest_algorithm: str) -> bytes:
        algorithm = _HASHES.get(digest_algorithm)
        key = self._private_key
        if algorithm is not None and self.signature_mechanism is None:
            if isinstance(key, rsa.RSAPrivateKey):
                return key.sign(data, padding.PKCS1v15(), algorithm)
            if isinstance(key, ec.EllipticCurvePrivateKey):
                return key.sign(data, ec.ECDSA(algorithm))
        return bytes(super().sign_raw(data, digest_algorithm))


class LetterSigner:
    """Signs letter PDFs with one certificate and key."""

    def __init__(
        self, signer: signers.SimpleSigner, *, signer_name: str, reserve: int = 16_384
    ) -> None:
        self._signer = signer
        self._reserve = reserve
        self._meta = signers.PdfSignatureMetadata(
            field_name="LenderSignature",
            md_algorithm="sha256",
            subfilter=fields.SigSeedSubFilter.PADES,
            reason="授权委托书 / letter of authorisation",
            name=signer_name,
        )
        self.subject = signer_name

    @classmethod
    def from_pem(cls, chain_pem: str, key_pem: str, *, where: str) -> "LetterSigner":
        """The signer of a PEM certificate (chain after it) and PKCS#8 key; ConfigError
        naming ``where`` (the config keys) when either does not parse or they differ."""
        try:
            certs = list(load_certs_from_pemder_data(chain_pem.encode()))
        except Exception as exc:  # asn1crypto raises ValueError and TypeError alike
            raise ConfigError(f"{where}: the certificate does not parse: {exc}") from exc
        if not certs:
            raise ConfigError(f"{where}: no certificate found in the PEM text")
        try:
            key = load_private_key_from_pemder_data(key_pem.encode(), passphrase=None)
            private_key = serialization.load_pem_private_key(key_pem.encode(), password=None)
        except Exception as exc:
            # Never echo the parser's message: it may quote the key's bytes.
            raise ConfigError(
                f"{where}: the private key does not parse ({type(exc).__name__}); it must be "
                "an unencrypted PKCS#8 PEM key"
            ) from None
        leaf = certs[0]
        public = private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if leaf.public_key.dump() != public:
            raise ConfigError(f"{where}: the private key does not belong to the certificate")
        signer = _KeyedSigner(
            private_key=private_key,
            signing_cert=leaf,
            signing_key=key,
            cert_registry=SimpleCertificateStore.from_certs(certs),  # type: ignore[no-untyped-call]
        )
        # Room for the CMS blob: the chain plus generous headroom for the signed attributes
        # and the signature. Reserving it up front spares pyHanko a second, dry-run
        # signature per letter to measure the size.
        # pyHanko counts the reservation in hex digits: two per byte.
        reserve = 2 * (sum(len(cert.dump()) for cert in certs) + 4096)
        return cls(
            signer, signer_name=leaf.subject.native.get("common_name", "lender"), reserve=reserve
        )

    def sign(self, pdf: bytes, *, reason: str | None = None) -> bytes:
        """``pdf`` with the lender's signature appended (an incremental update); ``reason``
        replaces the letter's signing reason (e.g. for a settlement statement)."""
        writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
        out = io.BytesIO()
        meta = self._meta if reason is None else dataclasses.replace(self._meta, reason=reason)
        signers.PdfSigner(meta, signer=self._signer).sign_pdf(
            writer, output=out, bytes_reserved=self._reserve
        )
        return out.getvalue()


__all__ = ["LetterSigner"]
