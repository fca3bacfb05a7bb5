"""The settlement statement's states as a transition table (pure).

=========  ==========  ==========  ==================================================
state      action      next        what happens
=========  ==========  ==========  ==================================================
draft      build       draft       lines recomputed from the attributions (adjustments kept)
draft      adjust      draft       an adjustment added, totals recomputed
draft      issue       issued      canonical JSON hashed, XLSX and signed PDF made, an
                                   evidence leaf appended, the packet sent to the agency
issued     confirm     confirmed   the agency confirmed this revision's SHA-256: locked;
                                   its lines' attributions get ``statement_id`` and
                                   ``state='settled'``; an evidence leaf
issued     dispute     disputed    a ``settlement_disputed`` mismatch with the lines
disputed   build       superseded  (once the dispute is resolved) a new draft revision is
                                   built; adjustments are carried over
=========  ==========  ==========  ==================================================

``confirmed`` and ``superseded`` have no way out: a confirmed statement accepts no change.
"""

from collections.abc import Mapping
from typing import Final

from gateway.errors import SettlementError

STATES: Final = ("draft", "issued", "confirmed", "disputed", "superseded")
TRANSITIONS: Final[Mapping[tuple[str, str], str]] = {
    ("draft", "build"): "draft",
    ("draft", "adjust"): "draft",
    ("draft", "issue"): "issued",
    ("issued", "confirm"): "confirmed",
    ("issued", "dispute"): "disputed",
    ("disputed", "build"): "superseded",
}


def next_state(state: str, action: str, *, statement: str = "the statement") -> str:
    """The state after ``action``; SettlementError naming what is allowed otherwise."""
    try:
        return TRANSITIONS[(state, action)]
    except KeyError:
        allowed = sorted(a for (s, a) in TRANSITIONS if s == state)
        hint = ", ".join(allowed) if allowed else "nothing: it is locked"
        raise SettlementError(
            f"{statement} is {state}: cannot {action} (allowed: {hint})"
        ) from None


__all__ = ["STATES", "TRANSITIONS", "next_state"]
