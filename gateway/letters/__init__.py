"""Authorisation letters (授权委托书): the signed PDF that authorises one agency to act on
one placement's case, its number, and its revocation.

* ``numbers``: letter numbers ``<prefix><year>-<sequence>-<check>`` (pure);
* ``content``: what a letter says, in Chinese and optionally English (pure);
* ``render``: the PDF, with an embedded CJK font and the verification QR code;
* ``signing``: the lender's PAdES signature (pyHanko);
* ``maker``: render + sign, in this process or a pool of workers;
* ``certificates``: the demo CA and signing certificate ``keys generate`` makes;
* ``service``: issuing, renewing and revoking letters in the caller's transaction, with
  their ``case_documents`` rows and evidence leaves.
"""

from gateway.letters.numbers import format_number, parse_number
from gateway.letters.service import (
    IssuedLetter,
    LetterRequest,
    LetterRow,
    LetterService,
    letter_pdf,
    letters_of_case,
    revoke_letters,
)

__all__ = [
    "IssuedLetter",
    "LetterRequest",
    "LetterRow",
    "LetterService",
    "format_number",
    "letter_pdf",
    "letters_of_case",
    "parse_number",
    "revoke_letters",
]
