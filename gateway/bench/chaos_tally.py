"""The chaos benchmark's arithmetic: from what the agencies received and what each killed
worker held, count the duplicates and explain every one of them (a pure core, no I/O).

Theory of operation
-------------------
A packet is sent under a lease: the worker that claimed it holds it from ``claimed_at`` until
``expires_at``, and no other worker may send it in that window. When a worker is SIGKILLed,
the packets it still held (``leased``, never recorded) go back to the others once the lease
expires, and are sent again. So every copy an agency received in a killed worker's lease
window is a copy that worker sent and never recorded; if the packet is delivered later, that
copy is a duplicate, and the kill explains it. A copy the agency had answered before the
kill is *answered, not recorded* (the answer was on its way or waiting to be committed);
one it had not is *in flight* (sent, no answer yet: nobody can know it arrived). Leased
packets of which no copy arrived in the window were claimed but not sent: resending them
duplicates nothing.

A duplicate no kill explains (``unexplained``) would be a packet sent twice for another
reason, e.g. a lease that expired under a live worker: a healthy run has none.

How long an answer stays unrecorded (``answer_to_commit``) is what a kill at a random moment
catches of it: from the agency's answer to the worker seeing it (``transit``), then waiting
for a recording transaction to begin (``wait``: the commit before it, in group commit; the
rest of the batch, without), then that transaction (``commit``).
"""

import statistics
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Arrival:
    """One copy of a packet at an agency: when it arrived, when the agency answered it (None
    until then), Unix seconds."""

    received_at: float
    answered_at: float | None = None


@dataclass(frozen=True, slots=True)
class Lease:
    """A packet a killed worker held, unrecorded, when it died."""

    key: str
    claimed_at: float
    expires_at: float

    def covers(self, arrival: Arrival) -> bool:
        return self.claimed_at <= arrival.received_at < self.expires_at


@dataclass(frozen=True, slots=True)
class Kill:
    """One SIGKILL: which worker, when (Unix seconds), how far the run was (distinct ids
    received), and the leases the worker held unrecorded."""

    worker_id: str
    at: float
    progress: int
    leases: tuple[Lease, ...]


@dataclass(frozen=True, slots=True)
class KillTally:
    """What one kill left behind: copies in flight, answered but not recorded, and leased
    packets never sent."""

    progress: int
    leased: int
    in_flight: int
    answered_not_recorded: int
    unsent: int

    @property
    def at_risk(self) -> int:
        """Copies sent and never recorded: each is resent, so each is one duplicate."""
        return self.in_flight + self.answered_not_recorded


@dataclass(frozen=True, slots=True)
class Tally:
    packets: int
    received: int
    distinct: int
    duplicates: int
    lost: int
    changed: int
    explained: int
    unexplained: int
    kills: tuple[KillTally, ...]

    @property
    def in_flight(self) -> int:
        return sum(k.in_flight for k in self.kills)

    @property
    def answered_not_recorded(self) -> int:
        return sum(k.answered_not_recorded for k in self.kills)

    @property
    def at_risk(self) -> int:
        return sum(k.at_risk for k in self.kills)


def tally_kill(
    kill: Kill, arrivals: Mapping[str, Sequence[Arrival]]
) -> tuple[KillTally, dict[str, int]]:
    """Classify what ``kill`` left behind; also return the copies it explains, by id."""
    in_flight = answered = unsent = 0
    explains: dict[str, int] = {}
    for lease in kill.leases:
        copies = [a for a in arrivals.get(lease.key, ()) if lease.covers(a)]
        if not copies:
            unsent += 1
            continue
        explains[lease.key] = len(copies)
        for copy in copies:
            if copy.answered_at is not None and copy.answered_at <= kill.at:
                answered += 1
            else:
                in_flight += 1
    return KillTally(kill.progress, len(kill.leases), in_flight, answered, unsent), explains


def tally(
    packets: Collection[str],
    arrivals: Mapping[str, Sequence[Arrival]],
    kills: Sequence[Kill],
    *,
    changed: Collection[str] = (),
) -> Tally:
    """Count and explain the duplicates of one chaos run (module docstring). ``packets`` are
    the outbox's dedupe keys; ``changed`` the ids that arrived with different bytes."""
    per_kill: list[KillTally] = []
    explained: dict[str, int] = {}
    for kill in kills:
        kill_tally, explains = tally_kill(kill, arrivals)
        per_kill.append(kill_tally)
        for key, copies in explains.items():
            explained[key] = explained.get(key, 0) + copies
    received = sum(len(copies) for copies in arrivals.values())
    extra = {key: len(copies) - 1 for key, copies in arrivals.items() if len(copies) > 1}
    return Tally(
        packets=len(packets),
        received=received,
        distinct=len(arrivals),
        duplicates=sum(extra.values()),
        lost=len(set(packets) - set(arrivals)),
        changed=len(changed),
        explained=sum(min(n, explained.get(key, 0)) for key, n in extra.items()),
        unexplained=sum(max(0, n - explained.get(key, 0)) for key, n in extra.items()),
        kills=tuple(per_kill),
    )


@dataclass(frozen=True, slots=True)
class Recorded:
    """One recording transaction of a worker: when it began and committed (Unix seconds),
    and for each outcome it recorded, the packet's dedupe key and when the worker had its
    answer."""

    begin: float
    commit: float
    keys: Sequence[str]
    answered: Sequence[float]


def spread_ms(seconds: Sequence[float]) -> dict[str, float] | None:
    """Mean, median, 90th percentile and max of ``seconds``, in milliseconds."""
    if not seconds:
        return None
    ordered = sorted(seconds)
    return {
        "mean": round(statistics.fmean(ordered) * 1000, 1),
        "median": round(statistics.median(ordered) * 1000, 1),
        "p90": round(ordered[int(0.9 * (len(ordered) - 1))] * 1000, 1),
        "max": round(ordered[-1] * 1000, 1),
    }


def answer_to_commit(
    recorded: Iterable[Recorded], arrivals: Mapping[str, Sequence[Arrival]]
) -> dict[str, Any]:
    """How long answers waited to be on record (module docstring), over every outcome the
    workers recorded; ``transit`` pairs each with the copy the agency answered last before
    the worker had it."""
    transit: list[float] = []
    wait: list[float] = []
    commit: list[float] = []
    total: list[float] = []
    groups: list[int] = []
    for r in recorded:
        groups.append(len(r.keys))
        for key, answered in zip(r.keys, r.answered, strict=True):
            wait.append(max(0.0, r.begin - answered))
            commit.append(r.commit - r.begin)
            # The worker's clock reading (ms) may fall a hair before the agency's.
            sent = [
                a.answered_at
                for a in arrivals.get(key, ())
                if a.answered_at is not None and a.answered_at <= answered + 0.002
            ]
            if sent:
                transit.append(max(0.0, answered - max(sent)))
                total.append(r.commit - max(sent))
    return {
        "outcomes": len(wait),
        "transactions": len(groups),
        "outcomes_per_transaction": round(statistics.fmean(groups), 2) if groups else None,
        "transit_ms": spread_ms(transit),
        "wait_ms": spread_ms(wait),
        "commit_ms": spread_ms(commit),
        "agency_answer_to_commit_ms": spread_ms(total),
    }


__all__ = [
    "Arrival",
    "Kill",
    "KillTally",
    "Lease",
    "Recorded",
    "Tally",
    "answer_to_commit",
    "spread_ms",
    "tally",
    "tally_kill",
]
