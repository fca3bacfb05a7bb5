"""The ``agency-gateway`` command line: one entry point for every operation.

Every command reads ``--config`` (default ``config/gateway.toml``, or ``$GATEWAY_CONFIG``).
Listings print tables, or JSON with ``--json``. Errors say what, where and what to do, and
exit non-zero: 2 for configuration problems, 1 for everything else.
"""

import asyncio
import json
import sys
from pathlib import Path

import click
from rich.table import Table

from gateway import __version__
from gateway.cli import (
    agencies as agency_commands,
    bench as bench_commands,
    evidence as evidence_commands,
    intake as intake_commands,
    mail as mail_commands,
    mismatches as mismatch_commands,
    privacy as privacy_commands,
    reconcile as reconcile_commands,
    sandbox as sandbox_commands,
    sftp as transfer_commands,
    users as console_commands,
)
from gateway.cli.context import (
    GatewayGroup,
    config_path,
    console,
    err_console,
    open_gateway,
    run_async,
)
from gateway.errors import ConfigError
from gateway.logs import configure_logging


@click.group(cls=GatewayGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="agency-gateway")
@click.option(
    "--config",
    type=click.Path(path_type=Path),
    default=Path("config/gateway.toml"),
    envvar="GATEWAY_CONFIG",
    show_default=True,
    help="Gateway settings file; agency files are found through its agencies_dir.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="warning",
    show_default=True,
    help="How much to log (to stderr).",
)
@click.option("--log-json", is_flag=True, help="Log one JSON object per line.")
@click.pass_context
def main(ctx: click.Context, config: Path, log_level: str, log_json: bool) -> None:
    """agency-gateway: hand overdue loan cases to collection agencies, prove what was
    sent, and reconcile what comes back.

    \b
    Typical flow:
      agency-gateway keys generate        create missing key files
      agency-gateway check-config         validate settings, agencies and keys
      agency-gateway db upgrade           create or migrate the database
      agency-gateway intake accounts.csv  import overdue accounts
      agency-gateway allocate             place cases with agencies
      agency-gateway dispatch             send queued packets once
      agency-gateway serve                inbound API, workers and schedulers
      agency-gateway payments import F    load the lender's payment feed
      agency-gateway reconcile            batch reconciliation and SLA checks
      agency-gateway mismatches list      see what disagrees
      agency-gateway sandbox              simulated agencies where the config points
      agency-gateway demo                 all of the above against sandbox agencies
    """
    ctx.ensure_object(dict)
    ctx.obj["config"] = config
    configure_logging(log_level, as_json=log_json)


@main.command("check-config")
@click.pass_context
def check_config(ctx: click.Context) -> None:
    """Validate gateway.toml, every agency file and every key they reference.

    Reports each problem as `file: key: reason` and exits 2 if there is any.
    """
    from gateway.bootstrap import check_all_secrets, load_config
    from gateway.config.agencies import WebhookAgency

    settings, agencies = load_config(config_path(ctx))
    problems = check_all_secrets(settings, agencies)
    if problems:
        raise ConfigError(problems)
    table = Table("agency", "name", "channel", "buckets", "capacity", "keys")
    for a in agencies.values():
        table.add_row(
            a.id,
            a.name,
            a.channel,
            ",".join(a.eligibility.buckets),
            str(a.capacity.max_open_placements),
            (
                f"out {a.signing.scheme} x{len(a.signing.keys)}, "
                f"in {a.inbound.scheme} x{len(a.inbound.keys)}"
                if isinstance(a, WebhookAgency)
                else "-"
            ),
        )
    console.print(table)
    console.print(
        f"[green]configuration OK[/]: {len(agencies)} agencies, database {settings.database.url}"
    )


@main.group()
def keys() -> None:
    """Key material for PII encryption, evidence checkpoints and agency signatures."""


@keys.command("generate")
@click.pass_context
def keys_generate(ctx: click.Context) -> None:
    """Create every missing key file the config names (never overwrites).

    Files are written with mode 0600. Keys configured as environment variables are listed
    so you can set them yourself.
    """
    from gateway.bootstrap import load_config
    from gateway.keys import generate_missing

    settings, agencies = load_config(config_path(ctx))
    table = Table("key", "file", "result")
    for action in generate_missing(settings, agencies):
        table.add_row(action.what, action.path, action.done)
    console.print(table)


@main.group()
def db() -> None:
    """Database schema management (Alembic migrations)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@click.pass_context
@run_async
async def db_upgrade(ctx: click.Context, revision: str) -> None:
    """Create the schema or migrate it to the newest revision."""
    from gateway.store.migrate import current_revision, upgrade

    gateway = await open_gateway(ctx, migrate=False)
    try:
        await upgrade(gateway.db, revision)
        console.print(
            f"database {gateway.db.redacted_url()} at revision {await current_revision(gateway.db)}"
        )
    finally:
        await gateway.aclose()


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
@run_async
async def allocate(ctx: click.Context, as_json: bool) -> None:
    """Place every open case with an eligible agency that has capacity.

    Each placement is written with its placement.created packet and evidence leaf in one
    transaction. The result is deterministic for the same cases and allocation seed. With
    [allocation] performance_weighting, champion draws weigh agencies by their recent
    recovery; a challenger_share of debtors is drawn by contract weights alone, and each
    placement records which (see `agencies scorecard --strategy`).
    """
    gateway = await open_gateway(ctx)
    try:
        report = await gateway.placements.allocate()
    finally:
        await gateway.aclose()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "placed": report.placed,
                    "unallocated": report.unallocated,
                    "by_agency": dict(report.by_agency),
                    "by_strategy": dict(report.by_strategy),
                    "performance_factors": [
                        {"agency": a, "currency": cur, "factor": round(f, 4)}
                        for (a, cur), f in sorted(report.factors.items())
                    ],
                    "reasons": dict(report.reasons),
                },
                indent=2,
            )
        )
        return
    table = Table("agency", "placed")
    for agency_id, n in sorted(report.by_agency.items()):
        table.add_row(agency_id, str(n))
    console.print(table)
    console.print(f"placed {report.placed}, unallocated {report.unallocated}")
    if report.by_strategy.get("challenger"):
        console.print(
            f"  champion {report.by_strategy['champion']}, "
            f"challenger {report.by_strategy['challenger']}"
        )
    for (agency_id, currency), factor in sorted(report.factors.items()):
        console.print(f"  performance factor {agency_id} {currency}: {factor:.2f}")
    for reason, n in report.reasons.items():
        console.print(f"  {n} unallocated: {reason}")


@main.command()
@click.argument("case_id")
@click.option(
    "--reason", "reason", required=True, help="Recall reason code, e.g. DECEASED, PAID_DIRECT."
)
@click.pass_context
@run_async
async def recall(ctx: click.Context, case_id: str, reason: str) -> None:
    """Recall CASE_ID from its agency: queues placement.recalled.

    From then on any activity the agency reports on that placement is a mismatch.
    """
    gateway = await open_gateway(ctx)
    try:
        placement_id = await gateway.placements.recall(case_id, reason.upper())
    finally:
        await gateway.aclose()
    console.print(f"recalled {placement_id}; placement.recalled queued (run `dispatch` or `serve`)")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
@run_async
async def dispatch(ctx: click.Context, as_json: bool) -> None:
    """Send every due outbox item once, then exit.

    Retries are scheduled in the outbox (capped, jittered backoff per agency), not slept
    here; run `serve` to keep sending.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from gateway.clock import to_datetime
    from gateway.dispatch import outbox
    from gateway.dispatch.records import DrainStats

    gateway = await open_gateway(ctx)
    try:
        dispatcher = await gateway.dispatcher()
        async with gateway.db.snapshot() as conn:
            due = await outbox.due_count(conn, now=to_datetime(gateway.clock.now()))
        with Progress(
            TextColumn("dispatching"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
            disable=as_json or not err_console.is_terminal,
        ) as progress:
            task = progress.add_task("dispatch", total=due)

            def advance(so_far: DrainStats) -> None:
                progress.update(task, completed=so_far.claimed, total=max(due, so_far.claimed))

            stats = await dispatcher.drain_once(on_progress=advance)
        await gateway.evidence.checkpoint(now=to_datetime(gateway.clock.now()))
    finally:
        await gateway.aclose()
    result = {
        "claimed": stats.claimed,
        "delivered": stats.delivered,
        "retry_scheduled": stats.retried,
        "dead": stats.dead,
        "unknown": stats.unknown,
        "lease_lost": stats.lease_lost,
        "reaped": stats.reaped,
        "delivered_by_agency": stats.by_agency,
    }
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            console.print(f"{key:>20}: {value}")


@main.command()
@click.option("--host", default=None, help="Listen address (default from config).")
@click.option("--port", type=int, default=None, help="Listen port (default from config).")
@click.pass_context
@run_async
async def serve(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Run the inbound API, the dispatcher and the schedulers until interrupted."""
    import signal

    from gateway.runtime import run_workers, web_server

    gateway = await open_gateway(ctx)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = gateway.settings.server
    try:
        async with web_server(
            gateway, host or server.host, server.port if port is None else port
        ) as url:
            console.print(
                f"serving on {url} (inbound: {url}/v1/agencies/<agency_id>/events); Ctrl-C stops"
            )
            if gateway.settings.console.enabled:
                console.print(
                    f"ops console: {url}/ (users: agency-gateway users add NAME --role admin)"
                )
            await run_workers(gateway, stop)
    finally:
        await gateway.aclose()


@main.command()
@click.option("--once", is_flag=True, help="Run the whole flow once, print the summary, exit.")
@click.option("--accounts", type=int, default=1200, show_default=True, help="Accounts to generate.")
@click.option("--seed", type=int, default=7, show_default=True, help="Seed for data and sandbox.")
@click.option(
    "--fault-rate",
    type=float,
    default=0.06,
    show_default=True,
    help="Share of faulty agency events.",
)
@click.option(
    "--fresh/--keep", default=True, show_default=True, help="Start from an empty database."
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
@run_async
async def demo(
    ctx: click.Context,
    once: bool,
    accounts: int,
    seed: int,
    fault_rate: float,
    fresh: bool,
    as_json: bool,
) -> None:
    """End-to-end demo on the embedded SQLite database with sandbox agencies.

    Generates overdue accounts, starts the sandbox agencies on loopback (webhook agencies,
    an SFTP agency and a law firm over SMTP), imports, allocates, dispatches signed packets,
    placement files and mail, receives the agencies' outcome events, result files and
    replies, reconciles them and prints a summary. Without --once it then keeps serving and
    prints where.
    """
    from gateway.demo.runner import DemoOptions, run_demo

    await run_demo(
        config_path(ctx),
        DemoOptions(
            once=once,
            accounts=accounts,
            seed=seed,
            fault_rate=fault_rate,
            fresh=fresh,
            as_json=as_json,
        ),
        console=console,
    )


@main.group()
def schemas() -> None:
    """The wire contracts: JSON Schemas and the OpenAPI document."""


@schemas.command("export")
@click.option(
    "--root",
    type=click.Path(path_type=Path),
    default=Path("."),
    show_default=True,
    help="The checkout to write into (its schemas/ folder).",
)
def schemas_export(root: Path) -> None:
    """Regenerate schemas/json/*.json and schemas/openapi.json from the code."""
    from gateway.contracts.export import export

    for path in export(root):
        console.print(f"wrote {path}")


for _module in (
    agency_commands,
    bench_commands,
    console_commands,
    evidence_commands,
    intake_commands,
    mail_commands,
    mismatch_commands,
    privacy_commands,
    reconcile_commands,
    sandbox_commands,
    transfer_commands,
):
    for _command in _module.COMMANDS:
        main.add_command(_command)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

__all__ = ["main"]
