"""Leases: which process holds a role of the cluster, until when, under which token.

Theory of operation
-------------------
A role (``schedulers``, ``evidence-sequencer``, ``allocation-round``) has one row. A process
asks for it with ``claim``, a pure function of the row it read, itself and the time:

==========================  =========================  ===========================
row read                    asked by its holder        asked by another process
==========================  =========================  ===========================
none                        taken, token 1             taken, token 1
running (now < expires)     renewed, same token        refused (None)
expired (now >= expires)    taken again, token + 1     taken over, token + 1
==========================  =========================  ===========================

The store writes the new row only if the row is still the one read (compare and set), so two
processes that read the same row cannot both win. The token grows at every change of holder:
it fences work a former holder might still finish (each scheduled run records its token).
A holder that has not renewed for a lease's length stops what it runs before the lease can
expire (gateway.cluster.leader), so two holders never run a role at once as long as the
processes' clocks agree to well within a lease.
"""

from dataclasses import dataclass, replace
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class Lease:
    """Role ``name`` held by ``holder`` under ``token`` until ``expires_at``."""

    name: str
    holder: str
    token: int
    acquired_at: datetime
    expires_at: datetime

    def running(self, now: datetime) -> bool:
        return now < self.expires_at


def claim(
    current: Lease | None, name: str, holder: str, *, now: datetime, seconds: float
) -> Lease | None:
    """The lease after ``holder`` asks for role ``name`` at ``now`` for ``seconds``, given
    the ``current`` row (None: no row yet); None when another holder's lease still runs."""
    until = now + timedelta(seconds=seconds)
    if current is None:
        return Lease(name, holder, 1, now, until)
    if current.running(now):
        if current.holder != holder:
            return None
        return replace(current, expires_at=until)
    return Lease(name, holder, current.token + 1, now, until)


def release(current: Lease, holder: str, *, now: datetime) -> Lease | None:
    """The lease ended at ``now`` by its holder, so another process takes it at once; None
    when ``holder`` no longer holds it (nothing to release)."""
    if current.holder != holder or not current.running(now):
        return None
    return replace(current, expires_at=now)


__all__ = ["Lease", "claim", "release"]
