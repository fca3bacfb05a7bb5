"""Keying debtors: ``cases.debtor_key`` on every case, so the console finds a debtor by a
keyed hash of the id and never carries the id itself in a URL.

Theory of operation: intake writes the key with every row it writes (gateway.intake.writer).
Migration 0015 adds the column but cannot fill it (the key is a secret, derived from the PII key
ring: ``PiiKeyRing.debtor_key``), and retiring the ring's oldest key changes the key; both are
mended here. ``key_debtors`` first checks a few keyed rows against the ring: when one disagrees,
the key has changed and every case is re-keyed; otherwise only the cases without a key are.
It works in batches of ``BATCH`` cases in id order, one transaction each, so it can be stopped
and run again. ``serve`` runs it on start; ``agency-gateway privacy debtor-keys`` on demand.
"""

from dataclasses import dataclass
from typing import Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.privacy.pii import PiiKeyRing
from gateway.store.database import Database
from gateway.store.tables import Case

CASES = Case.__table__  # type: ignore[attr-defined]
C = CASES.c

BATCH: Final = 2_000
SAMPLE: Final = 3
"""Keyed rows checked against the ring to tell whether the key changed."""
_SET_KEY = (
    CASES.update().where(C.id == sa.bindparam("b_id")).values(debtor_key=sa.bindparam("b_key"))
)


@dataclass(frozen=True, slots=True)
class KeyingResult:
    """What ``key_debtors`` did."""

    keyed: int
    """Cases whose key was written."""
    rekeyed_all: bool
    """Whether every case was re-keyed (the key changed, or ``everything`` was asked)."""

    def as_dict(self) -> dict[str, object]:
        return {"keyed": self.keyed, "rekeyed_all": self.rekeyed_all}


async def key_is_current(conn: AsyncConnection, ring: PiiKeyRing) -> bool:
    """Whether the keyed cases (a sample of them) were keyed under ``ring``'s debtor key."""
    rows = await conn.execute(
        sa.select(C.debtor_id, C.debtor_key)
        .where(C.debtor_key.is_not(None))
        .order_by(C.id)
        .limit(SAMPLE)
    )
    return all(ring.debtor_key(debtor_id) == key for debtor_id, key in rows)


async def key_debtors(db: Database, ring: PiiKeyRing, *, everything: bool = False) -> KeyingResult:
    """Key the cases that lack a key, or every case when the key changed or ``everything``."""
    async with db.snapshot() as conn:
        everything = everything or not await key_is_current(conn, ring)
    keyed, after = 0, ""
    while True:
        async with db.transaction() as conn:
            query = sa.select(C.id, C.debtor_id).where(C.id > after)
            if not everything:
                query = query.where(C.debtor_key.is_(None))
            rows = (await conn.execute(query.order_by(C.id).limit(BATCH))).all()
            if not rows:
                break
            await conn.execute(
                _SET_KEY,
                [{"b_id": case_id, "b_key": ring.debtor_key(debtor)} for case_id, debtor in rows],
            )
        keyed += len(rows)
        after = rows[-1][0]
    return KeyingResult(keyed, everything)


__all__ = ["BATCH", "KeyingResult", "key_debtors", "key_is_current"]
