"""A gateway whose lender issues authorisation letters: the case world's config plus a
``[lender]`` section (registration, repayment account, demo signing certificate made by
``keys generate``) and a registered agency; and the independent tools the tests verify
letters with (poppler's ``pdfsig`` and ``pdftotext``, ``openssl cms``)."""

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from gateway.bootstrap import build, load_config
from gateway.clock import ManualClock
from gateway.keys import generate_missing
from gateway.letters.certificates import ca_path_for
from gateway.store.migrate import upgrade
from tests.case_world import AGENCY, START, CaseWorld

LENDER_NAME = "示例消费金融有限公司"
AGENCY_NAME = "北京示例资产管理有限公司"

LENDER_TOML = f"""
[lender]
verify_url = "https://verify.lender.test/verify"
letter_prefix = "SQ"
letter_english = true

[lender.registration]
legal_name = "{LENDER_NAME}"
legal_name_en = "Example Consumer Finance Co., Ltd."
credit_code = "91110000MA01ABCD2X"
address = "北京市朝阳区建国路1号"
phone = "400-000-0000"

[lender.repayment_account]
bank = "招商银行北京分行"
account_name = "{LENDER_NAME}"
account_no = "1109 0000 1234 5678"
"""

AGENCY_TOML = f"""
[registration]
legal_name = "{AGENCY_NAME}"
credit_code = "91110105MA02XYW12K"
address = "北京市海淀区中关村大街2号"
phone = "010-12345678"
"""


async def build_letter_world(
    make_config: Any,
    tmp_path: Path,
    database_url: str,
    *,
    lender: bool = True,
    agency_registration: bool = True,
    required: bool = False,
) -> CaseWorld:
    """The case world (one webhook agency) with letters configured (``required``: issued by
    every allocation, else only when a test asks); the caller closes ``world.gateway``."""
    config, _settings, agencies = make_config(
        database_url=database_url,
        agencies={AGENCY: {"scheme": "v1", "url": "http://127.0.0.1:9/hooks"}},
    )
    # make_config already writes [documents] letters = "off" (tests/conftest.py).
    if lender:
        _append(config, LENDER_TOML)
    if required:  # every placement gets its letter through the allocation commit
        _replace(config, 'letters = "off"', 'letters = "required"')
    if agency_registration:
        _append(Path(agencies[AGENCY].source), AGENCY_TOML)
    settings, agencies = load_config(config, base_dir=config.parent)
    # make_config ran `keys generate` before the lender had a name: make its certificate
    # again, as an operator does after filling in [lender].
    cert, key = settings.lender.signing_certificate.file, settings.lender.signing_key.file
    assert cert is not None and key is not None
    for path in (config.parent / cert, config.parent / key, ca_path_for(config.parent / cert)):
        path.unlink(missing_ok=True)
    generate_missing(settings, agencies)
    clock = ManualClock(START.timestamp())
    gateway = build(settings, agencies, clock=clock)
    await upgrade(gateway.db)
    await gateway.inbound.start()
    return CaseWorld(gateway, clock, tmp_path)


def _append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write(text)


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} is not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def lender_ca(world: CaseWorld) -> Path:
    """The demo CA certificate ``keys generate`` wrote beside the signing certificate."""
    ref = world.gateway.settings.lender.signing_certificate
    assert ref.file is not None
    return ca_path_for(world.gateway.settings.base_dir / ref.file)


def have_tools() -> str | None:
    """Why the independent verifiers cannot run here, or None when they can."""
    missing = [t for t in ("pdfsig", "pdftotext", "openssl") if shutil.which(t) is None]
    return f"not installed: {', '.join(missing)} (poppler-utils, openssl)" if missing else None


def pdfsig(path: Path) -> str:
    return subprocess.run(
        ["pdfsig", str(path)], capture_output=True, text=True, check=False, timeout=60
    ).stdout


def pdftotext(path: Path) -> str:
    return subprocess.run(
        ["pdftotext", "-enc", "UTF-8", str(path), "-"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


def openssl_verify_certificate(chain: Path, ca: Path, work: Path) -> tuple[str, str]:
    """``openssl verify`` of the first certificate in ``chain`` against ``ca`` alone, and
    its subject: ("OK" or the error, the subject line)."""
    leaf = work / "leaf.pem"
    end = "-----END CERTIFICATE-----"
    leaf.write_text(chain.read_text(encoding="utf-8").split(end)[0] + end + "\n", encoding="utf-8")
    checked = subprocess.run(
        ["openssl", "verify", "-CAfile", str(ca), str(leaf)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    subject = subprocess.run(
        ["openssl", "x509", "-noout", "-subject", "-nameopt", "utf8", "-in", str(leaf)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return ("OK" if checked.returncode == 0 else checked.stderr), subject


def signed_parts(pdf: bytes) -> tuple[bytes, bytes]:
    """(the bytes the signature covers, the CMS signature in DER), read from the PDF's
    ``/ByteRange`` and ``/Contents`` as any verifier does."""
    match = re.search(rb"/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\]", pdf)
    assert match is not None, "no /ByteRange in the PDF"
    a, b, c, d = (int(x) for x in match.groups())
    covered = pdf[a : a + b] + pdf[c : c + d]
    hole = pdf[a + b : c].strip()
    assert hole.startswith(b"<") and hole.endswith(b">"), "the ByteRange gap is not /Contents"
    der = bytes.fromhex(hole[1:-1].decode())
    # /Contents is padded with zeros: keep the one DER object at its start.
    assert der[0] == 0x30 and der[1] & 0x80
    width = der[1] & 0x7F
    length = int.from_bytes(der[2 : 2 + width], "big")
    return covered, der[: 2 + width + length]


def openssl_verify(pdf: bytes, ca: Path, work: Path) -> subprocess.CompletedProcess[str]:
    """``openssl cms -verify`` of the letter's signature over its ByteRange, the lender's
    CA as the only trust anchor."""
    covered, der = signed_parts(pdf)
    (work / "covered.bin").write_bytes(covered)
    (work / "signature.der").write_bytes(der)
    return subprocess.run(
        [
            "openssl",
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-in",
            str(work / "signature.der"),
            "-content",
            str(work / "covered.bin"),
            "-CAfile",
            str(ca),
            "-purpose",
            "any",
            "-out",
            "/dev/null",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


__all__ = [
    "AGENCY_NAME",
    "LENDER_NAME",
    "build_letter_world",
    "have_tools",
    "lender_ca",
    "openssl_verify",
    "openssl_verify_certificate",
    "pdfsig",
    "pdftotext",
    "signed_parts",
]
