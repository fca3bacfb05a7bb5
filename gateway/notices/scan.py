"""The notice scan: find placements whose borrower has not been told, and queue the notice.

Theory of operation
-------------------
A notice is due when the store says so, not when some code path remembers to send it:

* **start** (``placed``, or ``moved`` when the case was with another agency before): an open
  placement with an ``active`` authorisation letter and no start notice. The notice waits for
  the letter (it quotes the letter's number and how to verify it).
* **end** (``recalled``): a recalled placement whose borrower was told of its start, with no
  end notice and no later placement of the case (the later placement's ``moved`` notice says
  it ended).

Each notice is queued in ONE transaction with its outbox item (recipient ``lender.notices``,
dedupe key per placement and phase, so two processes scanning at once queue it once), the
item's ``packet`` evidence leaf and its ``borrower_notices`` row. The dispatcher delivers it
like any packet (retries, receipts, receipt leaves); ``gateway.notices.hooks`` marks the row
``delivered``, or ``failed`` once the item is given up. Crash-safe and idempotent: a scan
interrupted before its commit queued nothing, and the next finds the same placements.
"""

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.config.agencies import AgencyConfig
from gateway.config.lender import LenderSection, Registration
from gateway.config.notices import NoticesSection
from gateway.dispatch import outbox
from gateway.dispatch.queue import packet_leaf
from gateway.errors import ConfigError
from gateway.evidence.log import append_leaves
from gateway.lifecycle import OPEN_PLACEMENT_STATES
from gateway.notices.content import (
    DEBT_DETAILS,
    NOTICE_SENDER,
    NoticeFacts,
    NoticeTemplates,
    render_notice,
)
from gateway.privacy.deletion import categories as shared_categories
from gateway.store.database import dialect_insert
from gateway.store.document_tables import AuthorisationLetter
from gateway.store.notice_tables import BorrowerNotice
from gateway.store.tables import Case, Placement
from schemas.notices import NoticeAgency, NoticeKind, NoticeLetter

log = logging.getLogger(__name__)

NOTICES = BorrowerNotice.__table__  # type: ignore[attr-defined]
N = NOTICES.c
LETTERS = AuthorisationLetter.__table__  # type: ignore[attr-defined]
L = LETTERS.c
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
P = PLACEMENTS.c
CASES = Case.__table__  # type: ignore[attr-defined]
C = CASES.c
START_KINDS = ("placed", "moved")
SCAN_LIMIT = 500
"""Placements looked at per phase and scan; the schedule (or the demo's loop) runs again."""


@dataclass(slots=True)
class ScanResult:
    """What one scan queued, and what it had to leave (each left placement is logged)."""

    queued: dict[str, int] = field(default_factory=dict)
    unregistered: int = 0
    """Placements whose agency has no ``registration`` in its config (or no config)."""
    invalid: int = 0
    """Placements whose notice would not be a valid wire notice."""

    def total(self) -> int:
        return sum(self.queued.values())

    def as_dict(self) -> dict[str, object]:
        return {
            "queued": dict(sorted(self.queued.items())),
            "total": self.total(),
            "unregistered": self.unregistered,
            "invalid": self.invalid,
        }


def _agency(config: AgencyConfig | None) -> NoticeAgency | None:
    registration = config.registration if config is not None else None
    if config is None or registration is None:
        return None
    return NoticeAgency(
        agency_id=config.id,
        legal_name=registration.legal_name,
        legal_name_en=registration.legal_name_en,
        phone=registration.phone,
    )


def verify_link(verify_url: str, letter_no: str) -> str:
    """The link printed on letters and notices (and in the letter's QR code)."""
    return f"{verify_url}?letter={letter_no}"


class NoticeScanner:
    """Queues the notices that are due (see the module docstring).

    Args:
        agencies: agency configs (their ``registration`` and ``fields``).
        lender: ``[lender]`` (registration, verify URL).
        settings: ``[notices]``.
        templates: the notice templates.
        lender_id: ``[gateway] lender_id``.
        zone: the lender's time zone (the date a placement ended).
    """

    def __init__(
        self,
        *,
        agencies: Mapping[str, AgencyConfig],
        lender: LenderSection,
        settings: NoticesSection,
        templates: NoticeTemplates,
        lender_id: str,
        zone: ZoneInfo,
    ) -> None:
        self._agencies = agencies
        self._lender = lender
        self._settings = settings
        self._templates = templates
        self._lender_id = lender_id
        self._zone = zone
        if lender.registration is None:
            raise ConfigError(
                "[notices] enabled needs [lender.registration] (legal_name, credit_code, "
                "address, phone): every notice names the lender"
            )
        self._registration: Registration = lender.registration
        # Placements with an agency that cannot be named wait outside the scan's pages, so
        # they never crowd out the placements that can be told.
        self._registered = sorted(a.id for a in agencies.values() if a.registration is not None)
        for agency in agencies.values():
            if agency.registration is None:
                log.warning(
                    "agency %s has no [registration]: its borrowers get no notice until it has",
                    agency.id,
                )

    async def scan(
        self, conn: AsyncConnection, *, now: datetime, limit: int = SCAN_LIMIT
    ) -> ScanResult:
        """Queue every due notice (at most ``limit`` per phase) in the caller's transaction."""
        result = ScanResult()
        facts = [
            *await self._starts(conn, limit, result),
            *await self._ends(conn, limit, result),
        ]
        if facts:
            await self._queue(conn, facts, result, now=now)
        return result

    def _facts(
        self,
        row: Any,
        kind: NoticeKind,
        result: ScanResult,
        *,
        previous: NoticeAgency | None = None,
        ended_on: Any = None,
    ) -> NoticeFacts | None:
        config = self._agencies.get(row.agency_id)
        agency = _agency(config)
        if config is None or agency is None:
            result.unregistered += 1
            log.warning(
                "no borrower notice for placement %s yet: agency %s has no registration "
                "(legal name, phone) in its config",
                row.placement_id,
                row.agency_id,
            )
            return None
        registration = self._registration
        try:
            letter = (
                NoticeLetter(
                    letter_no=row.letter_no,
                    valid_from=row.valid_from,
                    valid_until=row.valid_until,
                    verify_url=verify_link(self._lender.verify_url, row.letter_no),
                )
                if row.letter_no is not None
                else None
            )
        except ValidationError as exc:
            result.invalid += 1
            log.warning("no borrower notice for placement %s: %s", row.placement_id, exc)
            return None
        return NoticeFacts(
            kind=kind,
            lender_id=self._lender_id,
            lender=registration,
            case_id=row.case_id,
            debtor_id=row.debtor_id,
            placement_id=row.placement_id,
            agency=agency,
            letter=letter,
            categories=(*shared_categories(config), DEBT_DETAILS),
            purpose=self._settings.purpose,
            contact=self._settings.contact or registration.phone,
            previous_agency=previous,
            ended_on=ended_on,
        )

    async def _starts(
        self, conn: AsyncConnection, limit: int, result: ScanResult
    ) -> list[NoticeFacts]:
        told = sa.exists().where(N.placement_id == P.id, N.kind.in_(START_KINDS))
        rows = (
            await conn.execute(
                sa.select(
                    P.id.label("placement_id"),
                    P.case_id,
                    P.agency_id,
                    P.placed_at,
                    C.debtor_id,
                    L.letter_no,
                    L.valid_from,
                    L.valid_until,
                )
                .join(CASES, C.id == P.case_id)
                .join(LETTERS, sa.and_(L.placement_id == P.id, L.status == "active"))
                .where(
                    P.state.in_(sorted(OPEN_PLACEMENT_STATES)),
                    P.agency_id.in_(self._registered),
                    ~told,
                )
                .order_by(P.placed_at, P.id, L.issued_at.desc())
                .limit(limit)
            )
        ).all()
        latest: dict[str, Any] = {}
        for row in rows:
            latest.setdefault(row.placement_id, row)  # the newest active letter first
        before = await self._earlier_agencies(conn, sorted({r.case_id for r in latest.values()}))
        facts: list[NoticeFacts] = []
        for row in latest.values():
            previous = next(
                (
                    agency
                    for placed_at, pid, agency in before.get(row.case_id, [])
                    if (placed_at, pid) < (row.placed_at, row.placement_id)
                    and agency != row.agency_id
                ),
                None,
            )
            prior = _agency(self._agencies.get(previous)) if previous is not None else None
            if previous is not None and prior is None:
                # The old agency's name cannot be printed; the notice still names the new one.
                log.warning(
                    "placement %s: earlier agency %s has no registration",
                    row.placement_id,
                    previous,
                )
            kind: NoticeKind = "moved" if prior is not None else "placed"
            found = self._facts(row, kind, result, previous=prior)
            if found is not None:
                facts.append(found)
        return facts

    async def _earlier_agencies(
        self, conn: AsyncConnection, case_ids: Sequence[str]
    ) -> dict[str, list[tuple[datetime, str, str]]]:
        """Each case's placements, newest first: (placed at, placement id, agency id)."""
        found: dict[str, list[tuple[datetime, str, str]]] = {}
        for start in range(0, len(case_ids), 1000):
            rows = await conn.execute(
                sa.select(P.case_id, P.placed_at, P.id, P.agency_id)
                .where(P.case_id.in_(case_ids[start : start + 1000]))
                .order_by(P.placed_at.desc(), P.id.desc())
            )
            for case_id, placed_at, pid, agency_id in rows.all():
                found.setdefault(case_id, []).append((placed_at, pid, agency_id))
        return found

    async def _ends(
        self, conn: AsyncConnection, limit: int, result: ScanResult
    ) -> list[NoticeFacts]:
        later = PLACEMENTS.alias("later")
        told_start = sa.exists().where(N.placement_id == P.id, N.kind.in_(START_KINDS))
        told_end = sa.exists().where(N.placement_id == P.id, N.kind == "recalled")
        superseded = sa.exists().where(
            later.c.case_id == P.case_id, later.c.placed_at > P.placed_at
        )
        newest = LETTERS.alias("newest")
        newest_letter = (
            sa.select(newest.c.letter_no)
            .where(newest.c.placement_id == P.id)
            .order_by(newest.c.issued_at.desc(), newest.c.letter_no.desc())
            .limit(1)
            .correlate(PLACEMENTS)
            .scalar_subquery()
        )
        rows = (
            await conn.execute(
                sa.select(
                    P.id.label("placement_id"),
                    P.case_id,
                    P.agency_id,
                    P.recalled_at,
                    C.debtor_id,
                    L.letter_no,
                    L.valid_from,
                    L.valid_until,
                )
                .join(CASES, C.id == P.case_id)
                .outerjoin(LETTERS, L.letter_no == newest_letter)
                .where(
                    P.state == "recalled",
                    P.agency_id.in_(self._registered),
                    told_start,
                    ~told_end,
                    ~superseded,
                )
                .order_by(P.recalled_at, P.id)
                .limit(limit)
            )
        ).all()
        facts: list[NoticeFacts] = []
        for row in rows:
            ended = row.recalled_at.astimezone(self._zone).date() if row.recalled_at else None
            found = self._facts(row, "recalled", result, ended_on=ended)
            if found is not None:
                facts.append(found)
        return facts

    async def _queue(
        self,
        conn: AsyncConnection,
        facts: Sequence[NoticeFacts],
        result: ScanResult,
        *,
        now: datetime,
    ) -> None:
        rendered = []
        for fact in facts:
            try:
                rendered.append((fact, render_notice(fact, self._templates, now=now)))
            except ValidationError as exc:
                result.invalid += 1
                log.warning("no borrower notice for placement %s: %s", fact.placement_id, exc)
        max_attempts = self._settings.retry.max_attempts
        ids = await outbox.enqueue(
            conn,
            [
                outbox.NewItem(NOTICE_SENDER, f.placement_id, pkt, max_attempts)
                for f, pkt in rendered
            ],
            now=now,
        )
        new = [(f, pkt) for f, pkt in rendered if pkt.dedupe_key in ids]
        if not new:
            return
        await append_leaves(
            conn,
            [
                packet_leaf(ids[pkt.dedupe_key], NOTICE_SENDER, f.placement_id, pkt)
                for f, pkt in new
            ],
            now=now,
        )
        await conn.execute(
            dialect_insert(conn, NOTICES).on_conflict_do_nothing(index_elements=["dedupe_key"]),
            [
                {
                    "placement_id": f.placement_id,
                    "case_id": f.case_id,
                    "kind": f.kind,
                    "agency_id": f.agency.agency_id,
                    "letter_no": f.letter.letter_no if f.letter is not None else None,
                    "dedupe_key": pkt.dedupe_key,
                    "outbox_id": ids[pkt.dedupe_key],
                    "state": "queued",
                    "created_at": now,
                }
                for f, pkt in new
            ],
        )
        for f, _pkt in new:
            result.queued[f.kind] = result.queued.get(f.kind, 0) + 1


__all__ = ["SCAN_LIMIT", "NoticeScanner", "ScanResult", "verify_link"]
