"""CLI command of the sandbox: ``sandbox`` runs simulated agencies where the config points."""

import json
from pathlib import Path

import click
from rich.table import Table

from gateway.cli.context import config_path, console, run_async

SFTP_ROOT = Path("var/sandbox/sftp")


@click.command()
@click.option(
    "--agency",
    "agency_ids",
    multiple=True,
    metavar="ID",
    help="Stand in for this agency only (repeatable; default: every enabled agency).",
)
@click.option(
    "--gateway-url",
    default=None,
    metavar="URL",
    help="Where webhook agencies push their events (default: the config's [server]).",
)
@click.option(
    "--sftp-root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=f"Where the sandbox SFTP servers keep their files (default: {SFTP_ROOT}).",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=2.0,
    show_default=True,
    help="Seconds between file agencies' looks at their inbox.",
)
@click.option("--seed", type=int, default=7, show_default=True, help="Makes answers repeatable.")
@click.option(
    "--fault-rate",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    show_default=True,
    help="Share of answers that carry a fault (bad signature, unknown case, faulty row...).",
)
@click.option("--json", "as_json", is_flag=True, help="JSON lines: one when ready, one at exit.")
@click.pass_context
@run_async
async def sandbox(
    ctx: click.Context,
    agency_ids: tuple[str, ...],
    gateway_url: str | None,
    sftp_root: Path | None,
    interval: float,
    seed: int,
    fault_rate: float,
    as_json: bool,
) -> None:
    """Run simulated agencies on loopback, exactly where the config points, until Ctrl-C.

    For each agency a counterpart over the real protocol: a webhook agency on its endpoint
    (verifies our packets, pushes signed events to the gateway), an SFTP server with an agency
    behind it (answers placement files with result files and statements), a law firm behind
    SMTP (and Dovecot for its replies, when installed). Run `agency-gateway serve` with the
    same config beside it to rehearse an agency's onboarding end to end before go-live. A
    port that is taken or not on loopback is refused, naming the agency. Sandbox keys come
    from `agency-gateway keys generate`.
    """
    import asyncio
    import signal
    from contextlib import AsyncExitStack

    from gateway.bootstrap import load_config
    from gateway.sandbox.document_check import lender_certificate
    from gateway.sandbox.partners import SandboxPartners, choose

    settings, agencies = load_config(config_path(ctx))
    server = settings.server
    host = "127.0.0.1" if server.host in ("0.0.0.0", "::", "") else server.host
    url = (gateway_url or f"http://{host}:{server.port}").rstrip("/")
    root = settings.base_dir / (sftp_root or SFTP_ROOT)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with AsyncExitStack() as stack:
        partners = await SandboxPartners.start(
            choose(agencies, agency_ids),
            settings.base_dir,
            gateway_url=url,
            sftp_root=root,
            seed=seed,
            fault_rate=fault_rate,
            stack=stack,
            letter_trust=lender_certificate(settings.lender.signing_certificate, settings.base_dir),
        )
        listing = [
            {"agency": p.agency_id, "channel": p.channel, "listening": p.listening, "note": p.note}
            for p in partners.partners
        ]
        if as_json:
            click.echo(json.dumps({"event": "ready", "gateway_url": url, "partners": listing}))
        else:
            table = Table("agency", "channel", "listening", "note", title="sandbox partners")
            for row in listing:
                table.add_row(*row.values())
            console.print(table)
            console.print(f"events go to {url}; run `agency-gateway serve` beside; Ctrl-C stops")
        await partners.run(stop, interval=interval)
        stats = partners.stats()
    if as_json:
        click.echo(json.dumps({"event": "stopped", "stats": stats}))
    else:
        for entry in stats:
            console.print(json.dumps(entry, sort_keys=True), highlight=False)


COMMANDS: list[click.Command] = [sandbox]

__all__ = ["COMMANDS"]
