"""CLI commands of borrower notices: ``notices list``, ``notices scan`` and ``notices resend``."""

import json

import click
from rich.table import Table

from gateway.cli.context import console, open_gateway, run_async


@click.group()
def notices() -> None:
    """Notices to borrowers (who holds their case, how to verify the collector, what was
    shared with whom), sent through the lender's messaging service ([notices])."""


@notices.command("list")
@click.option("--failed", is_flag=True, help="Only notices given up on (the flagged placements).")
@click.option("--limit", type=click.IntRange(1, 100_000), default=200, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@click.pass_context
@run_async
async def list_notices(ctx: click.Context, failed: bool, limit: int, as_json: bool) -> None:
    """List notices, newest first: placement, case, kind (placed, moved, recalled), agency,
    letter, state (queued, delivered, failed), attempts and the last error."""
    gateway = await open_gateway(ctx)
    try:
        rows = await gateway.notices.rows(failed=failed, limit=limit)
        counts = await gateway.notices.counts()
    finally:
        await gateway.aclose()
    if as_json:
        payload = {"counts": counts, "notices": [r.as_dict() for r in rows]}
        click.echo(json.dumps(payload, indent=2, ensure_ascii=False))
        return
    what = "failed notice(s)" if failed else "notice(s)"
    summary = ", ".join(f"{n} {state}" for state, n in counts.items())
    table = Table(title=f"{len(rows)} {what} ({summary})")
    for name in ("placement", "case", "kind", "agency", "letter", "state", "tries", "when"):
        table.add_column(name, no_wrap=True)
    table.add_column("error")
    for r in rows:
        when = r.failed_at or r.delivered_at or r.created_at
        table.add_row(
            r.placement_id,
            r.case_id,
            r.kind,
            r.agency_id,
            r.letter_no or "",
            r.state,
            str(r.attempts),
            when.strftime("%Y-%m-%d %H:%M"),
            (r.error or "")[:120],
        )
    console.print(table)
    if failed and rows:
        console.print("Fix the messaging service, then: agency-gateway notices resend")


@notices.command("scan")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@click.pass_context
@run_async
async def scan(ctx: click.Context, as_json: bool) -> None:
    """Queue the notices that are due (what ``serve`` does every [notices]
    scan_every_seconds); ``dispatch`` or ``serve`` sends them."""
    gateway = await open_gateway(ctx)
    try:
        if not gateway.notices.enabled:
            raise click.ClickException("[notices] is off (enabled = false): nothing to queue")
        result = await gateway.notices.scan_all()
    finally:
        await gateway.aclose()
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
        return
    queued = ", ".join(f"{n} {kind}" for kind, n in sorted(result.queued.items())) or "none"
    console.print(f"queued {result.total()} notice(s): {queued}")
    if result.unregistered:
        console.print(
            f"{result.unregistered} placement(s) wait: their agency has no [registration]"
        )


@notices.command("resend")
@click.argument("placement_ids", nargs=-1)
@click.pass_context
@run_async
async def resend(ctx: click.Context, placement_ids: tuple[str, ...]) -> None:
    """Queue failed notices again (of PLACEMENT_IDS, or every failed one), with the same
    notice id, so a messaging service that already has one ignores the copy."""
    gateway = await open_gateway(ctx)
    try:
        n = await gateway.notices.resend_failed(placement_ids)
    finally:
        await gateway.aclose()
    console.print(f"queued {n} failed notice(s) again")


COMMANDS = [notices]

__all__ = ["COMMANDS", "notices"]
