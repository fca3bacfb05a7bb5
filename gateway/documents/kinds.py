"""Kinds of documents in a placement's pack, and the guess from a file's name (pure)."""

import re
from typing import Final

KINDS: Final = (
    "authorisation_letter",
    "loan_contract",
    "repayment_history",
    "balance_breakdown",
    "notarisation",
    "preservation",
    "other",
)

GENERATED_KINDS: Final = frozenset(
    {"authorisation_letter", "repayment_history", "balance_breakdown"}
)
"""Kinds made by the gateway for one placement; the others come from the lender's store."""

_GUESSES: Final = (
    (re.compile(r"^(loan[-_ ]?)?contract|合同|借款"), "loan_contract"),
    (re.compile(r"^notar|公证"), "notarisation"),
    (re.compile(r"^(preserv|deposit|存证|保全)"), "preservation"),
)


def guess_kind(name: str) -> str:
    """The kind a file's name suggests (``contract*`` is a loan contract, ``notar*`` or 公证
    a notarisation, ``preserv*``/``deposit*`` or 存证 a preservation record), else ``other``."""
    lowered = name.lower()
    for pattern, kind in _GUESSES:
        if pattern.search(lowered):
            return kind
    return "other"


__all__ = ["GENERATED_KINDS", "KINDS", "guess_kind"]
