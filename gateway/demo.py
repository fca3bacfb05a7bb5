"""``agency-gateway demo``: the whole loop against sandbox agencies on loopback.

The demo keeps its own SQLite database and generated files under ``var/demo/`` (fresh on
every run unless ``--keep``), uses the agencies of the normal config, and starts one sandbox
webhook agency per webhook agency on the port of its configured endpoint (or a free port,
with the endpoint rewritten in memory, when that port is taken).
"""

import asyncio
import json
import shutil
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import sqlalchemy as sa
from aiohttp import web
from rich.console import Console
from rich.table import Table

from gateway.agency_config import AgencyConfig, EmailAgency, WebhookAgency
from gateway.bootstrap import Gateway, build, load_config
from gateway.clock import to_datetime
from gateway.demo_data import generate_accounts, write_csv
from gateway.intake import import_file
from gateway.keygen import generate_missing, sandbox_keys
from gateway.runtime import (
    bound_socket,
    channel_pollers,
    checkpoint,
    mailbox_readers,
    run_workers,
    web_server,
)
from gateway.sandbox.law_firm import SandboxLawFirm, sandbox_documents
from gateway.sandbox.sftp_site import SftpSandboxes
from gateway.sandbox.webhook_agency import SandboxWebhookAgency
from gateway.sla_checks import run_sla_checks
from gateway.store.migrate import upgrade
from gateway.store.tables import (
    AgencyEventRow,
    Case,
    DeliveryAttempt,
    EvidenceLeaf,
    Mismatch,
    OutboxItem,
    Placement,
)

DEMO_DIR = Path("var/demo")
SETTLE_TIMEOUT = 120.0


@dataclass(frozen=True)
class DemoOptions:
    once: bool
    accounts: int
    seed: int
    fault_rate: float
    fresh: bool
    as_json: bool


async def _start_sandbox(
    agency: WebhookAgency, base_dir: Path, options: DemoOptions, stack: AsyncExitStack
) -> tuple[SandboxWebhookAgency, WebhookAgency]:
    verify, sign = sandbox_keys(agency, base_dir)
    sandbox = SandboxWebhookAgency(
        agency_id=agency.id,
        verify_keys=verify,
        signing_keys=sign,
        seed=options.seed,
        fault_rate=options.fault_rate,
    )
    url = urlsplit(agency.endpoint.url)
    host = url.hostname or "127.0.0.1"
    try:
        sock = bound_socket(host, url.port or 80)
    except Exception:
        sock = bound_socket(host, 0)
    port = sock.getsockname()[1]
    runner = web.AppRunner(sandbox.app(), access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    stack.push_async_callback(runner.cleanup)
    await sandbox.start()
    stack.push_async_callback(sandbox.aclose)
    endpoint = urlunsplit((url.scheme, f"{host}:{port}", url.path, url.query, ""))
    updated = agency.model_copy(
        update={"endpoint": agency.endpoint.model_copy(update={"url": endpoint})}
    )
    return sandbox, updated


async def _dispatch_until_settled(
    gateway: Gateway,
    sandboxes: list[SandboxWebhookAgency],
    files: SftpSandboxes | None = None,
    firms: list[SandboxLawFirm] | None = None,
) -> None:
    dispatcher = await gateway.dispatcher()
    readers = [
        r
        for r in mailbox_readers(gateway)
        if any(f.agency.id == r.agency_id and not f.reply_path_skipped for f in firms or [])
    ]
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while time.monotonic() < deadline:
        stats = await dispatcher.drain_once()
        drained = all([await s.drain(timeout=0.5) for s in sandboxes])
        # Law firms answer by mail: wait for their replies, then read the mailboxes.
        drained = all([await f.drain(timeout=5.0) for f in firms or []]) and drained
        for reader in readers:
            if (await reader.poll()).fetched:
                drained = False
        # File agencies answer in rounds: they read our batches, we pick up their results.
        if files is not None and await files.exchange(channel_pollers(dispatcher)):
            drained = False
        if stats.claimed == 0 and drained:
            # One more quiet pass: events that just arrived may have queued nothing new.
            if (await dispatcher.drain_once()).claimed == 0:
                return
        if stats.claimed == 0:
            await asyncio.sleep(0.2)


async def _counts(gateway: Gateway) -> dict[str, object]:
    def by(column: sa.ColumnElement[str], table: sa.Table) -> sa.Select[str, int]:
        return (
            sa.select(column, sa.func.count()).select_from(table).group_by(column).order_by(column)
        )

    cases = Case.__table__  # type: ignore[attr-defined]
    placements = Placement.__table__  # type: ignore[attr-defined]
    outbox = OutboxItem.__table__  # type: ignore[attr-defined]
    attempts = DeliveryAttempt.__table__  # type: ignore[attr-defined]
    events = AgencyEventRow.__table__  # type: ignore[attr-defined]
    mismatches = Mismatch.__table__  # type: ignore[attr-defined]
    leaves = EvidenceLeaf.__table__  # type: ignore[attr-defined]
    async with gateway.db.connect() as conn:

        async def grouped(query: sa.Select[str, int]) -> dict[str, int]:
            return {str(k): int(v) for k, v in (await conn.execute(query)).all()}

        return {
            "cases_by_bucket": await grouped(by(cases.c.bucket, cases)),
            "placements_by_agency": await grouped(by(placements.c.agency_id, placements)),
            "placements_by_state": await grouped(by(placements.c.state, placements)),
            "packets_by_type": await grouped(by(outbox.c.packet_type, outbox)),
            "outbox_by_state": await grouped(by(outbox.c.state, outbox)),
            "delivery_attempts_by_outcome": await grouped(by(attempts.c.outcome, attempts)),
            "events_by_type": await grouped(by(events.c.event_type, events)),
            "mismatches_by_kind": await grouped(by(mismatches.c.kind, mismatches)),
            "evidence_leaves_by_kind": await grouped(by(leaves.c.kind, leaves)),
        }


def _print_summary(console: Console, summary: dict[str, object]) -> None:
    console.rule("[bold]agency-gateway demo[/]")
    for title, key in (
        ("cases by bucket", "cases_by_bucket"),
        ("placements by agency", "placements_by_agency"),
        ("placements by state", "placements_by_state"),
        ("packets by type", "packets_by_type"),
        ("deliveries (outbox items by state)", "outbox_by_state"),
        ("delivery attempts by outcome", "delivery_attempts_by_outcome"),
        ("agency events by type", "events_by_type"),
        ("mismatches by kind", "mismatches_by_kind"),
        ("evidence leaves by kind", "evidence_leaves_by_kind"),
    ):
        values = summary[key]
        assert isinstance(values, dict)
        table = Table(title=title, title_justify="left", show_header=False, min_width=40)
        for name, n in values.items():
            table.add_row(str(name), str(n))
        table.add_row("[bold]total[/]", f"[bold]{sum(values.values())}[/]")
        console.print(table)
    for line in summary["notes"]:  # type: ignore[attr-defined]
        console.print(f"• {line}", highlight=False)


async def run_demo(
    config_path: Path, options: DemoOptions, *, console: Console
) -> dict[str, object]:
    settings, agencies = load_config(config_path)
    demo_dir = settings.base_dir / DEMO_DIR
    if options.fresh and demo_dir.exists():
        shutil.rmtree(demo_dir)
    demo_dir.mkdir(parents=True, exist_ok=True)
    settings = settings.model_copy(
        update={
            "database": settings.database.model_copy(
                update={"url": f"sqlite:///{(demo_dir / 'gateway.db').resolve()}"}
            )
        }
    )
    generate_missing(settings, agencies)
    notes: list[str] = []
    started = time.perf_counter()
    async with AsyncExitStack() as stack:
        sandboxes: list[SandboxWebhookAgency] = []
        for agency_id, agency in list(agencies.items()):
            if not isinstance(agency, WebhookAgency):
                continue
            sandbox, updated = await _start_sandbox(agency, settings.base_dir, options, stack)
            if updated.endpoint.url != agency.endpoint.url:
                notes.append(f"{agency_id}: port taken, sandbox moved to {updated.endpoint.url}")
            agencies[agency_id] = updated
            sandboxes.append(sandbox)
        sftp = await SftpSandboxes.start(
            agencies,
            settings.base_dir,
            root=demo_dir / "sftp",
            seed=options.seed,
            fault_rate=options.fault_rate,
        )
        stack.push_async_callback(sftp.aclose)
        agencies.update(sftp.agencies)
        notes.extend(sftp.notes)
        firms = await _start_law_firms(agencies, settings.base_dir, demo_dir, options, stack, notes)
        gateway = build(settings, agencies)
        stack.push_async_callback(gateway.aclose)
        await upgrade(gateway.db)
        server = settings.server
        try:
            url = await stack.enter_async_context(web_server(gateway, server.host, server.port))
        except Exception:
            url = await stack.enter_async_context(web_server(gateway, server.host, 0))
            notes.append(f"port {server.port} taken; the gateway listens on {url}")
        for sandbox in sandboxes:
            sandbox.set_gateway_url(url)

        accounts_file = demo_dir / "accounts.csv"
        as_of = datetime.now(UTC).date()
        write_csv(
            generate_accounts(options.accounts, seed=options.seed, as_of=as_of), accounts_file
        )
        report = await import_file(
            accounts_file,
            db=gateway.db,
            pii=gateway.pii,
            placements=gateway.placements,
            allocation=settings.allocation,
            clock=gateway.clock,
        )
        notes.append(f"intake: {report.inserted} accounts imported from {accounts_file}")
        allocation = await gateway.placements.allocate()
        notes.append(
            f"allocation: {allocation.placed} placed, {allocation.unallocated} left unallocated"
        )
        await _write_firm_documents(gateway, firms)
        await _dispatch_until_settled(gateway, sandboxes, sftp, firms)

        # Lender-side changes after placement: a few recalls and balance amendments.
        placed = await _placed_case_ids(gateway, limit=max(2, options.accounts // 50))
        recalls = placed[: len(placed) // 2]
        for case_id in recalls:
            await gateway.placements.recall(case_id, "PAID_DIRECT")
        amended_file = demo_dir / "accounts-day2.csv"
        changed = set(placed[len(placed) // 2 :])
        write_csv(
            (
                a.model_copy(update={"balance_minor": max(0, a.balance_minor - 10_000)})
                if a.account_id in changed
                else a
                for a in generate_accounts(options.accounts, seed=options.seed, as_of=as_of)
            ),
            amended_file,
        )
        day2 = await import_file(
            amended_file,
            db=gateway.db,
            pii=gateway.pii,
            placements=gateway.placements,
            allocation=settings.allocation,
            clock=gateway.clock,
        )
        notes.append(
            f"recalled {len(recalls)} placements; re-import changed {day2.updated} balances "
            f"and queued {day2.amended} amendments"
        )
        await _dispatch_until_settled(gateway, sandboxes, sftp, firms)
        for firm in firms:
            notes.append(_firm_note(firm))
        if sftp.sandboxes:
            notes.append(
                "sftp: result files picked up by outcome "
                + json.dumps(sftp.picked_up, sort_keys=True)
                + f"; files under {demo_dir / 'sftp'}"
            )

        horizon = to_datetime(gateway.clock.now()) + timedelta(days=7)
        async with gateway.db.transaction() as conn:
            breaches = await run_sla_checks(conn, now=horizon)
        notes.append(
            f"SLA check as of {horizon:%Y-%m-%d} (simulating a week): "
            f"{sum(breaches.values())} breaches"
        )
        await checkpoint(gateway)
        verification = await gateway.evidence.verify([gateway.note_verifier])
        notes.append(
            f"evidence: {verification.leaves_checked} leaves, "
            f"{verification.checkpoints_checked} signed checkpoint(s), "
            f"{'verified' if verification.ok else 'VERIFICATION FAILED'}"
        )
        notes.append(
            f"finished in {time.perf_counter() - started:.1f} s; database {settings.database.url}"
        )
        summary = await _counts(gateway)
        summary["sandbox"] = (
            [s.stats_json() for s in sandboxes]
            + sftp.stats_json()
            + [f.stats_json() for f in firms]
        )
        summary["notes"] = notes
        if options.as_json:
            console.print_json(json.dumps(summary, default=str))
        else:
            _print_summary(console, summary)
        if not verification.ok:
            raise SystemExit(1)
        if not options.once:
            console.print(
                f"\n[bold]serving[/]: gateway {url} (inbound {url}/v1/agencies/<id>/events, "
                f"metrics {url}/metrics); sandbox agencies at "
                + ", ".join(
                    a.endpoint.url for a in agencies.values() if isinstance(a, WebhookAgency)
                )
                + ". Ctrl-C stops."
            )
            if settings.console.enabled:
                console.print(
                    f"[bold]ops console[/]: {url}/ ; create a login first (in another shell):\n"
                    f"  GATEWAY_DATABASE_URL={settings.database.url} "
                    "agency-gateway users add NAME --role admin",
                    highlight=False,
                )
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            import signal

            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await run_workers(gateway, stop)
    return summary


async def _start_law_firms(
    agencies: dict[str, AgencyConfig],
    base_dir: Path,
    demo_dir: Path,
    options: DemoOptions,
    stack: AsyncExitStack,
    notes: list[str],
) -> list[SandboxLawFirm]:
    """One sandbox law firm per email agency: SMTP on its relay port, Dovecot for replies."""
    firms = []
    for agency_id, agency in list(agencies.items()):
        if not isinstance(agency, EmailAgency):
            continue
        agency = agency.model_copy(
            update={
                "email": agency.email.model_copy(
                    update={"documents_dir": str((demo_dir / "documents").resolve())}
                )
            }
        )
        firm = SandboxLawFirm(
            agency=agency, base_dir=base_dir, seed=options.seed, fault_rate=options.fault_rate
        )
        await firm.start()
        stack.push_async_callback(firm.aclose)
        agencies[agency_id] = firm.updated_agency()
        if firm.reply_path_skipped:
            notes.append(
                f"{agency_id}: the email reply path is skipped ({firm.reply_path_skipped}); "
                "referral mail is still sent, signed, encrypted and received"
            )
        firms.append(firm)
    return firms


async def _write_firm_documents(gateway: Gateway, firms: list[SandboxLawFirm]) -> None:
    """Placeholder contracts and authorisation letters for the cases placed with firms."""
    placements = Placement.__table__  # type: ignore[attr-defined]
    for firm in firms:
        agency = gateway.agencies[firm.agency.id]
        assert isinstance(agency, EmailAgency) and agency.email.documents_dir
        async with gateway.db.connect() as conn:
            rows = await conn.execute(
                sa.select(placements.c.case_id).where(placements.c.agency_id == firm.agency.id)
            )
            case_ids = [r[0] for r in rows.all()]
        folder = Path(agency.email.documents_dir)
        for case_id in case_ids:
            await asyncio.to_thread(sandbox_documents, folder, case_id)


def _firm_note(firm: SandboxLawFirm) -> str:
    s = firm.stats
    faults = ", ".join(f"{k} {n}" for k, n in sorted(s.faults.items())) or "none"
    replies = (
        f"{s.replies_appended} replies put in its IMAP mailbox"
        if not firm.reply_path_skipped
        else "no replies (reply path skipped)"
    )
    return (
        f"law firm {firm.agency.id}: {s.mails_received} referral mails over SMTP+STARTTLS, "
        f"{s.decrypted} decrypted, {s.signatures_verified} signatures verified; {replies}; "
        f"reply variants: {faults}"
    )


async def _placed_case_ids(gateway: Gateway, *, limit: int) -> list[str]:
    placements = Placement.__table__  # type: ignore[attr-defined]
    async with gateway.db.connect() as conn:
        rows = await conn.execute(
            sa.select(placements.c.case_id)
            .where(placements.c.state.in_(["acknowledged", "active"]))
            .order_by(placements.c.case_id)
            .limit(limit)
        )
        return [r[0] for r in rows.all()]


__all__ = ["DemoOptions", "run_demo"]
