"""Collector verification, the pure part: what a check answers (no I/O).

Theory of operation
-------------------
Anyone may ask "does this collector act for the lender?" with the letter number (printed on
the authorisation letter, in its QR code) and the last 4 digits of the debtor's phone or ID
number. The answer depends on the letter *and* the digits:

=====================  ===============================  ============================
letter                 digits match one of the debtor's  answer
=====================  ===============================  ============================
unknown or malformed   (not looked at)                   ``no_match``
any                    no                                ``no_match``
active, in its dates   yes                               ``authorised`` (agency, until)
active, before start   yes                               ``not_yet`` (from)
active, after its end  yes                               ``expired`` (since)
revoked                yes                               ``revoked`` (since)
superseded             yes                               ``superseded`` (since)
=====================  ===============================  ============================

``no_match`` is one answer whatever the reason, so a number cannot be probed without the
digits. Digits are compared in constant time against every candidate (each phone's last 4,
the ID number's last 4), and never stored or logged.
"""

import hmac
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Final, Literal
from zoneinfo import ZoneInfo

Outcome = Literal[
    "authorised", "not_yet", "expired", "revoked", "superseded", "no_match", "invalid", "limited"
]
FAILED_OUTCOMES: Final = ("no_match", "invalid")
"""Checks that found no authorisation: a spike of them is a sign of fake collectors."""
_LETTER: Final = re.compile(r"[A-Z0-9][A-Z0-9-]{3,31}")
_DIGITS: Final = re.compile(r"[0-9]{3}[0-9X]")
TYPED_KEEP: Final = 40
"""Characters of a typed letter number kept in the check log."""


def letter_number(text: str | None) -> str | None:
    """The letter number in ``text`` (full-width forms, spaces and case forgiven), or None
    when it cannot be one."""
    folded = unicodedata.normalize("NFKC", text or "").strip().upper()
    folded = re.sub(r"[\s\u2010-\u2015\u2212]", lambda m: "" if m[0].isspace() else "-", folded)
    return folded if _LETTER.fullmatch(folded) else None


def last_digits(text: str | None) -> str | None:
    """The 4 characters typed as the last digits of a phone or ID number (an ID number may
    end in X), or None."""
    folded = unicodedata.normalize("NFKC", text or "").strip().upper()
    return folded if _DIGITS.fullmatch(folded) else None


def as_typed(text: str | None) -> str:
    """The letter number as typed, for the check log: printable, at most ``TYPED_KEEP``."""
    clean = "".join(ch for ch in (text or "").strip() if ch.isprintable())
    return clean[:TYPED_KEEP]


def candidates(record: Mapping[str, object]) -> list[str]:
    """The debtor's last-4 values: each phone's last 4 digits, the ID number's last 4."""
    found: list[str] = []
    phones = record.get("phones")
    for phone in phones if isinstance(phones, list | tuple) else []:
        digits = "".join(ch for ch in str(phone) if ch.isdigit())
        if len(digits) >= 4:
            found.append(digits[-4:])
    national_id = record.get("national_id")
    if isinstance(national_id, str) and len(national_id.strip()) >= 4:
        found.append(national_id.strip().upper()[-4:])
    return found


def digits_match(typed: str, values: list[str]) -> bool:
    """Whether ``typed`` equals any of ``values``, comparing every one of them in constant
    time (no early exit)."""
    matched = False
    for value in values:
        matched |= hmac.compare_digest(typed.encode(), value.encode())
    return matched


@dataclass(frozen=True, slots=True)
class LetterFacts:
    """The stored letter a check found."""

    letter_no: str
    status: str
    valid_from: date
    valid_until: date
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class ShownAgency:
    """What the answer says about the agency: its registered name and public phone."""

    legal_name: str
    legal_name_en: str | None
    phone: str | None


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer to one check (see the module's table)."""

    outcome: Outcome
    agency: ShownAgency | None = None
    valid_from: date | None = None
    valid_until: date | None = None
    since: date | None = None

    @property
    def authorised(self) -> bool:
        return self.outcome == "authorised"

    def as_json(self) -> dict[str, object]:
        """The API's body: ``outcome``, and for a matched letter the agency and dates."""
        if self.agency is None:
            return {"outcome": self.outcome}
        return {
            "outcome": self.outcome,
            "authorised": self.authorised,
            "agency": {
                "legal_name": self.agency.legal_name,
                "legal_name_en": self.agency.legal_name_en,
                "phone": self.agency.phone,
            },
            "valid_from": self.valid_from.isoformat() if self.valid_from else None,
            "valid_until": self.valid_until.isoformat() if self.valid_until else None,
            "since": self.since.isoformat() if self.since else None,
        }


NO_MATCH: Final = Verdict("no_match")


def decide(
    letter: LetterFacts | None,
    matched: bool,
    agency: ShownAgency,
    *,
    now: datetime,
    zone: ZoneInfo,
) -> Verdict:
    """The answer for a found letter whose digits did or did not match (module table)."""
    if letter is None or not matched:
        return NO_MATCH
    today = now.astimezone(zone).date()
    dates = {"valid_from": letter.valid_from, "valid_until": letter.valid_until}
    ended = letter.revoked_at.astimezone(zone).date() if letter.revoked_at else None
    if letter.status == "revoked":
        return Verdict("revoked", agency, since=ended, **dates)
    if letter.status == "superseded":
        return Verdict("superseded", agency, since=ended, **dates)
    if letter.status != "active":
        return NO_MATCH
    if today < letter.valid_from:
        return Verdict("not_yet", agency, **dates)
    if today > letter.valid_until:
        return Verdict("expired", agency, since=letter.valid_until, **dates)
    return Verdict("authorised", agency, **dates)


__all__ = [
    "FAILED_OUTCOMES",
    "NO_MATCH",
    "LetterFacts",
    "Outcome",
    "ShownAgency",
    "Verdict",
    "as_typed",
    "candidates",
    "decide",
    "digits_match",
    "last_digits",
    "letter_number",
]
