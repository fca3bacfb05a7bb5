"""The long-running process: the web app, the dispatcher and the schedulers, under one
TaskGroup, stopped cleanly by one event.
"""

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from adapters.email.mailbox import MailboxReader, build_mailbox_reader
from gateway.bootstrap import Gateway
from gateway.clock import to_datetime
from gateway.config.agencies import EmailAgency
from gateway.dispatch.dispatcher import Dispatcher
from gateway.errors import GatewayError, RunInProgress
from gateway.ports import InboundPoller, PollingChannel
from gateway.reconciliation.sla import run_sla_checks
from gateway.server import create_app

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


async def reconciliation_run(gateway: Gateway) -> dict[str, Any] | None:
    """One incremental run of the reconciliation engine (what ``agency-gateway reconcile``
    does). While another run is in progress (or was interrupted and waits for
    ``reconcile --resume``) the scheduled run is skipped with a warning."""
    try:
        report = await gateway.recon_engine().run()
    except RunInProgress as exc:
        log.warning("scheduled reconciliation skipped: %s", exc)
        return None
    return report.as_dict()


def mailbox_readers(gateway: Gateway) -> list[MailboxReader]:
    """One IMAP reader per law firm with an ``[email.imap]`` section, enabled or not."""
    return [
        build_mailbox_reader(
            agency, base_dir=gateway.settings.base_dir, db=gateway.db, clock=gateway.clock.now
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
    """Dispatcher plus schedulers until ``stop`` is set."""
    schedules = gateway.settings.schedules
    dispatcher = await gateway.dispatcher()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(
            dispatcher.run(stop, poll_interval=gateway.settings.dispatch.poll_interval_seconds)
        )
        tg.create_task(
            every(
                schedules.checkpoint_every_seconds, stop, lambda: checkpoint(gateway), "checkpoint"
            )
        )
        tg.create_task(
            every(schedules.reconcile_every_seconds, stop, lambda: sla_checks(gateway), "sla")
        )
        if schedules.engine_every_seconds > 0:
            tg.create_task(
                every(
                    schedules.engine_every_seconds,
                    stop,
                    lambda: reconciliation_run(gateway),
                    "reconciliation",
                )
            )
        if schedules.expiry_every_seconds > 0:
            tg.create_task(
                every(
                    schedules.expiry_every_seconds,
                    stop,
                    lambda: placement_terms(gateway),
                    "placement terms",
                )
            )
        notices = gateway.settings.notices
        if notices.enabled and notices.scan_every_seconds > 0:
            tg.create_task(
                every(notices.scan_every_seconds, stop, lambda: notice_scan(gateway), "notices")
            )
        for reader in mailbox_readers(gateway):
            tg.create_task(every(reader.interval_seconds, stop, reader.poll_once, reader.name))
        for poller in channel_pollers(dispatcher):
            tg.create_task(every(poller.interval_seconds, stop, poller.poll_once, poller.name))


__all__ = [
    "bound_socket",
    "channel_pollers",
    "checkpoint",
    "every",
    "lender_name",
    "mailbox_readers",
    "notice_scan",
    "placement_terms",
    "reconciliation_run",
    "run_workers",
    "sla_checks",
    "web_server",
]
