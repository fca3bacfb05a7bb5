"""The batch reconciliation engine: one run, its passes in order, each resumable.

Theory of operation
-------------------
A run (gateway.reconciliation.runs) fixes its inputs, then runs the passes of ``PASSES``:

1. ``events``: every event since the last run (with the history of the debtors it
   touches) against our placements, then the contact attempts against the contact rules:
   set-based queries in DuckDB over the store read in place (gateway.reconciliation.columnar;
   gateway.reconciliation.event_audit and gateway.reconciliation.contact_rules are the pure
   reference it is tested against). The breaks are committed window by window of
   ``batch_events`` event ids, each window with its checkpoint.
2. ``payments``: the three-way match with the lender's payment feed
   (gateway.reconciliation.three_way), from the payments the events pass saw; then, in the
   same transaction, the attribution of every receipt not yet attributed to the placement
   that held its case (gateway.settlement.attribution_pass), with its evidence leaf and the
   ``payment.direct`` / ``payment.attributed`` packets of ``lender_collects`` agencies.
3. ``statements``: every agency inventory statement not yet reconciled
   (gateway.reconciliation.statements).
4. ``expectations``: statement expectations for each agency's last complete period, then
   the SLA checks: overdue acknowledgements, first activity, promised payments (summing
   instalments) and statements become breaks.

Every break is written with ``ON CONFLICT DO NOTHING`` on its dedupe key, so running again,
resuming, or the incremental path having raised it first never makes a duplicate. The run
counts, per section, the records classified, the breaks found and the breaks new.

The events pass runs in a worker process of its own (gateway.reconciliation.columnar_worker:
DuckDB's copy of SQLite must not share a process with the gateway's); only its breaks, counts
and the payments come back. While it works, this process reads what needs no answer of it:
the re-check of promises and settled closes against approved terms
(gateway.concessions.audit) and the attribution of the receipts, which the payments pass
then records (a run resumed after its events pass works the attribution out there). Two
processes, two CPUs; nothing is written out of its pass or out of order. The cyclic
garbage collector is paused for the run (gateway.heap).
"""

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.clock import to_datetime
from gateway.concessions import audit as concession_audit
from gateway.config.agencies import AgencyConfig
from gateway.config.settings import ReconciliationSection
from gateway.crashpoints import crash_point
from gateway.evidence.log import EvidenceLog, LeafInput, append_leaves
from gateway.heap import collector_paused
from gateway.ports import Clock
from gateway.reconciliation import (
    columnar_worker,
    runs as recon_runs,
    statement_pass as statement_reconciler,
    three_way,
)
from gateway.reconciliation.columnar import EventPass
from gateway.reconciliation.contact_rules import ContactRules
from gateway.reconciliation.event_audit import Break
from gateway.reconciliation.match_inputs import Tolerance
from gateway.reconciliation.recorder import (
    insert_expectations,
    insert_mismatches_by_kind,
)
from gateway.reconciliation.runs import PASSES, Run
from gateway.reconciliation.sla import run_sla_checks
from gateway.settlement import attribution_pass
from gateway.store.database import Database
from gateway.store.recon_tables import PaymentFeed

log = logging.getLogger(__name__)

FEEDS = PaymentFeed.__table__  # type: ignore[attr-defined]


@dataclass(slots=True)
class RunReport:
    run: Run
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {**self.run.as_dict(), "seconds": {k: round(v, 3) for k, v in self.seconds.items()}}


class ReconEngine:
    """Runs batch reconciliation (see the module docstring).

    Args:
        db: the database.
        agencies: agency configs by id (contracts, report windows, statement periods).
        settings: the ``[reconciliation]`` settings.
        clock: time source (``as_of`` of new runs).
        evidence: when given, a checkpoint is signed as a run starts, so the run's inputs
            name a signed tree head covering every inbound message it reads.
    """

    def __init__(
        self,
        *,
        db: Database,
        agencies: Mapping[str, AgencyConfig],
        settings: ReconciliationSection,
        clock: Clock,
        evidence: EvidenceLog | None = None,
    ) -> None:
        self._db = db
        self._evidence = evidence
        self._agencies = agencies
        self._settings = settings
        self._clock = clock
        self._tolerance = Tolerance(
            settings.amount_tolerance_minor,
            settings.amount_tolerance_bps,
            settings.date_window_days,
        )
        self._statement_tolerance = Tolerance(
            settings.statement_tolerance_minor, settings.statement_tolerance_bps
        )
        self._contact_rules = ContactRules.from_settings(settings)
        self._audits: dict[int, EventPass] = {}
        self._credited: dict[int, attribution_pass.AttributionOutcome] = {}

    def describe(self) -> dict[str, Any]:
        """The settings a run applies (hashed into its ``rules_sha256``)."""
        return {
            "reconciliation": self._settings.model_dump(mode="json"),
            "agencies": {
                a.id: a.settlement.model_dump(mode="json")
                for a in sorted(self._agencies.values(), key=lambda a: a.id)
            },
        }

    async def run(self, *, dry_run: bool = False, full: bool = False) -> RunReport:
        """Start a new run and take it to the end."""
        now = to_datetime(self._clock.now())
        if self._evidence is not None:
            await self._evidence.checkpoint(now=now)
        run = await recon_runs.start(
            self._db, settings=self.describe(), dry_run=dry_run, full=full, now=now
        )
        return await self._drive(run)

    async def resume(self, run_id: int) -> RunReport:
        """Take a crashed or failed run up at its checkpoint."""
        return await self._drive(await recon_runs.resume(self._db, run_id))

    async def _drive(self, run: Run) -> RunReport:
        report = RunReport(run)
        steps = {
            "events": self._events,
            "payments": self._payments,
            "statements": self._statements,
            "expectations": self._expectations,
        }
        try:
            with collector_paused():
                for name in PASSES[PASSES.index(run.next_pass) : -1]:
                    started = time.perf_counter()
                    await steps[name](run)
                    report.seconds[name] = time.perf_counter() - started
        except Exception as exc:
            self._audits.pop(run.id, None)
            self._credited.pop(run.id, None)
            await recon_runs.finish(
                self._db, run, now=self._now(), error=f"{type(exc).__name__}: {exc}"
            )
            raise
        if not run.dry_run:
            async with self._db.transaction() as conn:
                await append_leaves(
                    conn,
                    [
                        LeafInput(
                            kind="recon_run",
                            ref=f"run:{run.id}",
                            fields={
                                "run_id": run.id,
                                "rules_sha256": run.rules_sha256,
                                "inputs_sha256": recon_runs.digest(run.inputs),
                                "counts_sha256": recon_runs.digest(run.counts),
                            },
                        )
                    ],
                    now=self._now(),
                )
        await recon_runs.finish(self._db, run, now=self._now())
        log.info("reconciliation run %d %s: %s", run.id, run.state, dict(run.counts.get("new", {})))
        return report

    def _now(self) -> datetime:
        return to_datetime(self._clock.now())

    async def _commit(
        self,
        run: Run,
        breaks: Sequence[tuple[str, Break]],
        *,
        checkpoint: dict[str, Any],
        extra: Callable[[AsyncConnection], Awaitable[None]] | None = None,
    ) -> None:
        """Write breaks (and whatever ``extra(conn)`` writes) with the run's checkpoint."""
        run.count("found", Counter(b.draft.kind for _, b in breaks))
        async with recon_runs.unit(self._db, dry_run=run.dry_run) as conn:
            if extra is not None:
                await extra(conn)
            new = await insert_mismatches_by_kind(
                conn,
                ((key, b.draft, b.agency_id, b.event_id, None) for key, b in breaks),
                now=self._now(),
            )
            run.count("new", new)
            crash_point("reconcile.before_checkpoint")
            await recon_runs.save(conn, run, checkpoint=checkpoint)

    # 1. events and contact rules

    async def _events(self, run: Run) -> None:
        await self._scan(run, commit=True)

    async def _scan(self, run: Run, *, commit: bool) -> EventPass:
        """The events pass in DuckDB (gateway.reconciliation.columnar). With ``commit``,
        write the breaks window by window of ``batch_events`` event ids, each with its
        checkpoint, then the contact violations; without, only derive the payments the
        three-way match reads (a run resumed after this pass)."""
        resume_after = (
            int(run.checkpoint.get("after_id", run.after_event_id)) if commit else run.upto_event_id
        )
        window = self._settings.batch_events
        job = columnar_worker.EventsJob(
            url=self._db.url,
            run_id=run.id,
            after=run.after_event_id,
            upto=run.upto_event_id,
            emit_after=resume_after,
            window=window,
            rules=self._contact_rules if commit else None,
        )
        if not commit:
            return await columnar_worker.run_events_pass(job)
        # While the worker's DuckDB works, this process reads what needs no answer of it:
        # promises and settled closes against approved terms (gateway.concessions.audit),
        # and the attribution of the receipts the payments pass records. Nothing here
        # writes; the commits below come in the same order as ever.
        pending = asyncio.ensure_future(columnar_worker.run_events_pass(job))
        try:
            async with self._db.snapshot() as read:
                terms = await concession_audit.term_breaks(
                    read, after_event_id=run.after_event_id, upto_event_id=run.upto_event_id
                )
                self._credited[run.id] = await self._attribute(read, run)
        except BaseException:
            pending.cancel()
            with suppress(Exception, asyncio.CancelledError):
                await pending
            raise
        found = await pending
        for w in sorted(found.breaks.keys() | found.counts.keys()):
            run.count("classified", found.counts.get(w, Counter()))
            after_id = min((w + 1) * window - 1, run.upto_event_id)
            await self._commit(
                run,
                [(b.dedupe_key, b) for b in found.breaks.get(w, ())],
                checkpoint={"pass": "events", "after_id": after_id},
            )
        violations = [
            (b.dedupe_key, b) for b in found.violations if (b.event_id or 0) > run.after_event_id
        ]
        run.count("contacts", {"checked": found.contacts, "violations": len(violations)})
        # Promises and settled closes against approved terms (read above), committed with
        # the contact violations and the same checkpoint.
        violations += [(key, Break(eid, agency, draft)) for key, draft, agency, eid, _ in terms]
        await self._commit(run, violations, checkpoint={"pass": "payments"})
        self._audits[run.id] = found
        return found

    # 2. the lender's payment feed

    async def _payments(self, run: Run) -> None:
        audit = self._audits.pop(run.id, None) or await self._scan(run, commit=False)
        async with self._db.snapshot() as read:
            payments = await three_way.agency_payments(
                read, audit, after_event_id=run.after_event_id, agency_ids=sorted(self._agencies)
            )
            del audit  # its placements and books are not needed past here: free them
            outcome = await three_way.judge(
                read,
                payments,
                run_id=run.id,
                upto_payment_id=run.upto_payment_id,
                tolerance=self._tolerance,
                agencies=self._agencies,
                as_of=run.as_of,
                now=self._now(),
            )
            feeds = []
            if outcome.feeds:
                F = FEEDS.c
                rows = await read.execute(
                    sa.select(F.id, F.source, F.sha256).where(F.id.in_(sorted(outcome.feeds)))
                )
                feeds = [{"feed_id": i, "source": s, "sha256": h} for i, s, h in rows.all()]
            credited = self._credited.pop(run.id, None)
            if credited is None:  # a run resumed after its events pass
                credited = await self._attribute(read, run)
        run.inputs["payment_feeds"] = feeds
        run.count("matches", outcome.counts())
        run.count("attributions", credited.counts())
        now = self._now()

        async def links(conn: AsyncConnection) -> None:
            await three_way.write(conn, outcome, now=now)
            await attribution_pass.record(conn, credited, run_id=run.id, now=now)

        await self._commit(run, outcome.breaks, checkpoint={"pass": "statements"}, extra=links)

    async def _attribute(
        self, read: AsyncConnection, run: Run
    ) -> attribution_pass.AttributionOutcome:
        """The receipts of the run not attributed yet, attributed (no writes): worked out
        while the events pass runs, recorded by the payments pass; the packets it renders
        carry the time it was worked out."""
        return await attribution_pass.attribute_receipts(
            read,
            self._agencies,
            upto_payment_id=run.upto_payment_id,
            zone=ZoneInfo(self._settings.timezone),
            now=self._now(),
        )

    # 3. agency inventory statements

    async def _statements(self, run: Run) -> None:
        async with self._db.snapshot() as read:
            outcome = await statement_reconciler.reconcile_statements(
                read,
                sorted(self._agencies),
                upto_event_id=run.upto_event_id,
                run_id=run.id,
                tolerance=self._statement_tolerance,
                now=self._now(),
            )
        run.inputs.setdefault("statements", []).extend(outcome.inputs)
        for counts in outcome.counts:
            run.count("statements", counts)

        async def record(conn: AsyncConnection) -> None:
            await statement_reconciler.record(conn, outcome)

        await self._commit(run, outcome.breaks, checkpoint={"pass": "expectations"}, extra=record)

    # 4. expectations and SLA checks

    async def _expectations(self, run: Run) -> None:
        due = statement_reconciler.statements_due(self._agencies.values(), run.as_of.date())
        async with recon_runs.unit(self._db, dry_run=run.dry_run) as conn:
            await insert_expectations(conn, due, now=run.as_of)
            await statement_reconciler.meet_statement_expectations(
                conn, run.inputs.get("statements", [])
            )
            breaches = await run_sla_checks(conn, now=run.as_of)
            run.count("found", breaches)
            run.count("new", breaches)
            await recon_runs.save(conn, run, checkpoint={"pass": "done"})


__all__ = ["ReconEngine", "RunReport"]
