"""Reconciliation run records: what a run read, what it found, how far it got.

Theory of operation
-------------------
``start`` fixes a run's inputs in one transaction: the events after the last completed run
(``after_event_id``) up to the newest one now (``upto_event_id``), the lender receipts up to
the newest (``upto_payment_id``), and the instant the run judges windows against
(``as_of``). Those bounds, the rules and settings (hashed into ``rules_sha256``) and the
hashes of the inputs (the evidence checkpoint that covers every stored inbound message, the
payment feed files, the statements) are stored on the run, so a run can be explained later
and a resumed run reads exactly what the first attempt read.

The passes run in ``PASSES`` order. Each commits its writes together with the run's
``checkpoint`` (the next pass to run and, inside the events pass, the last event id done)
and its running ``counts``. ``resume`` picks a crashed or failed run up at its checkpoint.

A dry run does everything a run does inside transactions that are rolled back, so its
counts are exactly what a real run would write; only the run record itself is kept.
"""

import hashlib
import json
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.errors import GatewayError, NotFound, RunInProgress
from gateway.reconciliation.kinds import RULE_VERSION
from gateway.store.database import Database
from gateway.store.recon_tables import LenderPayment, ReconRun
from gateway.store.tables import AgencyEventRow, Checkpoint

RUNS = ReconRun.__table__  # type: ignore[attr-defined]
EVENTS = AgencyEventRow.__table__  # type: ignore[attr-defined]
RECEIPTS = LenderPayment.__table__  # type: ignore[attr-defined]
CHECKPOINTS = Checkpoint.__table__  # type: ignore[attr-defined]
R = RUNS.c

PASSES: tuple[str, ...] = ("events", "payments", "statements", "expectations", "done")


def canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def digest(value: object) -> str:
    return hashlib.sha256(canonical(value).encode()).hexdigest()


@dataclass(slots=True)
class Run:
    """A run as stored; ``counts`` maps a section (``found``, ``new``, ``classified``,
    ``matches``, ...) to counts by kind."""

    id: int
    state: str
    dry_run: bool
    after_event_id: int
    upto_event_id: int
    upto_payment_id: int
    as_of: datetime
    started_at: datetime
    rules_sha256: str
    settings: dict[str, Any]
    inputs: dict[str, Any]
    checkpoint: dict[str, Any]
    counts: dict[str, Counter[str]] = field(default_factory=dict)
    resumes: int = 0
    finished_at: datetime | None = None
    error: str | None = None

    @property
    def next_pass(self) -> str:
        return str(self.checkpoint.get("pass", PASSES[0]))

    def count(self, section: str, counts: Mapping[str, int]) -> None:
        bucket = self.counts.setdefault(section, Counter())
        bucket.update({k: v for k, v in counts.items() if v})

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.id,
            "state": self.state,
            "dry_run": self.dry_run,
            "rule_version": RULE_VERSION,
            "rules_sha256": self.rules_sha256,
            "events": {"after_id": self.after_event_id, "upto_id": self.upto_event_id},
            "upto_payment_id": self.upto_payment_id,
            "as_of": self.as_of.isoformat(),
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "checkpoint": self.checkpoint,
            "resumes": self.resumes,
            "inputs": self.inputs,
            "counts": {k: dict(sorted(v.items())) for k, v in sorted(self.counts.items())},
            "settings": self.settings,
            "error": self.error,
        }


def _from_row(row: RowMapping) -> Run:
    counts = {k: Counter(v) for k, v in json.loads(row["counts"]).items()}
    return Run(
        id=row["id"],
        state=row["state"],
        dry_run=row["dry_run"],
        after_event_id=row["after_event_id"],
        upto_event_id=row["upto_event_id"],
        upto_payment_id=row["upto_payment_id"],
        as_of=row["as_of"],
        started_at=row["started_at"],
        rules_sha256=row["rules_sha256"],
        settings=json.loads(row["settings"]),
        inputs=json.loads(row["inputs"]),
        checkpoint=json.loads(row["checkpoint"]),
        counts=counts,
        resumes=row["resumes"],
        finished_at=row["finished_at"],
        error=row["error"],
    )


async def start(
    db: Database, *, settings: Mapping[str, Any], dry_run: bool, full: bool, now: datetime
) -> Run:
    """Record a new run and fix its inputs (see module doc). ``full`` re-reads every event
    instead of those after the last completed run. Refused while another (not dry) run is
    running: two runs at once could consume the same records."""
    async with db.transaction() as conn:
        if not dry_run:
            busy = (
                await conn.execute(
                    sa.select(R.id).where(R.state == "running", R.dry_run.is_(False)).limit(1)
                )
            ).scalar()
            if busy is not None:
                raise RunInProgress(
                    f"reconciliation run {busy} is still running (or was interrupted); "
                    f"wait for it, or continue it with: agency-gateway reconcile --resume {busy}"
                )
        after = 0
        if not full:
            after = (
                await conn.execute(
                    sa.select(sa.func.max(R.upto_event_id)).where(
                        R.state == "completed", R.dry_run.is_(False)
                    )
                )
            ).scalar() or 0
        upto = (await conn.execute(sa.select(sa.func.max(EVENTS.c.id)))).scalar() or 0
        upto_payment = (await conn.execute(sa.select(sa.func.max(RECEIPTS.c.id)))).scalar() or 0
        evidence = (
            await conn.execute(
                sa.select(CHECKPOINTS.c.tree_size, CHECKPOINTS.c.root_hash)
                .order_by(CHECKPOINTS.c.tree_size.desc(), CHECKPOINTS.c.id.desc())
                .limit(1)
            )
        ).first()
        inputs: dict[str, Any] = {
            "events": {"after_id": after, "upto_id": upto},
            "evidence_checkpoint": (
                {"tree_size": evidence[0], "root_sha256": evidence[1].hex()} if evidence else None
            ),
        }
        values = {
            "state": "running",
            "dry_run": dry_run,
            "rule_version": RULE_VERSION,
            "rules_sha256": digest({"rule_version": RULE_VERSION, **settings}),
            "settings": canonical(settings),
            "inputs": canonical(inputs),
            "counts": "{}",
            "checkpoint": canonical({"pass": PASSES[0]}),
            "after_event_id": after,
            "upto_event_id": upto,
            "upto_payment_id": upto_payment,
            "as_of": now,
            "started_at": now,
            "resumes": 0,
        }
        run_id = (await conn.execute(RUNS.insert().returning(R.id), values)).scalar_one()
        row = (await conn.execute(sa.select(RUNS).where(R.id == run_id))).mappings().one()
    return _from_row(row)


async def load(db: Database, run_id: int) -> Run:
    async with db.connect() as conn:
        row = (await conn.execute(sa.select(RUNS).where(R.id == run_id))).mappings().first()
    if row is None:
        raise NotFound(f"reconciliation run {run_id} does not exist")
    return _from_row(row)


async def resume(db: Database, run_id: int) -> Run:
    """Take up a run that crashed (still ``running``) or ``failed``, at its checkpoint."""
    run = await load(db, run_id)
    if run.state == "completed":
        raise GatewayError(f"reconciliation run {run_id} is completed; nothing to resume")
    run.state, run.error, run.resumes = "running", None, run.resumes + 1
    async with db.transaction() as conn:
        await conn.execute(
            RUNS.update()
            .where(R.id == run_id)
            .values(state="running", error=None, resumes=run.resumes)
        )
    return run


async def save(conn: AsyncConnection, run: Run, *, checkpoint: dict[str, Any]) -> None:
    """Store the checkpoint, counts and inputs in the caller's transaction."""
    run.checkpoint = checkpoint
    await conn.execute(
        RUNS.update()
        .where(R.id == run.id)
        .values(
            checkpoint=canonical(checkpoint),
            counts=canonical(run.counts),
            inputs=canonical(run.inputs),
        )
    )


async def finish(db: Database, run: Run, *, now: datetime, error: str | None = None) -> None:
    """Mark the run completed, or failed with ``error``. A failed run keeps the counts and
    checkpoint of its last committed step, which is where ``resume`` starts."""
    run.state = "failed" if error else "completed"
    run.finished_at, run.error = now, error
    values: dict[str, Any] = {"state": run.state, "finished_at": now}
    if error:
        values["error"] = error[:2000]
    else:
        values.update(
            error=None,
            counts=canonical(run.counts),
            inputs=canonical(run.inputs),
            checkpoint=canonical(run.checkpoint),
        )
    async with db.transaction() as conn:
        await conn.execute(RUNS.update().where(R.id == run.id).values(**values))


async def recent(db: Database, limit: int = 20) -> list[Run]:
    async with db.connect() as conn:
        rows = (
            (await conn.execute(sa.select(RUNS).order_by(R.id.desc()).limit(limit)))
            .mappings()
            .all()
        )
    return [_from_row(r) for r in rows]


@asynccontextmanager
async def unit(db: Database, *, dry_run: bool) -> AsyncIterator[AsyncConnection]:
    """One transaction of a pass: committed, or rolled back in a dry run."""
    async with db.engine.connect() as conn:
        tx = await conn.begin()
        try:
            yield conn
        except BaseException:
            await tx.rollback()
            raise
        if dry_run:
            await tx.rollback()
        else:
            await tx.commit()


__all__ = [
    "PASSES",
    "Run",
    "canonical",
    "digest",
    "finish",
    "load",
    "recent",
    "resume",
    "save",
    "start",
    "unit",
]
