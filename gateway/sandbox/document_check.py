"""The sandbox agency's document checks: fetch every document a packet lists, check it, and
verify the authorisation letter's signature, as a real agency would.

Theory of operation
-------------------
A ``placement.created`` (or a renewal's ``placement.amended``) lists the placement's
documents with their size and SHA-256. ``DocumentChecker.schedule`` fetches each one from
the gateway's ``POST /v1/agencies/{agency_id}/documents``, signed with the agency's own keys
like its events, and checks the bytes against the descriptor. The authorisation letter is a
signed PDF: ``verify_letter`` checks its signature with pyHanko against the lender's
certificate (or, without one, that the signature is intact), falling back to poppler's
``pdfsig`` when pyHanko cannot read it. After a ``placement.recalled`` the checker asks for
one document of that placement again and counts the gateway's 410 as proof that documents
are unreachable after recall.

The counts are in ``DocumentStats`` (the demo's report shows them). Fetches run as tasks
beside the packet handling, so answering the gateway's packet never waits for them.
"""

import asyncio
import dataclasses
import hashlib
import io
import json
import logging
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from gateway.config.secrets import SecretRef
from gateway.errors import ConfigError
from gateway.letters.certificates import ca_path_for
from gateway.ports import Clock
from gateway.signing import SigningKey, sign
from schemas.packets import DocumentDescriptor

log = logging.getLogger(__name__)


@dataclass(slots=True)
class DocumentStats:
    """What the agency fetched and what verified."""

    listed: int = 0
    fetched: int = 0
    verified: int = 0
    """Fetched documents whose size and SHA-256 match their descriptor."""
    failed: int = 0
    """Fetches answered with anything but 200 (or not at all), or bytes that did not match."""
    gone_before_fetch: int = 0
    """Documents of a placement recalled before the agency got to them (410, as it must)."""
    letters_verified: int = 0
    letters_failed: int = 0
    refused_after_recall: int = 0
    """Fetches after a recall that the gateway refused with 410, as it must."""
    served_after_recall: int = 0

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def _pyhanko_verdict(pdf: bytes, trust_pem: bytes | None) -> bool:
    from pyhanko.keys import load_cert_from_pemder
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    reader = PdfFileReader(io.BytesIO(pdf))
    signatures = reader.embedded_signatures
    if not signatures:
        return False
    if trust_pem is None:
        # Nothing to trust: check the signature against the certificate it carries (the
        # bytes are intact and signed by that key), not who issued the certificate.
        root = signatures[0].signer_cert
    else:
        with tempfile.NamedTemporaryFile(suffix=".pem") as fh:
            fh.write(trust_pem)
            fh.flush()
            root = load_cert_from_pemder(fh.name)  # type: ignore[no-untyped-call]
    status = validate_pdf_signature(signatures[0], ValidationContext(trust_roots=[root]))
    return bool(status.bottom_line)


def _pdfsig_verdict(pdf: bytes) -> bool | None:
    tool = shutil.which("pdfsig")
    if tool is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "letter.pdf"
        path.write_bytes(pdf)
        done = subprocess.run(
            [tool, str(path)], capture_output=True, text=True, timeout=30, check=False
        )
    return "Signature is Valid." in done.stdout


def lender_certificate(ref: SecretRef, base_dir: Path) -> bytes | None:
    """What the lender gives agencies to verify letters against (PEM): the CA beside its
    signing certificate when there is one (``keys generate`` makes a demo CA), else the
    signing certificate itself; None when the lender has none (letters are then only
    checked to be intact)."""
    if ref.file is not None:
        path = Path(ref.file) if Path(ref.file).is_absolute() else base_dir / ref.file
        ca = ca_path_for(path)
        if ca.is_file():
            return ca.read_bytes()
    try:
        return ref.resolve(base_dir).encode()
    except ConfigError:
        return None


def verify_letter(pdf: bytes, trust_pem: bytes | None) -> bool:
    """Whether the letter's PDF signature verifies (blocking: run in a thread): pyHanko
    against ``trust_pem`` (the lender's certificate), else pdfsig's "Signature is Valid."."""
    try:
        return _pyhanko_verdict(pdf, trust_pem)
    except ImportError:
        pass
    except Exception as exc:  # a PDF pyHanko cannot read: let the independent tool decide
        log.info("pyHanko could not validate the letter (%s); trying pdfsig", exc)
    return bool(_pdfsig_verdict(pdf))


class DocumentChecker:
    """Fetches and checks the documents of one sandbox agency (see the module docstring)."""

    def __init__(
        self,
        *,
        agency_id: str,
        signing_keys: Sequence[SigningKey],
        clock: Clock,
        letter_trust: bytes | None = None,
        request_timeout: float = 30.0,
    ) -> None:
        self.agency_id = agency_id
        self.stats = DocumentStats()
        self._keys = tuple(signing_keys)
        self._clock = clock
        self._trust = letter_trust
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._gateway_url: str | None = None
        self._url_known = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._first_document: dict[str, int] = {}

    def set_gateway_url(self, url: str) -> None:
        self._gateway_url = url.rstrip("/")
        self._url_known.set()

    def schedule(self, placement_id: str, documents: Sequence[DocumentDescriptor]) -> None:
        """Fetch and check ``documents`` of the placement, in the background."""
        if not documents:
            return
        self.stats.listed += len(documents)
        self._first_document[placement_id] = documents[0].document_id
        self._spawn(self._check_all(placement_id, tuple(documents)))

    def recalled(self, placement_id: str) -> None:
        """The placement was recalled: its documents must now be refused (410)."""
        document_id = self._first_document.get(placement_id)
        if document_id is not None:
            self._spawn(self._expect_gone(placement_id, document_id))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout: float) -> bool:  # noqa: ASYNC109 (the demo's contract)
        """Wait for the fetches in flight; False on timeout."""
        if not self._tasks:
            return True
        _done, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        return not pending

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks))
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _post(self, placement_id: str, document_id: int) -> tuple[int, bytes]:
        await self._url_known.wait()
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        body = json.dumps({"placement_id": placement_id, "document_id": document_id}).encode()
        msg_id = "doc_" + uuid.uuid4().hex
        stamp = int(self._clock.now())
        headers = {
            "Content-Type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": sign(msg_id, stamp, body, self._keys),
        }
        url = f"{self._gateway_url}/v1/agencies/{self.agency_id}/documents"
        async with self._session.post(url, data=body, headers=headers) as response:
            return response.status, await response.read()

    async def _check_all(self, placement_id: str, documents: Sequence[DocumentDescriptor]) -> None:
        for doc in documents:
            try:
                status, data = await self._post(placement_id, doc.document_id)
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning(
                    "%s: fetching document %s failed: %s", self.agency_id, doc.document_id, exc
                )
                self.stats.failed += 1
                continue
            if status == 410:
                self.stats.gone_before_fetch += 1
                continue
            if status != 200:
                log.warning(
                    "%s: fetching document %s answered %s", self.agency_id, doc.document_id, status
                )
                self.stats.failed += 1
                continue
            self.stats.fetched += 1
            if len(data) != doc.size or hashlib.sha256(data).hexdigest() != doc.sha256:
                self.stats.failed += 1
                continue
            self.stats.verified += 1
            if doc.kind == "authorisation_letter":
                if await asyncio.to_thread(verify_letter, data, self._trust):
                    self.stats.letters_verified += 1
                else:
                    self.stats.letters_failed += 1

    async def _expect_gone(self, placement_id: str, document_id: int) -> None:
        try:
            status, _ = await self._post(placement_id, document_id)
        except (aiohttp.ClientError, TimeoutError):
            return
        if status == 410:
            self.stats.refused_after_recall += 1
        elif status == 200:
            self.stats.served_after_recall += 1


__all__ = ["DocumentChecker", "DocumentStats", "lender_certificate", "verify_letter"]
