"""The ``sftp-out`` benchmark's floor: the least a delivered batch must write, done with bare
SQL, so a report can tell the cost of the required records from the cost of our code.

Ours must leave, for every case in a delivered file, a claimed and then delivered outbox
item, a receipt evidence leaf and the two SLA expectations DESIGN.md names (ack and first
activity due). The floor does exactly that on a copy of the same seeded store, with the
``sqlite3`` module, the store's own pragmas (WAL, ``synchronous=FULL``) and one statement per
step wherever SQL allows it:

1. the claim: one ``UPDATE … RETURNING`` of every due item of the agency, payloads included
   (rendering needs them), in one transaction;
2. the record, in one transaction: one ``executemany`` of a minimal receipt leaf per case
   (RFC 9162 leaf hash computed), the expectations by two ``INSERT … SELECT``, and one
   ``UPDATE`` to ``delivered``.

It renders nothing, uploads nothing, writes no delivery attempt, no batch membership and no
file record, and takes no lease per chunk: everything ours does beyond that is left out, so the
floor is a lower bound for any implementation of the issue on this store. Adding the raw
``put`` of the same round gives the fastest the whole job can be; ``put / (put + floor)`` is
the highest ratio any implementation can reach on this machine, whatever its code.
"""

import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.bench.child import Finished, ParentLink, peak_rss_mb
from gateway.evidence.merkle import leaf_hash
from gateway.store.database import SQLITE_PRAGMAS

OWNER = "bench-floor"
_STAMP = "%Y-%m-%d %H:%M:%S.%f"


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime(_STAMP)


def floor_records(database_path: Path, agency_id: str, file_sha256: str) -> dict[str, float]:
    """Claim and record every due item of ``agency_id`` as the module docstring says;
    returns the seconds of each step and the count recorded."""
    conn = sqlite3.connect(database_path, isolation_level=None)
    try:
        for pragma in SQLITE_PRAGMAS:
            conn.execute(pragma)
        now = datetime.now(UTC)
        expires = _stamp(now + timedelta(hours=1))
        # The store's (state, lease_expires_at) index finds the claimed items again.
        held = "state = 'leased' AND lease_expires_at = ? AND lease_owner = ?"
        lease = (expires, OWNER)
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        claimed = conn.execute(
            "UPDATE outbox SET state = 'leased', lease_owner = ?, lease_expires_at = ?,"
            " lease_token = lease_token + 1, attempts = attempts + 1"
            " WHERE state = 'pending' AND agency_id = ? AND run_at <= ?"
            " RETURNING id, dedupe_key, payload",
            (OWNER, expires, agency_id, _stamp(now)),
        ).fetchall()
        conn.execute("COMMIT")
        claim_seconds = time.perf_counter() - started

        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        (start,) = conn.execute("SELECT count(*) FROM evidence_leaves").fetchone()
        stamp, leaves = _stamp(now), []
        for seq, (item_id, dedupe_key, _payload) in enumerate(claimed, start):
            body = (
                f'{{"kind":"receipt","outbox_id":{item_id},"dedupe_key":"{dedupe_key}",'
                f'"sha256":"{file_sha256}","line":{seq - start + 2}}}'
            ).encode()
            leaves.append((seq, "receipt", f"floor:{item_id}", body, leaf_hash(body), stamp))
        conn.executemany(
            "INSERT INTO evidence_leaves (seq, kind, ref, body, leaf_hash, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            leaves,
        )
        for kind, days in (("ack", 2), ("first_activity", 7)):
            conn.execute(
                "INSERT INTO expectations (placement_id, agency_id, kind, ref, due_at, state,"
                " created_at) SELECT placement_id, agency_id, ?, '', ?, 'open', ? FROM outbox"
                f" WHERE {held}",
                (kind, _stamp(now + timedelta(days=days)), stamp, *lease),
            )
        conn.execute(
            "UPDATE outbox SET state = 'delivered', delivered_at = ?, lease_owner = NULL,"
            f" lease_expires_at = NULL WHERE {held}",
            (stamp, *lease),
        )
        conn.execute("COMMIT")
        record_seconds = time.perf_counter() - started
    finally:
        conn.close()
    return {
        "claim_seconds": round(claim_seconds, 3),
        "record_seconds": round(record_seconds, 3),
        "seconds": round(claim_seconds + record_seconds, 3),
        "recorded": len(claimed),
    }


async def floor_sender(
    link: ParentLink, database_path: Path, agency_id: str, file_sha256: str
) -> None:
    """Child main (floor): ``floor_records`` on its own copy of the seeded store."""
    cpu0 = time.process_time()
    result = floor_records(database_path, agency_id, file_sha256)
    link.send(
        Finished(peak_rss_mb(), {**result, "cpu_seconds": round(time.process_time() - cpu0, 3)})
    )


__all__ = ["floor_records", "floor_sender"]
