"""The evidence log: an append-only RFC 9162 Merkle log in the same database as the rows
it attests, with Ed25519-signed C2SP checkpoints.

Theory of operation
-------------------
* A leaf is canonical JSON ``{"kind", "ref", **fields}`` (sorted keys, no spaces, UTF-8).
  ``append_leaves`` writes leaves inside the caller's transaction, next to the packet,
  receipt, inbound message or action they attest, so both commit or neither does.
* ``seq`` is the leaf index, ``max(seq) + 1`` read under one writer lock: ``BEGIN
  IMMEDIATE`` on SQLite, a transaction-scoped advisory lock on PostgreSQL. The lock is held
  to commit, so seq order is commit order and committed leaves are always a contiguous
  prefix ``0..n-1`` (append leaves late in a long transaction). Triggers refuse UPDATE and
  DELETE on the leaf table.
* Staging (PostgreSQL, when the database has ``stage_evidence`` on, as ``serve`` sets it):
  ``append_leaves`` writes the leaves to ``evidence_staged`` instead, taking no lock, so
  writers of every process run side by side. ``sequence_staged`` (the cluster's one
  sequencer, gateway.cluster; and every checkpoint and verification before it reads) moves
  the committed staged leaves into the log under the writer lock in one statement, numbered
  in staging order, so the log stays a contiguous prefix. A leaf is in the log once
  sequenced; a caller that stores its leaf's seq in its own row uses
  ``append_leaves_sequenced``, which always takes the lock.
* ``EvidenceLog.checkpoint`` signs ``origin / size / root`` over every committed leaf. It
  folds stored leaf hashes into a compact range, resuming from the range it last signed,
  and refuses to sign when the stored prefix no longer hashes to the previous checkpoint.
* ``EvidenceLog.verify`` trusts nothing stored (gateway.evidence.verification).
"""

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.errors import EvidenceError, NotFound
from gateway.evidence.checks import (
    Problem,
    VerificationReport,
)
from gateway.evidence.merkle import (
    CompactRange,
    SubtreeRoots,
    consistency_ranges,
    inclusion_ranges,
    leaf_hash,
)
from gateway.evidence.signed_note import (
    NoteSigner,
    NoteVerifier,
    checkpoint_text,
    sign_note,
)
from gateway.evidence.verification import verify_log
from gateway.store.cluster_tables import EvidenceStaged
from gateway.store.database import STAGE_EVIDENCE, Database
from gateway.store.driver_sql import bulk_insert
from gateway.store.tables import (
    Checkpoint,
    DeliveryAttempt,
    EvidenceLeaf,
    InboundMessage,
    OutboxItem,
)

LEAVES = EvidenceLeaf.__table__  # type: ignore[attr-defined]
STAGED = EvidenceStaged.__table__  # type: ignore[attr-defined]
CHECKPOINTS = Checkpoint.__table__  # type: ignore[attr-defined]
OUTBOX = OutboxItem.__table__  # type: ignore[attr-defined]
INBOUND = InboundMessage.__table__  # type: ignore[attr-defined]
ATTEMPTS = DeliveryAttempt.__table__  # type: ignore[attr-defined]

# PostgreSQL advisory lock keys (signed 64-bit): one sequences appends, one checkpoints.
APPEND_LOCK_KEY = 0x4556_4C4F_4701_0001
CHECKPOINT_LOCK_KEY = 0x4556_4C4F_4701_0002

_STREAM_BATCH = 10_000
SEQUENCE_BATCH = 20_000
"""Staged leaves moved into the log by one sequencer transaction at most."""
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


@dataclass(frozen=True)
class LeafInput:
    """One fact to attest: ``kind`` (packet, receipt, inbound, allocation, recall, action...),
    ``ref`` (the attested row, e.g. ``outbox:42``) and JSON-serialisable ``fields``."""

    kind: str
    ref: str
    fields: Mapping[str, object]

    def body(self) -> bytes:
        """The canonical JSON bytes that are hashed into the tree."""
        if "kind" in self.fields or "ref" in self.fields:
            raise ValueError("leaf fields cannot override 'kind' or 'ref'")
        return _CANONICAL.encode({"kind": self.kind, "ref": self.ref, **self.fields}).encode()


async def append_leaves(
    conn: AsyncConnection, leaves: Sequence[LeafInput], *, now: datetime
) -> list[int]:
    """Write ``leaves`` in the caller's open transaction (never commits) with one batched
    insert. Return their consecutive ``seq`` numbers, or ``[]`` when they were staged for
    the sequencer (PostgreSQL with staging on: no lock taken). Without staging, PostgreSQL
    takes the evidence advisory lock, which other appenders wait for until the caller
    commits."""
    return await append_bodies(
        conn, [(leaf.kind, leaf.ref, leaf.body()) for leaf in leaves], now=now
    )


async def append_leaves_sequenced(
    conn: AsyncConnection, leaves: Sequence[LeafInput], *, now: datetime
) -> list[int]:
    """``append_leaves`` that always numbers the leaves in the caller's transaction (under
    the writer lock, held to commit), for a caller that stores a leaf's seq in its own row."""
    return await _append_numbered(
        conn, [(leaf.kind, leaf.ref, leaf.body()) for leaf in leaves], now=now
    )


async def append_bodies(
    conn: AsyncConnection, leaves: Sequence[tuple[str, str, bytes]], *, now: datetime
) -> list[int]:
    """``append_leaves`` for (kind, ref, canonical body) triples whose bodies were already
    encoded (``LeafInput.body`` or a ``gateway.evidence.leaf_template.LeafTemplate``)."""
    if not leaves:
        return []
    if conn.info.get(STAGE_EVIDENCE):
        await bulk_insert(
            conn,
            STAGED,
            ("kind", "ref", "body", "leaf_hash"),
            [(kind, ref, body, leaf_hash(body)) for kind, ref, body in leaves],
            constants={"created_at": now},
        )
        return []
    return await _append_numbered(conn, leaves, now=now)


async def _append_numbered(
    conn: AsyncConnection, leaves: Sequence[tuple[str, str, bytes]], *, now: datetime
) -> list[int]:
    if not leaves:
        return []
    # Hashing happens before the lock: on PostgreSQL it is held until the caller commits.
    rows = [(kind, ref, body, leaf_hash(body)) for kind, ref, body in leaves]
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(APPEND_LOCK_KEY)))
    start = await _leaf_count(conn)
    await bulk_insert(
        conn,
        LEAVES,
        ("seq", "kind", "ref", "body", "leaf_hash"),
        [(seq, *row) for seq, row in enumerate(rows, start)],
        constants={"created_at": now},
    )
    return list(range(start, start + len(rows)))


# One statement: take the oldest committed staged leaves out of staging and append them,
# numbered in staging order after the log's last leaf. Run under the writer lock.
_SEQUENCE_SQL = sa.text(
    """
    WITH moved AS (
        DELETE FROM evidence_staged
        WHERE id IN (SELECT id FROM evidence_staged ORDER BY id LIMIT :batch)
        RETURNING id, kind, ref, body, leaf_hash, created_at
    ), base AS (
        SELECT coalesce(max(seq) + 1, 0) AS next FROM evidence_leaves
    )
    INSERT INTO evidence_leaves (seq, kind, ref, body, leaf_hash, created_at)
    SELECT base.next + row_number() OVER (ORDER BY moved.id) - 1,
           moved.kind, moved.ref, moved.body, moved.leaf_hash, moved.created_at
    FROM moved CROSS JOIN base
    """
)


async def sequence_staged(db: Database, *, batch: int = SEQUENCE_BATCH) -> int:
    """Move committed staged leaves (at most ``batch``, oldest first) into the log, in one
    transaction under the writer lock; return how many. 0 on SQLite, which never stages.
    Safe to call from any process at any time: the lock orders the callers."""
    if db.is_sqlite:
        return 0
    async with db.transaction() as conn:
        waiting = await conn.execute(sa.select(STAGED.c.id).limit(1))
        if waiting.first() is None:
            return 0
        await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(APPEND_LOCK_KEY)))
        moved = await conn.execute(_SEQUENCE_SQL, {"batch": batch})
        return int(moved.rowcount)


async def sequence_all(db: Database) -> int:
    """``sequence_staged`` until nothing committed waits; return how many leaves moved."""
    total = 0
    while moved := await sequence_staged(db):
        total += moved
    return total


async def staged_count(db: Database) -> int:
    """Committed leaves waiting for the sequencer (what to watch on a cluster)."""
    async with db.snapshot() as conn:
        return int(
            (await conn.execute(sa.select(sa.func.count()).select_from(STAGED))).scalar_one()
        )


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """Leaf ``seq`` is in the tree of ``tree_size`` leaves with ``root``; ``note`` is the
    signed checkpoint at that size, if one exists. Check it with merkle.verify_inclusion."""

    seq: int
    tree_size: int
    body: bytes
    leaf_hash: bytes
    path: tuple[bytes, ...]
    root: bytes
    note: str | None


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    """The tree of ``old_size`` leaves is a prefix of the tree of ``new_size`` leaves."""

    old_size: int
    new_size: int
    old_root: bytes
    new_root: bytes
    path: tuple[bytes, ...]


class EvidenceLog:
    """Checkpoints, proofs and verification over the evidence leaves in ``db``."""

    def __init__(self, db: Database, signer: NoteSigner, origin: str) -> None:
        checkpoint_text(origin, 0, bytes(32))  # validates the origin early
        self._db = db
        self._signer = signer
        self._origin = origin
        self._signed: CompactRange | None = None  # the range of our last checkpoint

    @property
    def origin(self) -> str:
        return self._origin

    def sign(self, text: str) -> str:
        """``text`` as a note signed with the log's key (the lender's), e.g. a bundle's
        manifest: verifiable with the same published key as the checkpoints."""
        return sign_note(text, self._signer)

    async def checkpoint(self, *, now: datetime) -> Checkpoint | None:
        """Sign a checkpoint over every committed leaf if the tree grew since the last one;
        None if it did not. Raise EvidenceError rather than sign a tree that is not an
        extension of the previous checkpoint. Staged leaves committed before the call are
        sequenced first."""
        await sequence_all(self._db)
        async with self._db.transaction() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(CHECKPOINT_LOCK_KEY)))
            previous = (
                await conn.execute(
                    sa.select(CHECKPOINTS.c.id, CHECKPOINTS.c.tree_size, CHECKPOINTS.c.root_hash)
                    .order_by(CHECKPOINTS.c.tree_size.desc(), CHECKPOINTS.c.id.desc())
                    .limit(1)
                )
            ).first()
            size = await _leaf_count(conn)
            previous_size = 0 if previous is None else int(previous.tree_size)
            if size < previous_size:
                raise EvidenceError(
                    f"checkpoint {previous.id if previous else ''} covers {previous_size} "
                    f"leaves but only {size} remain; run the evidence verifier"
                )
            if size == previous_size:
                return None
            cached = self._signed
            compact = cached.copy() if cached and cached.size <= previous_size else CompactRange()
            if previous is not None:
                await _fold_hashes(conn, compact, previous_size)
                if compact.root() != previous.root_hash:
                    raise EvidenceError(
                        f"stored leaves 0..{previous_size - 1} no longer hash to the root of "
                        f"checkpoint {previous.id}; refusing to sign; run the evidence verifier"
                    )
            await _fold_hashes(conn, compact, size)
            root_hash = compact.root()
            note = sign_note(checkpoint_text(self._origin, size, root_hash), self._signer)
            row = {"tree_size": size, "root_hash": root_hash, "note": note, "created_at": now}
            new_id = (
                await conn.execute(CHECKPOINTS.insert().returning(CHECKPOINTS.c.id), [row])
            ).scalar_one()
        self._signed = compact
        return Checkpoint(id=new_id, tree_size=size, root_hash=root_hash, note=note, created_at=now)

    async def inclusion_proof(self, seq: int, tree_size: int | None = None) -> InclusionProof:
        """Prove leaf ``seq`` is in the tree of ``tree_size`` leaves (default: the latest
        checkpoint). Raise NotFound if the leaf or the tree does not exist."""
        [proof] = await self.inclusion_proofs([seq], tree_size)
        return proof

    async def inclusion_proofs(
        self, seqs: Sequence[int], tree_size: int | None = None
    ) -> list[InclusionProof]:
        """``inclusion_proof`` of each of ``seqs``, from one streamed read of the log: the
        subtree roots the proofs share are computed once, holding O(log n) hashes
        (merkle.SubtreeRoots)."""
        if not seqs:
            return []
        async with self._db.snapshot() as conn:
            size, note = await _resolve_size(conn, tree_size)
            outside = [s for s in seqs if not 0 <= s < size]
            if outside:
                raise NotFound(f"evidence leaf {outside[0]} is not in the tree of size {size}")
            leaves = {
                int(r.seq): r
                for r in await conn.execute(
                    sa.select(LEAVES.c.seq, LEAVES.c.body, LEAVES.c.leaf_hash).where(
                        LEAVES.c.seq.in_(sorted(set(seqs)))
                    )
                )
            }
            paths = {seq: inclusion_ranges(seq, size) for seq in seqs}
            builder = SubtreeRoots(size, [(0, size), *(r for p in paths.values() for r in p)])
            await _stream_hashes(conn, 0, size, builder.feed)
        roots = builder.roots()
        tree_root = roots[(0, size)]
        return [
            InclusionProof(
                seq,
                size,
                leaves[seq].body,
                leaves[seq].leaf_hash,
                tuple(roots[r] for r in paths[seq]),
                tree_root,
                note,
            )
            for seq in seqs
        ]

    async def consistency_proof(
        self, old_size: int, new_size: int | None = None
    ) -> ConsistencyProof:
        """Prove the tree of ``old_size`` leaves is a prefix of the tree of ``new_size``
        leaves (default: the latest checkpoint)."""
        async with self._db.snapshot() as conn:
            size, _note = await _resolve_size(conn, new_size)
            if not 0 <= old_size <= size:
                raise NotFound(f"tree size {old_size} is not a prefix of tree size {size}")
            wanted = consistency_ranges(old_size, size)
            builder = SubtreeRoots(size, [*wanted, (0, size)])
            old = CompactRange()

            def feed(hashes: list[bytes]) -> None:
                builder.feed(hashes)
                old.extend(hashes)

            await _stream_hashes(conn, 0, old_size, feed)
            await _stream_hashes(conn, old_size, size, builder.feed)
        roots = builder.roots()
        path = tuple(roots[r] for r in wanted)
        return ConsistencyProof(old_size, size, old.root(), roots[(0, size)], path)

    async def verify(self, verifiers: Sequence[NoteVerifier]) -> VerificationReport:
        """Recompute and check everything (gateway.evidence.verification). Never raises for a
        verification failure: every problem goes into the report. Staged leaves committed
        before the call are sequenced first."""
        await sequence_all(self._db)
        return await verify_log(self._db, self._origin, verifiers)


async def _leaf_count(conn: AsyncConnection) -> int:
    last = (await conn.execute(sa.select(sa.func.max(LEAVES.c.seq)))).scalar()
    return 0 if last is None else int(last) + 1


async def _resolve_size(conn: AsyncConnection, tree_size: int | None) -> tuple[int, str | None]:
    """The requested tree size (default: the latest checkpoint's) and its signed note."""
    query = sa.select(CHECKPOINTS.c.tree_size, CHECKPOINTS.c.note)
    if tree_size is None:
        query = query.order_by(CHECKPOINTS.c.tree_size.desc(), CHECKPOINTS.c.id.desc())
    else:
        query = query.where(CHECKPOINTS.c.tree_size == tree_size).order_by(CHECKPOINTS.c.id)
    row = (await conn.execute(query.limit(1))).first()
    if tree_size is None:
        if row is None:
            raise NotFound("the evidence log has no checkpoint yet")
        return int(row.tree_size), row.note
    if tree_size > await _leaf_count(conn):
        raise NotFound(f"the evidence log has fewer than {tree_size} leaves")
    return tree_size, None if row is None else row.note


async def _stream_hashes(
    conn: AsyncConnection, start: int, stop: int, sink: Callable[[list[bytes]], None]
) -> None:
    """Pass stored leaf hashes ``start..stop-1`` to ``sink`` in seq order, in batches."""
    if start >= stop:
        return
    stmt = (
        sa.select(LEAVES.c.seq, LEAVES.c.leaf_hash)
        .where(LEAVES.c.seq >= start, LEAVES.c.seq < stop)
        .order_by(LEAVES.c.seq)
        .execution_options(yield_per=_STREAM_BATCH)
    )
    expected = start
    result = await conn.stream(stmt)
    async for batch in result.partitions(_STREAM_BATCH):
        if batch[0][0] != expected or batch[-1][0] != expected + len(batch) - 1:
            raise EvidenceError(f"evidence leaves are not contiguous after leaf {expected - 1}")
        sink([row[1] for row in batch])
        expected += len(batch)
    if expected != stop:
        raise EvidenceError(f"evidence leaves end at {expected}, expected {stop}")


async def _fold_hashes(conn: AsyncConnection, compact: CompactRange, stop: int) -> None:
    await _stream_hashes(conn, compact.size, stop, compact.extend)


__all__ = [
    "APPEND_LOCK_KEY",
    "CHECKPOINT_LOCK_KEY",
    "SEQUENCE_BATCH",
    "ConsistencyProof",
    "EvidenceLog",
    "InclusionProof",
    "LeafInput",
    "Problem",
    "VerificationReport",
    "append_bodies",
    "append_leaves",
    "append_leaves_sequenced",
    "sequence_all",
    "sequence_staged",
    "staged_count",
]
