"""Collector verification, the I/O shell: rate limit, look up, decide, log.

One check is ONE transaction: the client's and the letter number's window counters are bumped
(``verification_windows``, an upsert, so every process shares the limit), the letter and its
case are read, the case's personal data is decrypted in memory to compare the digits, and the
check is logged (``verification_checks``: when, a keyed hash of the client, the letter number
as typed, the outcome; never the digits). An unknown letter number decrypts a stand-in record,
so a forged number costs the same work as a real one.
"""

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.clock import to_datetime
from gateway.config.agencies import AgencyConfig
from gateway.config.notices import VerificationSection
from gateway.metrics import Metrics
from gateway.ports import Clock
from gateway.privacy.pii import PiiKeyRing
from gateway.store.database import Database, dialect_insert
from gateway.store.document_tables import AuthorisationLetter
from gateway.store.notice_tables import VerificationCheck, VerificationWindow
from gateway.store.tables import Case
from gateway.verification.check import (
    NO_MATCH,
    LetterFacts,
    Outcome,
    ShownAgency,
    Verdict,
    as_typed,
    candidates,
    decide,
    digits_match,
    last_digits,
    letter_number,
)
from gateway.verification.report import failed_since

log = logging.getLogger(__name__)

CHECKS = VerificationCheck.__table__  # type: ignore[attr-defined]
WINDOWS = VerificationWindow.__table__  # type: ignore[attr-defined]
LETTERS = AuthorisationLetter.__table__  # type: ignore[attr-defined]
CASES = Case.__table__  # type: ignore[attr-defined]
STAND_IN: Final = "verification:stand-in"
Channel = Literal["page", "api"]


@dataclass(frozen=True, slots=True)
class CheckAnswer:
    """What a check answers: a verdict, a refusal of the input, or a rate limit."""

    verdict: Verdict | None
    invalid_input: bool = False
    retry_after: int | None = None
    """Seconds until the client may check again (rate limited)."""


class VerificationService:
    """Answers collector checks (see the module docstring).

    Args:
        db: the database.
        pii: the key ring (decrypts the case, keys the client hash).
        agencies: agency configs (the registered name and phone shown).
        settings: ``[verification]``.
        zone: the lender's time zone (what "today" is for a letter's dates).
        clock: time source.
        metrics: counts checks by outcome.
    """

    def __init__(
        self,
        *,
        db: Database,
        pii: PiiKeyRing,
        agencies: Mapping[str, AgencyConfig],
        settings: VerificationSection,
        zone: ZoneInfo,
        clock: Clock,
        metrics: Metrics | None = None,
    ) -> None:
        self._db = db
        self._pii = pii
        self._agencies = agencies
        self.settings = settings
        self.zone = zone
        self._clock = clock
        self._metrics = metrics
        self._stand_in = pii.encrypt(
            {"phones": ["00000000000"], "national_id": "000000000000000000"}, bound_to=STAND_IN
        )
        self._purged_until: datetime | None = None

    async def failed_last_hour(self) -> int:
        """Checks that matched no authorisation in the last hour, by every process."""
        now = to_datetime(self._clock.now())
        async with self._db.snapshot() as conn:
            return await failed_since(conn, now - timedelta(hours=1))

    def client_hash(self, address: str) -> str:
        """The client as the check log keeps it: a keyed hash, never the address."""
        return self._pii.mac(b"verification-client\x00" + address.encode())[:32]

    def _shown(self, agency_id: str) -> ShownAgency:
        config = self._agencies.get(agency_id)
        registration = config.registration if config is not None else None
        if registration is not None:
            return ShownAgency(
                registration.legal_name, registration.legal_name_en, registration.phone
            )
        return ShownAgency(config.name if config is not None else agency_id, None, None)

    async def check(
        self, *, letter: str | None, digits: str | None, client: str, channel: Channel
    ) -> CheckAnswer:
        """Answer one check from ``client`` (its address) and log it."""
        now = to_datetime(self._clock.now())
        window = self.settings.window_seconds
        start = to_datetime(int(now.timestamp()) // window * window)
        retry_after = max(1, int((start + timedelta(seconds=window) - now).total_seconds()))
        who = self.client_hash(client)
        typed = as_typed(letter)
        number = letter_number(letter)
        last4 = last_digits(digits)
        async with self._db.transaction() as conn:
            await self._purge(conn, start)
            if await self._bump(conn, f"c:{who}", start) > self.settings.max_per_client:
                return await self._log(conn, now, who, typed, "limited", channel, retry_after)
            if not typed or last4 is None:
                answer = CheckAnswer(None, invalid_input=True)
                await self._record(conn, now, who, typed, "invalid", channel)
                return answer
            letter_key = f"l:{number or typed.upper()}"[:80]
            if await self._bump(conn, letter_key, start) > self.settings.max_per_letter:
                return await self._log(conn, now, who, typed, "limited", channel, retry_after)
            verdict = await self._verdict(conn, number, last4, now)
            await self._record(conn, now, who, typed, verdict.outcome, channel)
        return CheckAnswer(verdict)

    async def _verdict(
        self, conn: AsyncConnection, number: str | None, last4: str, now: datetime
    ) -> Verdict:
        row = None
        if number is not None:
            row = (
                await conn.execute(
                    sa.select(
                        LETTERS.c.letter_no,
                        LETTERS.c.status,
                        LETTERS.c.valid_from,
                        LETTERS.c.valid_until,
                        LETTERS.c.revoked_at,
                        LETTERS.c.agency_id,
                        CASES.c.id.label("case_id"),
                        CASES.c.pii,
                    )
                    .join(CASES, CASES.c.id == LETTERS.c.case_id)
                    .where(LETTERS.c.letter_no == number)
                )
            ).one_or_none()
        if row is None:
            self._pii.decrypt(self._stand_in, bound_to=STAND_IN)  # the same work as a real one
            return NO_MATCH
        record = self._pii.decrypt(row.pii, bound_to=row.case_id)
        matched = digits_match(last4, candidates(record))
        facts = LetterFacts(
            row.letter_no, row.status, row.valid_from, row.valid_until, row.revoked_at
        )
        return decide(facts, matched, self._shown(row.agency_id), now=now, zone=self.zone)

    async def _bump(self, conn: AsyncConnection, key: str, start: datetime) -> int:
        stmt = (
            dialect_insert(conn, WINDOWS)
            .values(key=key, window_start=start, count=1)
            .on_conflict_do_update(
                index_elements=["key", "window_start"], set_={"count": WINDOWS.c.count + 1}
            )
            .returning(WINDOWS.c.count)
        )
        return int((await conn.execute(stmt)).scalar_one())

    async def _purge(self, conn: AsyncConnection, start: datetime) -> None:
        """Drop the windows that ended, once per window and process."""
        if self._purged_until == start:
            return
        await conn.execute(WINDOWS.delete().where(WINDOWS.c.window_start < start))
        self._purged_until = start

    async def _log(
        self,
        conn: AsyncConnection,
        now: datetime,
        who: str,
        typed: str,
        outcome: Outcome,
        channel: Channel,
        retry_after: int,
    ) -> CheckAnswer:
        await self._record(conn, now, who, typed, outcome, channel)
        return CheckAnswer(None, retry_after=retry_after)

    async def _record(
        self,
        conn: AsyncConnection,
        now: datetime,
        who: str,
        typed: str,
        outcome: Outcome,
        channel: Channel,
    ) -> None:
        await conn.execute(
            CHECKS.insert().values(
                at=now, client=who, letter_no=typed, outcome=outcome, channel=channel
            )
        )
        if self._metrics is not None:
            self._metrics.verification_checks.labels(outcome).inc()


__all__ = ["CheckAnswer", "VerificationService"]
