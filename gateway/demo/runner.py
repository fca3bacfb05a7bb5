"""``agency-gateway demo``: the whole loop against sandbox agencies on loopback.

The demo keeps its own SQLite database and generated files under ``var/demo/`` (fresh on
every run unless ``--keep``), uses the agencies of the normal config, and starts one sandbox
webhook agency per webhook agency on the port of its configured endpoint (or a free port,
with the endpoint rewritten in memory, when that port is taken). Starting the sandboxes and
running until they settle is ``gateway.demo.sandboxes``; the closing summary is
``gateway.demo.report``.
"""

import asyncio
import json
import shutil
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console

from gateway.bootstrap import build, load_config
from gateway.clock import to_datetime
from gateway.config.agencies import WebhookAgency
from gateway.demo.annual import run_annual
from gateway.demo.case_life import (
    CaseLife,
    approve_escalations,
    day2_accounts,
    expire,
    life_notes,
    lifecycle_checks,
    placed_case_ids,
    plan_day2,
    renew_one,
    second_round,
)
from gateway.demo.confirmation import Confirmation, import_and_confirm
from gateway.demo.data import generate_accounts, write_csv
from gateway.demo.month import run_month
from gateway.demo.notices import (
    notices_note,
    start_messaging,
    trust,
    verify_some,
    with_notices,
)
from gateway.demo.report import count_rows, documents_note, firm_note, print_summary
from gateway.demo.sandboxes import (
    dispatch_until_settled,
    start_law_firms,
)
from gateway.evidence.bundle import export_case, verify_bundle
from gateway.keys import generate_missing
from gateway.privacy.deletion import deletion_status
from gateway.reconciliation.sla import run_sla_checks
from gateway.register.importing import configured_file, import_register
from gateway.runtime import checkpoint, run_workers, web_server
from gateway.sandbox.document_check import lender_certificate
from gateway.sandbox.partners import start_webhook_sandbox
from gateway.sandbox.sftp_site import SftpSandboxes
from gateway.sandbox.webhook_agency import SandboxWebhookAgency
from gateway.store.migrate import upgrade

DEMO_DIR = Path("var/demo")


@dataclass(frozen=True)
class DemoOptions:
    once: bool
    accounts: int
    seed: int
    fault_rate: float
    fresh: bool
    as_json: bool


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
            ),
            # The demo's second round runs minutes after the first, not days: no cool-off.
            "allocation": settings.allocation.model_copy(update={"cool_off_days": 0}),
        }
    )
    generate_missing(settings, agencies)
    notes: list[str] = []
    started = time.perf_counter()
    async with AsyncExitStack() as stack:
        # Borrower notices go to a sandbox messaging service that verifies their signatures.
        messaging = await start_messaging(stack)
        settings = with_notices(settings, messaging.url)
        generate_missing(settings, agencies)
        trust(messaging, settings)
        sandboxes: list[SandboxWebhookAgency] = []
        for agency_id, agency in list(agencies.items()):
            if not isinstance(agency, WebhookAgency):
                continue
            sandbox, updated = await start_webhook_sandbox(
                agency,
                settings.base_dir,
                seed=options.seed,
                fault_rate=options.fault_rate,
                stack=stack,
                letter_trust=lender_certificate(
                    settings.lender.signing_certificate, settings.base_dir
                ),
            )
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
        firms = await start_law_firms(
            agencies,
            settings.base_dir,
            demo_dir,
            seed=options.seed,
            fault_rate=options.fault_rate,
            stack=stack,
            notes=notes,
        )
        gateway = build(settings, agencies)
        stack.push_async_callback(gateway.aclose)
        await upgrade(gateway.db)
        # The register admits the demo's agencies before anything is allocated to them.
        if (register_file := configured_file(settings)) is not None:
            admitted = await import_register(
                gateway.db,
                register_file,
                actor="demo",
                now=to_datetime(gateway.clock.now()),
                configured=agencies,
            )
            notes.append(
                f"register: {len(admitted.admitted)} agencies admitted from {register_file}"
            )
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
            generate_accounts(options.accounts, seed=options.seed, as_of=as_of, breakdown=True),
            accounts_file,
            breakdown=True,
        )
        claims = Confirmation()
        report = await import_and_confirm(gateway, accounts_file, claims, expect_placeable=True)
        notes.append(f"intake: {report.inserted} accounts imported from {accounts_file}")
        notes.extend(claims.notes)
        claims.notes.clear()
        allocation = await gateway.placements.allocate()
        notes.append(
            f"allocation: {allocation.placed} placed, {allocation.unallocated} left unallocated"
        )
        await gateway.notices.scan_all()  # what serve's schedule does: tell the borrowers
        await dispatch_until_settled(gateway, sandboxes, sftp, firms)

        # Lender-side changes after placement: a few recalls, balance amendments, a death, a
        # payoff and an account that crosses the legal threshold.
        legal_tier = settings.allocation.legal_tier
        day2 = plan_day2(
            await placed_case_ids(gateway, limit=max(2, options.accounts // 50)),
            await placed_case_ids(
                gateway, limit=max(8, options.accounts // 25), outside_tier=legal_tier
            ),
        )
        for case_id in day2.recalls:
            await gateway.placements.recall(case_id, "PAID_DIRECT")
        amended_file = demo_dir / "accounts-day2.csv"
        write_csv(
            day2_accounts(
                generate_accounts(options.accounts, seed=options.seed, as_of=as_of, breakdown=True),
                day2,
                legal_min_dpd=settings.allocation.legal_min_dpd,
            ),
            amended_file,
            holds=True,
            breakdown=True,
        )
        changed = await import_and_confirm(gateway, amended_file, claims, expect_placeable=False)
        notes.extend(claims.notes)
        notes.append(
            f"recalled {len(day2.recalls)} placements; re-import changed {changed.updated} "
            f"rows and queued {changed.amended} amendments; {day2.deceased} held DECEASED "
            f"and {day2.paid_off} paid off (both recalled), {day2.to_legal} past the legal "
            "threshold"
        )
        life = CaseLife()
        await approve_escalations(gateway, life)
        await dispatch_until_settled(gateway, sandboxes, sftp, firms)
        # Simulated days: the early-stage agency's placements reach their term.
        short = min(
            (a for a in agencies.values() if a.placement_days and a.enabled),
            key=lambda a: a.placement_days or 0,
            default=None,
        )
        term_end = await renew_one(gateway, short.id, life) if short else None
        if term_end is not None:
            await expire(
                gateway,
                warn_on=term_end - timedelta(days=settings.allocation.expiry_warning_days),
                expire_on=term_end + timedelta(days=settings.allocation.expiry_grace_days + 1),
                life=life,
            )
            await dispatch_until_settled(gateway, sandboxes, sftp, firms)
        await second_round(gateway, life)
        # Checked as the round left it: the agencies' later returns wait for the next round.
        life.checks = await lifecycle_checks(
            gateway,
            as_of=life.expiry_as_of or as_of,
            grace_days=settings.allocation.expiry_grace_days,
        )
        life.checks.update(claims.checks)
        await dispatch_until_settled(gateway, sandboxes, sftp, firms)
        notes.extend(life_notes(life))
        # Placements that ended (recalled, returned, closed) ask for deletion (PIPL Art. 21).
        swept = await gateway.request_deletions()
        await gateway.notices.scan_all()  # the moves and recalls since the first scan
        await dispatch_until_settled(gateway, sandboxes, sftp, firms)
        async with gateway.db.connect() as conn:
            asked = await deletion_status(conn)
        confirmed = sum(1 for d in asked if d["state"] == "met")
        notes.append(
            f"privacy: deletion requested for {swept.requested} ended placements "
            f"({', '.join(f'{k} {v}' for k, v in sorted(swept.by_agency.items()))}); "
            f"{confirmed} confirmed with data.deleted"
        )
        for firm in firms:
            notes.append(firm_note(firm))
        await verify_some(gateway, messaging)
        notes.append(await notices_note(gateway, messaging, url))
        notes.append(documents_note(sandboxes))
        if sftp.sandboxes:
            notes.append(
                "sftp: result files picked up by outcome "
                + json.dumps(sftp.picked_up, sort_keys=True)
                + f"; files under {demo_dir / 'sftp'}"
            )

        # The rest of the month: the lender's receipts attributed, statements, waivers.
        month_started = time.perf_counter()
        month = await run_month(
            gateway,
            demo_dir,
            settle=lambda: dispatch_until_settled(gateway, sandboxes, sftp, firms),
        )
        notes.append(
            f"month {month.month}: {month.receipts} lender receipts from {month.feed_file}, "
            f"{len(month.statements)} statements (documents under {demo_dir / 'statements'}), "
            f"in {time.perf_counter() - month_started:.1f} s"
        )
        # A year of history for the agencies, then each agency's annual evaluation.
        annual = await run_annual(gateway, demo_dir, seed=options.seed)
        notes.append(
            f"annual evaluation: {sum(annual.history.placements.values())} placements of "
            f"history over {len(annual.history.months)} months; reports "
            + ", ".join(f"{a} {r['recommendation']}" for a, r in sorted(annual.reports.items()))
            + f" (documents under {demo_dir / 'evaluations'}), in {annual.seconds:.1f} s"
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
        bundle_ok = True
        recalls = day2.recalls
        if recalls:
            # One recalled case's bundle, as a lender would hand it to an auditor.
            bundle = await export_case(
                gateway.db,
                gateway.evidence,
                gateway.note_verifier,
                recalls[0],
                now=to_datetime(gateway.clock.now()),
            )
            bundle_file = demo_dir / f"evidence-{recalls[0]}.json"
            bundle_file.write_text(json.dumps(bundle, indent=1, ensure_ascii=False) + "\n")
            checked = verify_bundle(bundle, [gateway.note_verifier])
            bundle_ok = checked.ok
            notes.append(
                f"evidence bundle of recalled case {recalls[0]}: {checked.entries} leaves, "
                f"{'verifies offline' if checked.ok else 'DOES NOT VERIFY'} "
                f"(agency-gateway evidence check-bundle {bundle_file})"
            )
        notes.append(
            f"finished in {time.perf_counter() - started:.1f} s; database {settings.database.url}"
        )
        summary = await count_rows(gateway)
        summary["sandbox"] = (
            [s.stats_json() for s in sandboxes]
            + sftp.stats_json()
            + [f.stats_json() for f in firms]
        )
        summary["lifecycle"] = life.as_json()
        summary["month"] = month.as_json()
        summary["annual"] = annual.as_json()
        summary["notes"] = notes
        if options.as_json:
            console.print_json(json.dumps(summary, default=str))
        else:
            print_summary(console, summary)
        if (
            not verification.ok
            or not bundle_ok
            or not life.ok()
            or month.problems()
            or annual.problems()
        ):
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


__all__ = ["DemoOptions", "run_demo"]
