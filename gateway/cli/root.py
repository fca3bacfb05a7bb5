"""The ``agency-gateway`` command line: one entry point for every operation.

Every command reads ``--config`` (default ``config/gateway.toml``, or ``$GATEWAY_CONFIG``).
Listings print tables, or JSON with ``--json``. Errors say what, where and what to do, and
exit non-zero: 2 for configuration problems, 1 for everything else.
"""

import asyncio
import sys
from pathlib import Path

import click

from gateway import __version__
from gateway.cli import (
    agencies as agency_commands,
    approvals as approval_commands,
    bench as bench_commands,
    case_holds as case_hold_commands,
    case_terms as case_term_commands,
    case_views as case_view_commands,
    cases as case_commands,
    complaints as complaint_commands,
    conduct as conduct_commands,
    evaluation as evaluation_commands,
    evidence as evidence_commands,
    intake as intake_commands,
    mail as mail_commands,
    mismatches as mismatch_commands,
    money as money_commands,
    notices as notice_commands,
    placements as placement_commands,
    privacy as privacy_commands,
    reconcile as reconcile_commands,
    register as register_commands,
    requests as request_commands,
    sandbox as sandbox_commands,
    scorecards as scorecard_commands,
    settlement as settlement_commands,
    setup as setup_commands,
    sftp as transfer_commands,
    users as console_commands,
)
from gateway.cli.attribution import as_option, remember, token_option
from gateway.cli.context import (
    GatewayGroup,
    config_path,
    console,
    open_gateway,
    run_async,
)
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
@as_option
@token_option
@click.pass_context
def main(
    ctx: click.Context,
    config: Path,
    log_level: str,
    log_json: bool,
    as_user: str | None,
    token: str | None,
) -> None:
    """agency-gateway: hand overdue loan cases to collection agencies, prove what was
    sent, and reconcile what comes back.

    \b
    Typical flow:
      agency-gateway keys generate        create missing key files
      agency-gateway check-config         validate settings, agencies and keys
      agency-gateway db upgrade           create or migrate the database
      agency-gateway --as ana intake F    import overdue accounts (ana makes the batch)
      agency-gateway --as bo claims approve ID   a second person confirms the claims
      agency-gateway allocate             place cases with agencies
      agency-gateway dispatch             send queued packets once
      agency-gateway serve                inbound API, workers and schedulers
      agency-gateway payments import F    load the lender's payment feed
      agency-gateway reconcile            batch reconciliation and SLA checks
      agency-gateway mismatches list      see what disagrees
      agency-gateway notices list --failed   borrower notices that were not delivered
      agency-gateway sandbox              simulated agencies where the config points
      agency-gateway demo                 all of the above against sandbox agencies
    """
    ctx.ensure_object(dict)
    ctx.obj["config"] = config
    remember(ctx, as_user, token)
    configure_logging(log_level, as_json=log_json)


@main.command()
@click.option("--host", default=None, help="Listen address (default from config).")
@click.option("--port", type=int, default=None, help="Listen port (default from config).")
@click.pass_context
@run_async
async def serve(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Run the inbound API, the dispatcher and the schedulers until interrupted."""
    import signal

    from gateway.heap import settle_heap
    from gateway.runtime import run_workers, web_server

    gateway = await open_gateway(ctx)
    # Cases written before migration 0015, or keyed under a retired PII key, become
    # findable by debtor id in the console.
    await gateway.key_debtors()
    settle_heap()
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


for _module in (
    agency_commands,
    approval_commands,
    bench_commands,
    console_commands,
    complaint_commands,
    conduct_commands,
    evaluation_commands,
    evidence_commands,
    intake_commands,
    case_commands,
    case_view_commands,
    case_hold_commands,
    case_term_commands,
    mail_commands,
    mismatch_commands,
    money_commands,
    notice_commands,
    placement_commands,
    privacy_commands,
    reconcile_commands,
    register_commands,
    request_commands,
    sandbox_commands,
    scorecard_commands,
    settlement_commands,
    setup_commands,
    transfer_commands,
):
    for _command in _module.COMMANDS:
        main.add_command(_command)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

__all__ = ["main"]
