"""Issuing and revoking authorisation letters, in the caller's transaction.

Theory of operation
-------------------
* ``LetterService.issue_letters`` takes one ``LetterRequest`` per new placement. It reads
  what the letter prints (the case's debtor from its sealed personal data, the contract and
  balance columns; the lender's and the agency's registration from config, refusing with a
  ConfigError that names the file and key when one is missing), numbers the letters, renders
  and signs the PDFs off the event loop (one worker call per batch; a process pool when
  ``workers`` > 1), then writes, per letter, the ``case_documents`` row (the PDF sealed with
  the PII key ring), the ``authorisation_letters`` row and a ``letter`` evidence leaf that
  carries the number, placement, agency, validity and the PDF's SHA-256.
* Numbers (``gateway.letters.numbers``) are ``max(sequence) + 1`` of the prefix and year,
  read under the writer lock the transaction holds to commit: a transaction-scoped advisory
  lock on PostgreSQL, SQLite's ``BEGIN IMMEDIATE`` writer lock. There is no sequence table:
  numbers stay dense and in commit order (a rolled-back allocation leaves no gap, as a
  database sequence would), and the lock is held by allocation's write transaction anyway.
* A placement whose active letter has the requested validity keeps it (issuing is
  idempotent); a renewal (another ``valid_until``) supersedes it with a new letter.
  ``revoke_letters`` (recall, expiry, escalation, holds: every path goes through
  ``PlacementService.recall_in``) marks the active letters ``revoked`` with the reason.
  Each change is a ``letter`` evidence leaf.

States: ``active`` → ``revoked`` | ``superseded`` (final).
"""

import asyncio
import hashlib
import logging
import multiprocessing
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.config.agencies import AgencyConfig
from gateway.config.lender import LenderSection, Registration
from gateway.errors import ConfigError, GatewayError, NotFound
from gateway.evidence.log import LeafInput, append_leaves
from gateway.letters.content import LetterContent, Money, mask_national_id, verify_link
from gateway.letters.maker import LetterMaker, MakerSpec, init_worker, make_in_worker
from gateway.letters.numbers import format_number, sequence_of, series_of
from gateway.privacy.pii import PiiKeyRing
from gateway.store.document_tables import AuthorisationLetter, CaseDocument
from gateway.store.tables import Case

log = logging.getLogger(__name__)

CASES = Case.__table__  # type: ignore[attr-defined]
DOCUMENTS = CaseDocument.__table__  # type: ignore[attr-defined]
LETTERS = AuthorisationLetter.__table__  # type: ignore[attr-defined]
C, D, L = CASES.c, DOCUMENTS.c, LETTERS.c

LETTER_LOCK_KEY = 0x4C45_5454_4552_0001
"""PostgreSQL advisory lock that serialises letter numbering (held to commit)."""
KIND = "authorisation_letter"
MEDIA_TYPE = "application/pdf"
ACTIVE, REVOKED, SUPERSEDED = "active", "revoked", "superseded"
RENEWED = "RENEWED"
_CHUNK = 500
_POOL_MIN = 32
"""Batches smaller than this are made in one thread: a process round trip costs more."""


class PlacementTerms(Protocol):
    """What a letter is asked for: the placement, its case and agency, and its validity
    (``LetterRequest``, or gateway.documents' ``PackRequest``)."""

    @property
    def placement_id(self) -> str: ...
    @property
    def case_id(self) -> str: ...
    @property
    def agency_id(self) -> str: ...
    @property
    def valid_from(self) -> date: ...
    @property
    def valid_until(self) -> date: ...


@dataclass(frozen=True, slots=True)
class LetterRequest:
    """A letter to issue for one new placement; validity is the placement's dates."""

    placement_id: str
    case_id: str
    agency_id: str
    valid_from: date
    valid_until: date


@dataclass(frozen=True, slots=True)
class IssuedLetter:
    """A signed letter as stored: its number and its ``case_documents`` row."""

    letter_no: str
    document_id: int
    sha256: str
    size: int
    name: str
    valid_from: date
    valid_until: date
    placement_id: str
    agency_id: str


@dataclass(frozen=True, slots=True)
class LetterRow:
    """A letter as the console lists it."""

    letter_no: str
    placement_id: str
    agency_id: str
    valid_from: date
    valid_until: date
    status: str
    issued_at: datetime
    revoked_at: datetime | None
    revoke_reason: str | None
    document_id: int


def document_binding(case_id: str, sha256: str) -> str:
    """What a generated document's sealed content is bound to (``PiiKeyRing.seal``)."""
    return f"document:{case_id}:{sha256}"


def letter_file_name(letter_no: str) -> str:
    """The file name agencies receive (ASCII: SFTP, mail and Windows all keep it)."""
    return f"authorisation-{letter_no}.pdf"


class LetterService:
    """Issues, renews and revokes the lender's signed authorisation letters.

    Args:
        lender: ``[lender]`` (registration, signing certificate and key, prefix, URL).
        agencies: agency configs by id (their ``registration`` is printed).
        pii: the key ring that opens the debtor's details and seals the PDFs.
        base_dir: where relative key files resolve.
        config_file: the settings file, named in configuration errors.
        zone: the lender's time zone (the letter's issue date and number year).
        workers: processes to render and sign large batches with (1: one thread).
    """

    def __init__(
        self,
        *,
        lender: LenderSection,
        agencies: Mapping[str, AgencyConfig],
        pii: PiiKeyRing,
        base_dir: Path,
        config_file: str = "gateway.toml",
        zone: ZoneInfo | None = None,
        workers: int = 1,
    ) -> None:
        self._lender = lender
        self._agencies = agencies
        self._pii = pii
        self._base_dir = base_dir
        self._config_file = config_file
        self._zone = zone or ZoneInfo("Asia/Shanghai")
        self._workers = workers
        self._maker: LetterMaker | None = None
        self._spec: MakerSpec | None = None
        self._pool: ProcessPoolExecutor | None = None

    # -- configuration --------------------------------------------------------------------

    def problems(self, agency_ids: Iterable[str] = ()) -> list[str]:
        """What stops letters being issued (to these agencies): empty when ready. Parses the
        certificate and key and loads the font, so a bad file is named here, not mid-round."""
        found: list[str] = []
        try:
            self._lender_registration()
            self.maker()
        except ConfigError as exc:
            found.extend(exc.problems)
        for agency_id in agency_ids:
            try:
                self._agency_registration(agency_id)
            except ConfigError as exc:
                found.extend(exc.problems)
        return found

    def _lender_registration(self) -> Registration:
        registration = self._lender.registration
        if registration is None:
            raise ConfigError(
                f"{self._config_file}: [lender] registration: missing; authorisation letters "
                "print the lender's legal name, credit code, address and phone (README "
                "'Authorisation letters')"
            )
        return registration

    def _agency_registration(self, agency_id: str) -> Registration:
        agency = self._agencies.get(agency_id)
        if agency is None:
            raise ConfigError(f"agency {agency_id} is not configured; it cannot get a letter")
        if agency.registration is None:
            raise ConfigError(
                f"{agency.source or agency_id}: registration: missing; agency {agency_id} "
                "needs its legal name, credit code, address and phone before it can be sent "
                "a placement with an authorisation letter"
            )
        return agency.registration

    def spec(self) -> MakerSpec:
        """The font and signing material, resolved once (ConfigError naming the key)."""
        if self._spec is None:
            from gateway.letters.render import find_font

            lender = self._lender
            where = f"{self._config_file}: [lender] signing_certificate/signing_key"
            try:
                chain = lender.signing_certificate.resolve(self._base_dir)
            except ConfigError as exc:
                raise ConfigError(
                    f"{self._config_file}: [lender] signing_certificate "
                    f"({lender.signing_certificate.describe()}): {exc}"
                ) from None
            try:
                key = lender.signing_key.resolve(self._base_dir)
            except ConfigError as exc:
                raise ConfigError(
                    f"{self._config_file}: [lender] signing_key "
                    f"({lender.signing_key.describe()}): {exc}"
                ) from None
            self._spec = MakerSpec(
                font=str(find_font(lender.letter_font)), chain_pem=chain, key_pem=key, where=where
            )
        return self._spec

    def maker(self) -> LetterMaker:
        """The renderer and signer of this process (built on first use)."""
        if self._maker is None:
            self._maker = LetterMaker.build(self.spec())
        return self._maker

    def close(self) -> None:
        """Stop the worker processes, if any were started."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    # -- issuing --------------------------------------------------------------------------

    async def issue_letters(
        self, conn: AsyncConnection, requests: Sequence[PlacementTerms], *, now: datetime
    ) -> dict[str, IssuedLetter]:
        """Issue a signed letter per request in the caller's transaction; placement id →
        letter. A placement whose active letter already has the requested validity gets
        that one back (issuing is idempotent); one whose active letter has another validity
        (a renewal) gets a new letter and the old one is superseded. ConfigError, with
        nothing written, when the lender's or an agency's registration or the signing
        certificate is missing."""
        if not requests:
            return {}
        lender = self._lender_registration()
        agencies = {r.agency_id: self._agency_registration(r.agency_id) for r in requests}
        self.spec()
        unique = list({r.placement_id: r for r in requests}.values())
        active = await self._existing(conn, [r.placement_id for r in unique])
        result: dict[str, IssuedLetter] = {}
        todo: list[PlacementTerms] = []
        replaced: list[str] = []
        for r in unique:
            current = active.get(r.placement_id)
            if current is not None and current.valid_until == r.valid_until:
                result[r.placement_id] = current
                continue
            if current is not None:
                replaced.append(current.letter_no)
            todo.append(r)
        if not todo:
            return result
        cases = await self._cases(conn, [r.case_id for r in todo])
        local = now.astimezone(self._zone)
        numbers = await self._numbers(conn, local.year, len(todo))
        contents = [
            self._content(r, number, cases, lender, agencies[r.agency_id], local.date())
            for r, number in zip(todo, numbers, strict=True)
        ]
        pdfs = await self._make(contents)
        await _end(conn, replaced, SUPERSEDED, RENEWED, now=now)
        result.update(await self._store(conn, todo, contents, pdfs, now=now))
        log.info("issued %d authorisation letters (%s..%s)", len(todo), numbers[0], numbers[-1])
        return result

    issue = issue_letters
    """The name gateway.documents' ``LetterIssuer`` port calls it by."""

    async def revoke_letters(
        self,
        conn: AsyncConnection,
        placement_ids: Sequence[str],
        *,
        reason: str,
        now: datetime,
    ) -> list[str]:
        """``revoke_letters`` (the module function) as a method of the service."""
        return await revoke_letters(conn, placement_ids, reason=reason, now=now)

    revoke = revoke_letters
    """The name gateway.documents' ``LetterIssuer`` port calls it by."""

    async def _existing(
        self, conn: AsyncConnection, placement_ids: Sequence[str]
    ) -> dict[str, IssuedLetter]:
        found: dict[str, IssuedLetter] = {}
        for start in range(0, len(placement_ids), _CHUNK):
            rows = await conn.execute(
                sa.select(
                    L.letter_no,
                    L.document_id,
                    D.sha256,
                    D.size,
                    D.name,
                    L.valid_from,
                    L.valid_until,
                    L.placement_id,
                    L.agency_id,
                )
                .join(DOCUMENTS, D.id == L.document_id)
                .where(
                    L.placement_id.in_(placement_ids[start : start + _CHUNK]), L.status == ACTIVE
                )
            )
            for row in rows:
                found[row.placement_id] = IssuedLetter(*row)
        return found

    async def _cases(
        self, conn: AsyncConnection, case_ids: Sequence[str]
    ) -> dict[str, dict[str, object]]:
        ids = list(dict.fromkeys(case_ids))
        found: dict[str, dict[str, object]] = {}
        for start in range(0, len(ids), _CHUNK):
            rows = await conn.execute(sa.select(CASES).where(C.id.in_(ids[start : start + _CHUNK])))
            found.update({str(row["id"]): dict(row) for row in rows.mappings()})
        missing = [case_id for case_id in ids if case_id not in found]
        if missing:
            raise NotFound(f"case {missing[0]} does not exist; no letter can name it")
        return found

    async def _numbers(self, conn: AsyncConnection, year: int, count: int) -> list[str]:
        prefix = self._lender.letter_prefix
        if conn.dialect.name == "postgresql":
            await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(LETTER_LOCK_KEY)))
        series = series_of(prefix, year)
        last = (
            await conn.execute(
                sa.select(sa.func.max(L.letter_no)).where(L.letter_no.like(f"{series}%"))
            )
        ).scalar_one_or_none()
        start = sequence_of(last) + 1 if last else 1
        try:
            return [format_number(prefix, year, seq) for seq in range(start, start + count)]
        except ValueError as exc:
            raise GatewayError(
                f"letter numbers of {series} are used up: {exc}; change [lender] letter_prefix"
            ) from exc

    def _content(
        self,
        request: PlacementTerms,
        letter_no: str,
        cases: Mapping[str, Mapping[str, object]],
        lender: Registration,
        agency: Registration,
        today: date,
    ) -> LetterContent:
        case = cases[request.case_id]
        blob = case["pii"]
        assert isinstance(blob, bytes)
        person = self._pii.decrypt(blob, bound_to=request.case_id)
        currency = str(case["currency"])

        def money(column: str) -> Money | None:
            value = case.get(column)
            return Money(int(value), currency) if isinstance(value, int) else None

        balance = money("balance_minor")
        assert balance is not None
        contract = case.get("contract_no")
        return LetterContent(
            letter_no=letter_no,
            issued_on=today,
            valid_from=request.valid_from,
            valid_until=request.valid_until,
            lender=lender,
            agency=agency,
            account=self._lender.repayment_account,
            case_id=request.case_id,
            placement_id=request.placement_id,
            debtor_name=str(person.get("name") or ""),
            debtor_id_masked=mask_national_id(str(person.get("national_id") or "")),
            contract_no=str(contract) if contract else None,
            balance=balance,
            principal_due=money("principal_due_minor"),
            interest=money("interest_minor"),
            penalty=money("penalty_minor"),
            fees=money("fees_minor"),
            verify_link=verify_link(self._lender.verify_url, letter_no),
            english=self._lender.letter_english,
        )

    async def _make(self, contents: Sequence[LetterContent]) -> list[bytes]:
        """Render and sign off the event loop: one thread for a small batch, otherwise
        the batch split across ``workers`` processes."""
        if self._workers <= 1 or len(contents) < _POOL_MIN:
            maker = self.maker()
            return await asyncio.to_thread(maker.make_all, contents)
        if self._pool is None:
            # spawn, not fork: this process runs an event loop and database driver threads,
            # and a forked child could inherit a lock one of them held.
            self._pool = ProcessPoolExecutor(
                max_workers=self._workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=init_worker,
                initargs=(self.spec(),),
            )
        loop = asyncio.get_running_loop()
        size = -(-len(contents) // self._workers)
        parts = [list(contents[i : i + size]) for i in range(0, len(contents), size)]
        done = await asyncio.gather(
            *(loop.run_in_executor(self._pool, make_in_worker, part) for part in parts)
        )
        return [pdf for part in done for pdf in part]

    async def _store(
        self,
        conn: AsyncConnection,
        requests: Sequence[PlacementTerms],
        contents: Sequence[LetterContent],
        pdfs: Sequence[bytes],
        *,
        now: datetime,
    ) -> dict[str, IssuedLetter]:
        docs = []
        for request, content, pdf in zip(requests, contents, pdfs, strict=True):
            digest = hashlib.sha256(pdf).hexdigest()
            docs.append(
                {
                    "case_id": request.case_id,
                    "placement_id": request.placement_id,
                    "kind": KIND,
                    "name": letter_file_name(content.letter_no),
                    "media_type": MEDIA_TYPE,
                    "size": len(pdf),
                    "sha256": digest,
                    "content": self._pii.seal(
                        pdf, bound_to=document_binding(request.case_id, digest)
                    ),
                    "source": None,
                    "reference": content.letter_no,
                    "created_at": now,
                }
            )
        ids = list(
            (
                await conn.execute(
                    DOCUMENTS.insert().returning(D.id, sort_by_parameter_order=True), docs
                )
            ).scalars()
        )
        letters = []
        leaves = []
        issued: dict[str, IssuedLetter] = {}
        for request, content, doc, doc_id in zip(requests, contents, docs, ids, strict=True):
            letters.append(
                {
                    "letter_no": content.letter_no,
                    "placement_id": request.placement_id,
                    "case_id": request.case_id,
                    "agency_id": request.agency_id,
                    "valid_from": request.valid_from,
                    "valid_until": request.valid_until,
                    "status": ACTIVE,
                    "document_id": doc_id,
                    "issued_at": now,
                }
            )
            leaves.append(
                LeafInput(
                    kind="letter",
                    ref=f"letter:{content.letter_no}",
                    fields={
                        "event": "issued",
                        "placement_id": request.placement_id,
                        "case_id": request.case_id,
                        "agency_id": request.agency_id,
                        "valid_from": request.valid_from.isoformat(),
                        "valid_until": request.valid_until.isoformat(),
                        "document_id": doc_id,
                        "sha256": doc["sha256"],
                        "size": doc["size"],
                    },
                )
            )
            issued[request.placement_id] = IssuedLetter(
                letter_no=content.letter_no,
                document_id=int(doc_id),
                sha256=str(doc["sha256"]),
                size=int(str(doc["size"])),
                name=str(doc["name"]),
                valid_from=request.valid_from,
                valid_until=request.valid_until,
                placement_id=request.placement_id,
                agency_id=request.agency_id,
            )
        await conn.execute(LETTERS.insert(), letters)
        await append_leaves(conn, leaves, now=now)
        return issued


async def revoke_letters(
    conn: AsyncConnection,
    placement_ids: Sequence[str],
    *,
    reason: str,
    now: datetime,
) -> list[str]:
    """Revoke the active letters of these placements (recalled, expired, escalated...) in
    the caller's transaction, each with a ``letter`` evidence leaf; the letter numbers.
    Placements without an active letter are skipped."""
    numbers: list[str] = []
    ids = list(dict.fromkeys(placement_ids))
    for start in range(0, len(ids), _CHUNK):
        numbers += [
            str(n)
            for n in (
                await conn.execute(
                    sa.select(L.letter_no)
                    .where(L.placement_id.in_(ids[start : start + _CHUNK]), L.status == ACTIVE)
                    .order_by(L.letter_no)
                )
            ).scalars()
        ]
    await _end(conn, numbers, REVOKED, reason, now=now)
    return numbers


async def _end(
    conn: AsyncConnection, numbers: Sequence[str], status: str, reason: str, *, now: datetime
) -> None:
    if not numbers:
        return
    rows = (
        await conn.execute(
            sa.select(L.letter_no, L.placement_id, L.case_id, L.agency_id).where(
                L.letter_no.in_(list(numbers))
            )
        )
    ).all()
    await conn.execute(
        LETTERS.update()
        .where(L.letter_no.in_(list(numbers)), L.status == ACTIVE)
        .values(status=status, revoked_at=now, revoke_reason=reason[:32])
    )
    await append_leaves(
        conn,
        [
            LeafInput(
                kind="letter",
                ref=f"letter:{letter_no}",
                fields={
                    "event": status,
                    "placement_id": placement_id,
                    "case_id": case_id,
                    "agency_id": agency_id,
                    "reason": reason,
                },
            )
            for letter_no, placement_id, case_id, agency_id in rows
        ],
        now=now,
    )


async def letters_of_case(conn: AsyncConnection, case_id: str) -> list[LetterRow]:
    """The case's letters, newest first (the console's case page)."""
    rows = await conn.execute(
        sa.select(
            L.letter_no,
            L.placement_id,
            L.agency_id,
            L.valid_from,
            L.valid_until,
            L.status,
            L.issued_at,
            L.revoked_at,
            L.revoke_reason,
            L.document_id,
        )
        .where(L.case_id == case_id)
        .order_by(L.issued_at.desc(), L.letter_no.desc())
    )
    return [LetterRow(**row) for row in rows.mappings()]


async def letter_pdf(
    conn: AsyncConnection, pii: PiiKeyRing, case_id: str, letter_no: str
) -> tuple[str, bytes]:
    """(file name, signed PDF bytes) of one of the case's letters; NotFound otherwise.
    The bytes are checked against the SHA-256 recorded when the letter was issued."""
    row = (
        await conn.execute(
            sa.select(D.name, D.sha256, D.content)
            .join(LETTERS, L.document_id == D.id)
            .where(L.letter_no == letter_no, L.case_id == case_id)
        )
    ).first()
    if row is None or row.content is None:
        raise NotFound(f"case {case_id} has no letter {letter_no}")
    pdf = pii.unseal(row.content, bound_to=document_binding(case_id, row.sha256))
    if hashlib.sha256(pdf).hexdigest() != row.sha256:
        raise GatewayError(f"letter {letter_no} does not match the SHA-256 it was issued with")
    return str(row.name), pdf


__all__ = [
    "ACTIVE",
    "KIND",
    "REVOKED",
    "SUPERSEDED",
    "IssuedLetter",
    "LetterRequest",
    "LetterRow",
    "LetterService",
    "document_binding",
    "letter_file_name",
    "letter_pdf",
    "letters_of_case",
    "revoke_letters",
]
