"""The sandbox agency's document checks: a signed letter verifies with pyHanko against the
lender's certificate and with poppler's pdfsig, a tampered or foreign one does not; and the
checker fetches a placement's documents from the gateway served on loopback, checks them,
and sees them refused after recall."""

import io
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from gateway.sandbox.document_check import DocumentChecker, _pdfsig_verdict, verify_letter
from schemas.packets import DocumentDescriptor
from tests.integration.test_documents import Served, _documented_placement, _pack, served, world

__all__ = ["served", "world"]  # fixtures shared with test_documents


def _certificate(tmp: Path, name: str) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
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
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = tmp / f"{name}.key", tmp / f"{name}.crt"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def _signed_pdf(key: Path, cert: Path) -> bytes:
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import signers
    from reportlab.pdfgen.canvas import Canvas

    plain = io.BytesIO()
    canvas = Canvas(plain)
    canvas.drawString(72, 720, "Authorisation letter SQ2026-000001-X")
    canvas.save()
    signer = signers.SimpleSigner.load(str(key), str(cert))  # type: ignore[no-untyped-call]
    assert signer is not None
    out = signers.sign_pdf(
        IncrementalPdfFileWriter(io.BytesIO(plain.getvalue())),
        signers.PdfSignatureMetadata(field_name="Lender"),
        signer=signer,
    )
    signed: bytes = out.getvalue()
    return signed


@pytest.fixture
def lender(tmp_path: Path) -> tuple[bytes, bytes]:
    key, cert = _certificate(tmp_path, "lender")
    return _signed_pdf(key, cert), cert.read_bytes()


def test_a_signed_letter_verifies_against_the_lenders_certificate(
    lender: tuple[bytes, bytes], tmp_path: Path
) -> None:
    pdf, cert = lender
    assert verify_letter(pdf, cert)
    assert verify_letter(pdf, None), "without a certificate the signature is still intact"
    _other_key, other_cert = _certificate(tmp_path, "impostor")
    assert not verify_letter(pdf, other_cert.read_bytes())


def _tampered(pdf: bytes) -> bytes:
    """One byte of the page's (signed) content stream changed."""
    at = pdf.index(b"stream") + 20
    return pdf[:at] + bytes([pdf[at] ^ 0x01]) + pdf[at + 1 :]


def test_a_tampered_letter_does_not_verify(lender: tuple[bytes, bytes]) -> None:
    pdf, cert = lender
    assert not verify_letter(_tampered(pdf), cert)
    assert not verify_letter(b"%PDF-1.7 not signed at all", cert)


@pytest.mark.skipif(shutil.which("pdfsig") is None, reason="poppler-utils is not installed")
def test_pdfsig_agrees(lender: tuple[bytes, bytes]) -> None:
    pdf, _ = lender
    assert _pdfsig_verdict(pdf) is True
    assert _pdfsig_verdict(_tampered(pdf)) is False


async def test_the_checker_fetches_checks_and_is_refused_after_recall(served: Served) -> None:
    world = served.world
    placement_id, agency_id = await _documented_placement(world)
    pack = await _pack(world, placement_id)
    checker = DocumentChecker(
        agency_id=agency_id, signing_keys=[world.keys[agency_id]], clock=world.clock
    )
    checker.set_gateway_url(str(served.client.make_url("/")))
    listed = [
        DocumentDescriptor(
            document_id=d.id,
            kind=d.kind,
            name=d.name,
            media_type=d.media_type,
            size=d.size,
            sha256=d.sha256,
        )
        for d in pack
    ]
    try:
        checker.schedule(placement_id, listed)
        assert await checker.drain(30)
        stats = checker.stats
        assert (stats.listed, stats.fetched, stats.verified) == (len(pack), len(pack), len(pack))
        # The stand-in letter is not a signed PDF: the checker must say so.
        assert (stats.letters_verified, stats.letters_failed) == (0, 1)

        await world.service.recall(world.documented[0], "OPS_RECALL")
        checker.recalled(placement_id)
        assert await checker.drain(30)
        assert (stats.refused_after_recall, stats.served_after_recall) == (1, 0)
    finally:
        await checker.aclose()
