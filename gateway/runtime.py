"""The long-running process: the web app, the dispatcher and the schedulers, under one
TaskGroup, stopped cleanly by one event.

Any number of these processes may share one PostgreSQL database: each serves the web app
and runs the dispatcher; the schedulers and pollers run in the one process holding the
``schedulers`` lease, the evidence sequencer in the one holding ``evidence-sequencer``
(gateway.cluster), and another process takes a role over when its holder dies.
"""

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

from aiohttp import web

from adapters.email.mailbox import MailboxReader, build_mailbox_reader
from gateway.bootstrap import Gateway
from gateway.clock import to_datetime
from gateway.cluster import SCHEDULERS, SEQUENCER, Lease, LeaseStore, holder_id, lead
from gateway.config.agencies import EmailAgency
from gateway.dispatch.dispatcher import Dispatcher
from gateway.errors import GatewayError, RunInProgress
from gateway.evidence.log import SEQUENCE_BATCH, sequence_all, sequence_staged
from gateway.monitoring.polls import metered
from gateway.ports import InboundPoller, PollingChannel
from gateway.reconciliation.recorder import ArrivalPolicy
from gateway.reconciliation.sla import run_sla_checks
from gateway.register.lapse import check_register
from gateway.server import create_app
from gateway.store.database import Database

log = logging.getLogger(__name__)


@asynccontextmanager
async def web_server(gateway: Gateway, host: str, port: int) -> AsyncIterator[str]:
    """Serve the app; yields its base URL (the real port when ``port`` is 0)."""
    await gateway.inbound.start()
    console = gateway.console_services() if gateway.settings.console.enabled else None
    app = create_app(
        inbound=gateway.inbound,
        db=gateway.db,
        metrics_=gateway.metrics,
        console=console,
        documents=gateway.document_fetch,
        statement_documents=gateway.statement_fetch,
        document_links=links.handle if (links := gateway.document_links()) else None,
        verification=gateway.verification if gateway.settings.verification.enabled else None,
        lender_name=lender_name(gateway),
    )
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    real_port = sockets[0].getsockname()[1] if sockets else port
    try:
        yield f"http://{host}:{real_port}"
    finally:
        await runner.cleanup()


def lender_name(gateway: Gateway) -> str:
    """The lender's registered name, shown above the public verification form."""
    registration = gateway.settings.lender.registration
    return registration.legal_name if registration is not None else ""


async def notice_scan(gateway: Gateway) -> dict[str, object]:
    """Queue the borrower notices that are due (gateway.notices.scan)."""
    return (await gateway.notices.scan()).as_dict()


def bound_socket(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket; binding it ourselves tells us the real port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise GatewayError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sock


async def every(
    seconds: float, stop: asyncio.Event, job: Callable[[], Awaitable[object]], name: str
) -> None:
    """Run ``job`` every ``seconds`` until ``stop``; a failing run is logged, not fatal."""
    while not stop.is_set():
        try:
            await job()
        except Exception:
            log.exception("scheduled job %s failed", name)
        try:
            await asyncio.wait_for(stop.wait(), timeout=seconds)
        except TimeoutError:
            pass


async def checkpoint(gateway: Gateway) -> None:
    await gateway.evidence.checkpoint(now=to_datetime(gateway.clock.now()))


async def sla_checks(gateway: Gateway) -> dict[str, int]:
    """Ask for deletion on placements that ended, purge packet bytes past their retention,
    then breach what is overdue."""
    swept = await gateway.request_deletions()
    if swept.requested:
        log.info("deletion requested for %d ended placement(s)", swept.requested)
    purged = await gateway.purge_packets()
    if purged:
        log.info("purged the bytes of %d packet(s) past their retention", purged)
    lifted = await gateway.concessions().lift_pauses()
    if lifted:
        log.info("lifted %d pause(s) past their last day", len(lifted))
    async with gateway.db.transaction() as conn:
        return await run_sla_checks(conn, now=to_datetime(gateway.clock.now()))


async def placement_terms(gateway: Gateway) -> dict[str, int]:
    """Send the expiry warnings that are due, recall what has expired, then scan for
    escalations to the legal tier (what ``placements expire`` and the escalation scan do)."""
    expiry = await gateway.expiry.run()
    scan = await gateway.escalations.scan()
    return {
        "warned": expiry.warned.total(),
        "expired": expiry.expired.total(),
        "escalations_proposed": len(scan.proposed),
        "escalated": scan.recalled.total(),
    }


async def register_check(gateway: Gateway) -> dict[str, object]:
    """Expiry reminders and lapse recalls of the agency register (what `register check`
    does; gateway.register.lapse)."""
    gate = gateway.placements.register
    if gate is None:
        return {}
    report = await check_register(
        gateway.db,
        gateway.placements,
        gateway.settings.agency_register,
        gate,
        now=to_datetime(gateway.clock.now()),
    )
    return report.as_dict()


async def evaluations_due(gateway: Gateway) -> dict[str, object]:
    """The annual evaluation of each agency whose contract ends within ``[evaluation]
    before_contract_end_days`` and has no recent report (what `evaluation report --due`
    does; gateway.evaluation.service)."""
    service = gateway.evaluations()
    now = to_datetime(gateway.clock.now())
    due = await service.due(sorted(gateway.agencies), today=now.date())
    if not due:
        return {"generated": []}
    ids = await service.generate(
        due, end=now.date(), trigger="contract_end", actor="schedule", now=now
    )
    return {"generated": ids}


async def reconciliation_run(gateway: Gateway) -> dict[str, Any] | None:
    """One incremental run of the reconciliation engine (what ``agency-gateway reconcile``
    does). While another run is in progress (or was interrupted and waits for
    ``reconcile --resume``) the scheduled run is skipped with a warning."""
    try:
        report = await gateway.recon_engine().run()
    except RunInProgress as exc:
        log.warning("scheduled reconciliation skipped: %s", exc)
        return None
    gateway.metrics.reconciled(report.seconds)
    return report.as_dict()


def mailbox_readers(gateway: Gateway) -> list[MailboxReader]:
    """One IMAP reader per law firm with an ``[email.imap]`` section, enabled or not."""
    return [
        build_mailbox_reader(
            agency,
            base_dir=gateway.settings.base_dir,
            db=gateway.db,
            clock=gateway.clock.now,
            arrival=ArrivalPolicy.of(gateway.settings),
        )
        for agency in gateway.agencies.values()
        # Not only firms taking new cases: one whose contract ended still returns cases and
        # confirms deletions by mail.
        if isinstance(agency, EmailAgency) and agency.email.imap is not None
    ]


def channel_pollers(dispatcher: Dispatcher) -> list[InboundPoller]:
    """Pollers of channels whose agencies answer with files (SFTP result pickup)."""
    return [
        poller
        for adapter in dispatcher.adapters.values()
        if isinstance(adapter, PollingChannel)
        for poller in adapter.pollers()
    ]


async def run_workers(gateway: Gateway, stop: asyncio.Event) -> None:
    """Dispatcher plus the cluster's roles until ``stop`` is set: the schedulers and pollers
    run in the one process holding the ``schedulers`` lease, and on PostgreSQL (with
    ``[cluster] stage_evidence``) this process stages its evidence leaves and stands for the
    evidence sequencer. Every process runs the dispatcher: the outbox leases share its work."""
    cluster = gateway.settings.cluster
    dispatcher = await gateway.dispatcher()
    leases = LeaseStore(gateway.db)
    me = holder_id()
    staging = cluster.stage_evidence and not gateway.db.is_sqlite
    gateway.db.stage_evidence = staging

    async def schedules(lease: Lease, role_stop: asyncio.Event) -> None:
        await run_schedules(gateway, dispatcher, role_stop, runs=ScheduledRuns(leases, lease))

    async def sequencing(_lease: Lease, role_stop: asyncio.Event) -> None:
        await run_sequencer(gateway.db, role_stop, idle_seconds=cluster.sequence_every_seconds)

    async with asyncio.TaskGroup() as tg:
        tg.create_task(
            dispatcher.run(stop, poll_interval=gateway.settings.dispatch.poll_interval_seconds)
        )
        tg.create_task(
            lead(leases, SCHEDULERS, me, seconds=cluster.lease_seconds, stop=stop, work=schedules)
        )
        if staging:
            tg.create_task(
                lead(
                    leases, SEQUENCER, me, seconds=cluster.lease_seconds, stop=stop, work=sequencing
                )
            )
    if staging:
        # What this process staged last would otherwise wait for the next sequencer.
        try:
            await sequence_all(gateway.db)
        except Exception:
            log.exception("evidence sequencing on shutdown failed; the next sequencer will")


class ScheduledRuns:
    """Records each run of a scheduled job under the schedulers lease (``cluster_runs``:
    job, holder, fencing token, start, end), so operators see what ran where and when."""

    def __init__(self, leases: LeaseStore, lease: Lease) -> None:
        self._leases = leases
        self._lease = lease

    def recorded(
        self, name: str, job: Callable[[], Awaitable[object]]
    ) -> Callable[[], Awaitable[object]]:
        async def run() -> object:
            run_id = await self._leases.run_started(name, self._lease)
            try:
                result = await job()
            except Exception:
                await self._leases.run_finished(run_id, failed=True)
                raise
            await self._leases.run_finished(run_id, failed=False)
            return result

        return run

    async def prune(self) -> None:
        pruned = await self._leases.prune_runs()
        if pruned:
            log.info("deleted %d old scheduled-run record(s)", pruned)


async def run_schedules(
    gateway: Gateway, dispatcher: Dispatcher, stop: asyncio.Event, *, runs: ScheduledRuns
) -> None:
    """The timers and pollers of ``serve`` until ``stop`` (run by the schedulers' holder)."""
    schedules = gateway.settings.schedules
    jobs: list[tuple[float, str, Callable[[], Awaitable[object]]]] = [
        (schedules.checkpoint_every_seconds, "checkpoint", lambda: checkpoint(gateway)),
        (schedules.reconcile_every_seconds, "sla", lambda: sla_checks(gateway)),
    ]
    if schedules.engine_every_seconds > 0:
        jobs.append(
            (
                schedules.engine_every_seconds,
                "reconciliation",
                lambda: reconciliation_run(gateway),
            )
        )
    if schedules.expiry_every_seconds > 0:
        jobs.append(
            (schedules.expiry_every_seconds, "placement terms", lambda: placement_terms(gateway))
        )
    register = gateway.settings.agency_register
    if register.check_every_seconds > 0:
        jobs.append((register.check_every_seconds, "register", lambda: register_check(gateway)))
    evaluation = gateway.settings.evaluation
    if evaluation.check_every_seconds > 0:
        jobs.append(
            (evaluation.check_every_seconds, "evaluation", lambda: evaluations_due(gateway))
        )
    notices = gateway.settings.notices
    if notices.enabled and notices.scan_every_seconds > 0:
        jobs.append((notices.scan_every_seconds, "notices", lambda: notice_scan(gateway)))
    for reader in mailbox_readers(gateway):
        counted = metered(reader, gateway.metrics, source="mailbox", clock=gateway.clock.now)
        jobs.append((reader.interval_seconds, reader.name, counted.poll_once))
    for poller in channel_pollers(dispatcher):
        counted = metered(poller, gateway.metrics, source="sftp_pickup", clock=gateway.clock.now)
        jobs.append((poller.interval_seconds, poller.name, counted.poll_once))
    await runs.prune()
    async with asyncio.TaskGroup() as tg:
        for seconds, name, job in jobs:
            tg.create_task(every(seconds, stop, runs.recorded(name, job), name))


async def run_sequencer(db: Database, stop: asyncio.Event, *, idle_seconds: float) -> None:
    """Move staged evidence leaves into the log until ``stop`` (the sequencer's holder);
    look again after ``idle_seconds`` when a pass found less than a full batch."""
    while not stop.is_set():
        try:
            moved = await sequence_staged(db)
        except Exception:
            log.exception("evidence sequencing failed")
            moved = 0
        if moved < SEQUENCE_BATCH:
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=idle_seconds)


__all__ = [
    "ScheduledRuns",
    "bound_socket",
    "channel_pollers",
    "checkpoint",
    "evaluations_due",
    "every",
    "lender_name",
    "mailbox_readers",
    "notice_scan",
    "placement_terms",
    "reconciliation_run",
    "register_check",
    "run_schedules",
    "run_sequencer",
    "run_workers",
    "sla_checks",
    "web_server",
]
