"""Letter numbers: ``<prefix><year>-<sequence>-<check>``, e.g. ``SQ2026-0000123-K``.

The sequence is seven digits, counted per prefix and year by ``gateway.letters.service``
(``max() + 1`` under a lock, so numbers are dense and in commit order). The check character
is ISO/IEC 7064 MOD 37,36 over the prefix, year and sequence (0-9 A-Z): it catches every
single mistyped character and more than 99 in 100 swaps of two neighbouring characters (it
misses a few swaps of neighbouring values such as 01), and an invented number passes with
odds of 1 in 36. It is not keyed on purpose: it is there to catch typing mistakes
on the verification page and on the phone; forgery is caught by looking the number up (the
page shows nothing for a number the gateway never issued) and by the letter's signature, so
a secret in the check character would add a key to guard and rotate and stop nothing.

Pure functions, no I/O.
"""

import re
from dataclasses import dataclass

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_M = 36
SEQUENCE_DIGITS = 7
MAX_SEQUENCE = 10**SEQUENCE_DIGITS - 1
_PATTERN = re.compile(r"^([A-Z]{2,6})(\d{4})-(\d{7})-([0-9A-Z])$")


def check_char(text: str) -> str:
    """The ISO 7064 MOD 37,36 check character of ``text`` (0-9 and A-Z only)."""
    product = _M
    for ch in text:
        value = ALPHABET.find(ch)
        if value < 0:
            raise ValueError(f"{ch!r} is not a letter-number character (0-9, A-Z)")
        total = (product + value) % _M or _M
        product = (total * 2) % (_M + 1)
    return ALPHABET[(_M + 1 - product) % _M]


@dataclass(frozen=True, slots=True, order=True)
class LetterNumber:
    """A parsed letter number."""

    prefix: str
    year: int
    sequence: int

    def __str__(self) -> str:
        body = f"{self.prefix}{self.year:04d}{self.sequence:0{SEQUENCE_DIGITS}d}"
        return (
            f"{self.prefix}{self.year:04d}-{self.sequence:0{SEQUENCE_DIGITS}d}-{check_char(body)}"
        )

    @property
    def series(self) -> str:
        """The text every number of this prefix and year starts with (``SQ2026-``)."""
        return f"{self.prefix}{self.year:04d}-"


def format_number(prefix: str, year: int, sequence: int) -> str:
    """The printed number; ValueError when the sequence does not fit seven digits."""
    if not 1 <= sequence <= MAX_SEQUENCE:
        raise ValueError(
            f"letter sequence {sequence} is out of range 1..{MAX_SEQUENCE} for {prefix}{year}"
        )
    return str(LetterNumber(prefix, year, sequence))


def parse_number(text: str) -> LetterNumber | None:
    """The number ``text`` names, or None when it is malformed or its check character is
    wrong. Spaces and lower case are forgiven (people type what they read)."""
    match = _PATTERN.match(text.strip().upper().replace(" ", ""))
    if match is None:
        return None
    prefix, year, sequence, check = match.groups()
    if check_char(f"{prefix}{year}{sequence}") != check:
        return None
    return LetterNumber(prefix, int(year), int(sequence))


def series_of(prefix: str, year: int) -> str:
    """The common start of every number of ``prefix`` in ``year``."""
    return f"{prefix}{year:04d}-"


def sequence_of(letter_no: str) -> int:
    """The sequence part of a well-formed number (the store's max() reads it back)."""
    return int(letter_no.split("-")[1])


__all__ = [
    "ALPHABET",
    "MAX_SEQUENCE",
    "LetterNumber",
    "check_char",
    "format_number",
    "parse_number",
    "sequence_of",
    "series_of",
]
