"""CLI commands of data protection: ``privacy deletions``, ``privacy request-deletions``,
``privacy purge-packets`` and ``privacy debtor-keys``."""

import json

import click
from rich.table import Table

from gateway.cli.context import console, open_gateway, run_async

STATES = ("open", "met", "breached")


@click.group()
def privacy() -> None:
    """Deletion of a case's personal data at the agency once its placement ends (PIPL Art.
    21): what was asked, what was confirmed, what is overdue."""


@privacy.command("deletions")
@click.option("--agency", help="Only this agency's requests.")
@click.option(
    "--state",
    type=click.Choice(STATES),
    help="open: awaiting data.deleted; met: confirmed; breached: overdue (a mismatch is open).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@click.pass_context
@run_async
async def deletions(
    ctx: click.Context, agency: str | None, state: str | None, as_json: bool
) -> None:
    """List deletion requests, oldest first: placement, agency, how the placement ended,
    when asked, due, state and the data.deleted event that confirmed it."""
    from gateway.privacy.deletion import deletion_status

    gateway = await open_gateway(ctx)
    try:
        async with gateway.db.connect() as conn:
            rows = await deletion_status(conn, agency_id=agency, state=state)
    finally:
        await gateway.aclose()
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    table = Table(title=f"{len(rows)} deletion request(s)")
    table.add_column("placement", no_wrap=True)
    if agency is None:
        table.add_column("agency", no_wrap=True)
    for name in ("ended", "asked", "due", "state", "event"):
        table.add_column(name, no_wrap=True)
    for row in rows:
        cells = [str(row["placement_id"])]
        if agency is None:
            cells.append(str(row["agency_id"]))
        cells += [
            str(row["placement_state"] or ""),
            str(row["requested_at"])[:10],
            str(row["due_at"])[:10],
            str(row["state"]),
            str(row["confirmed_by_event_id"] or ""),
        ]
        table.add_row(*cells)
    console.print(table)


@privacy.command("request-deletions")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@click.pass_context
@run_async
async def request(ctx: click.Context, as_json: bool) -> None:
    """Queue data.deletion_requested for every ended placement not yet asked (what
    ``serve`` does on its SLA schedule and ``reconcile`` after each run), at most 5,000 per
    call; ``dispatch`` or ``serve`` sends them."""
    gateway = await open_gateway(ctx)
    try:
        result = await gateway.request_deletions()
    finally:
        await gateway.aclose()
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
        return
    console.print(f"deletion requested for {result.requested} placement(s): {result.by_agency}")
    if result.unknown_agency:
        console.print(
            f"{result.unknown_agency} ended placement(s) belong to agencies no longer "
            "configured: nothing was sent for them"
        )


@privacy.command("purge-packets")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@click.pass_context
@run_async
async def purge_packets(ctx: click.Context, as_json: bool) -> None:
    """Purge the bytes of packets delivered more than ``[privacy] packet_retention_days``
    ago (what ``serve`` does on its SLA schedule). Their SHA-256 and evidence leaves stay,
    so the log still verifies; a case's evidence bundle names them as purged, with when."""
    gateway = await open_gateway(ctx)
    try:
        purged = await gateway.purge_packets()
        days = gateway.settings.privacy.packet_retention_days
    finally:
        await gateway.aclose()
    if as_json:
        click.echo(json.dumps({"purged": purged, "retention_days": days}))
        return
    console.print(f"purged the bytes of {purged} packet(s) delivered over {days} days ago")


@privacy.command("debtor-keys")
@click.option(
    "--all", "everything", is_flag=True, help="Re-key every case, not only those without a key."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@click.pass_context
@run_async
async def debtor_keys(ctx: click.Context, everything: bool, as_json: bool) -> None:
    """Write the keyed hash of the debtor id (``cases.debtor_key``, what the console finds a
    debtor by) on every case that lacks one, or on every case when the key changed (the
    oldest key of ``secrets.pii_keys`` was retired). ``serve`` does the same on start."""
    gateway = await open_gateway(ctx)
    try:
        result = await gateway.key_debtors(everything=everything)
    finally:
        await gateway.aclose()
    if as_json:
        click.echo(json.dumps(result.as_dict()))
        return
    how = "every case re-keyed" if result.rekeyed_all else "cases without a key"
    console.print(f"debtor key written on {result.keyed} case(s) ({how})")


COMMANDS: list[click.Command] = [privacy]

__all__ = ["COMMANDS"]
