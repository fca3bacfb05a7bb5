"""The monthly QA sample of call recordings: which calls are drawn, and the states of a
drawn item (pure).

Theory of operation
-------------------
Each month the lender listens to a sample of every agency's recorded calls. The candidates
are the agency's contact attempts of the month (lender's time zone) that carry a
``recording_ref``. ``draw`` is reproducible: the random generator is seeded by the agency
and the month alone, and the candidates are put in event-id order first, so the same data
always gives the same sample. It is stratified by collector: the collectors take turns
(in seeded order), so every collector with recorded calls is heard before any is heard
twice; within a collector, effective calls (the debtor was spoken to) come first, each
group shuffled. Calls with no collector id form one stratum of their own.

A drawn item moves through one small table:

=============  ===========  ===========
state          action       next
=============  ===========  ===========
drawn          request      requested
drawn          pass         passed
drawn          fail         failed
drawn          unavailable  unavailable
requested      pass         passed
requested      fail         failed
requested      unavailable  unavailable
=============  ===========  ===========

``passed``, ``failed`` and ``unavailable`` are final. A failed or unavailable recording
raises the mismatch ``recording_qa_failed`` (gateway.conduct.qa), so it counts against the
agency's conduct like any violation.
"""

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, tzinfo
from typing import Final

from gateway.errors import GatewayError, QaRefused

QA_STATES: Final = ("drawn", "requested", "passed", "failed", "unavailable")
REVIEWED: Final = frozenset({"passed", "failed", "unavailable"})
QA_TRANSITIONS: Final[dict[tuple[str, str], str]] = {
    ("drawn", "request"): "requested",
    **{
        (s, a): n
        for s in ("drawn", "requested")
        for a, n in (
            ("pass", "passed"),
            ("fail", "failed"),
            ("unavailable", "unavailable"),
        )
    },
}
"""(state, action) → next state; anything else is refused."""
QA_ACTIONS: Final = ("request", "pass", "fail", "unavailable")


@dataclass(frozen=True, slots=True)
class Candidate:
    """A recorded contact attempt that may be drawn."""

    event_id: int
    placement_id: str
    collector_id: str | None
    recording_ref: str
    attempted_at: datetime
    effective: bool


def seed(agency_id: str, month: str) -> int:
    """The sample's seed: the agency and the month, nothing else."""
    return int.from_bytes(hashlib.sha256(f"qa:{agency_id}:{month}".encode()).digest()[:8], "big")


def draw(
    candidates: Sequence[Candidate], size: int, *, agency_id: str, month: str
) -> list[Candidate]:
    """Up to ``size`` candidates in draw order (see the module docstring)."""
    rng = random.Random(seed(agency_id, month))
    strata: dict[str, list[Candidate]] = {}
    for c in sorted(candidates, key=lambda c: c.event_id):
        strata.setdefault(c.collector_id or "", []).append(c)
    queues: list[list[Candidate]] = []
    for key in sorted(strata):
        calls = strata[key]
        effective = [c for c in calls if c.effective]
        others = [c for c in calls if not c.effective]
        rng.shuffle(effective)
        rng.shuffle(others)
        queues.append(effective + others)
    rng.shuffle(queues)
    drawn: list[Candidate] = []
    turn = 0
    while len(drawn) < size and any(queues):
        queue = queues[turn % len(queues)]
        if queue:
            drawn.append(queue.pop(0))
        turn += 1
    return drawn


def next_state(state: str, action: str, *, item: int) -> str:
    """The state after ``action``; refuses what the table does not allow."""
    new = QA_TRANSITIONS.get((state, action))
    if new is None:
        raise QaRefused(
            f"QA item {item} is {state}; it cannot take {action!r} "
            f"(allowed: {', '.join(a for (s, a) in QA_TRANSITIONS if s == state) or 'nothing'})"
        )
    return new


def month_bounds(month: str, zone: tzinfo) -> tuple[datetime, datetime]:
    """The first moment of ``month`` (``YYYY-MM``) and of the next, in ``zone``."""
    try:
        first = date.fromisoformat(f"{month}-01")
    except ValueError:
        raise GatewayError(f"{month!r} is not a month; write it as YYYY-MM") from None
    after = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return (
        datetime.combine(first, time(), zone),
        datetime.combine(after, time(), zone),
    )


__all__ = [
    "QA_ACTIONS",
    "QA_STATES",
    "QA_TRANSITIONS",
    "REVIEWED",
    "Candidate",
    "draw",
    "month_bounds",
    "next_state",
    "seed",
]
