"""CLI commands of reconciliation: ``reconcile`` and ``payments import|list``."""

import json
from pathlib import Path
from typing import Any

import click
import sqlalchemy as sa
from rich.table import Table

from gateway.cli.context import console, open_gateway, run_async


def _runs_table(runs: list[dict[str, Any]]) -> Table:
    table = Table("run", "state", "dry", "events", "as of", "new breaks", "resumes")
    for r in runs:
        new = r["counts"].get("new", {})
        table.add_row(
            str(r["run_id"]),
            r["state"],
            "yes" if r["dry_run"] else "",
            f"{r['events']['after_id']}..{r['events']['upto_id']}",
            r["as_of"][:19],
            str(sum(new.values())),
            str(r["resumes"]),
        )
    return table


def _print_run(report: dict[str, Any]) -> None:
    counts = report["counts"]
    found, new = counts.get("found", {}), counts.get("new", {})
    title = (
        f"run {report['run_id']} {report['state']}"
        + (" (dry run: nothing was written)" if report["dry_run"] else "")
        + f", events {report['events']['after_id']}..{report['events']['upto_id']}"
    )
    table = Table("kind", "found", "new", title=title)
    for kind in sorted(set(found) | set(new)):
        table.add_row(kind, str(found.get(kind, 0)), str(new.get(kind, 0)))
    console.print(table)
    for section in ("classified", "matches", "contacts", "statements"):
        if counts.get(section):
            console.print(f"{section}: {counts[section]}", highlight=False)
    if report.get("seconds"):
        console.print(f"seconds: {report['seconds']}", highlight=False)
    asked = report.get("deletion_requests", {})
    if asked.get("requested"):
        console.print(f"deletion requested: {asked['by_agency']}", highlight=False)


@click.command()
@click.option(
    "--dry-run", is_flag=True, help="Do everything, then roll it back; only the run is recorded."
)
@click.option(
    "--resume", "resume_run", type=int, metavar="RUN", help="Continue a crashed or failed run."
)
@click.option(
    "--full", is_flag=True, help="Re-check every event, not only those since the last run."
)
@click.option("--list", "list_runs", is_flag=True, help="List recent runs instead of running.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
@run_async
async def reconcile(
    ctx: click.Context,
    dry_run: bool,
    resume_run: int | None,
    full: bool,
    list_runs: bool,
    as_json: bool,
) -> None:
    """Run batch reconciliation: events since the last run against our placements, contact
    rules, three-way matching with the lender's payment feed, agency statements, and the SLA
    checks (overdue acknowledgements, first activity, promises, statements, deletion
    confirmations). Every disagreement becomes a mismatch; the run records its inputs'
    hashes and counts. Then placements that ended are sent a data.deletion_requested
    ([privacy] in gateway.toml)."""
    from gateway.reconciliation import runs as recon_runs

    if resume_run is not None and (dry_run or full):
        raise click.UsageError("--resume continues a run as it started; drop --dry-run/--full")
    gateway = await open_gateway(ctx)
    try:
        if list_runs:
            runs = [r.as_dict() for r in await recon_runs.recent(gateway.db)]
            if as_json:
                click.echo(json.dumps(runs, indent=2, ensure_ascii=False))
            else:
                console.print(_runs_table(runs))
            return
        engine = gateway.recon_engine()
        if resume_run is not None:
            report = await engine.resume(resume_run)
        else:
            report = await engine.run(dry_run=dry_run, full=full)
        result = report.as_dict()
        if not dry_run:
            result["deletion_requests"] = (await gateway.request_deletions()).as_dict()
    finally:
        await gateway.aclose()
    if as_json:
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        _print_run(result)


@click.group()
def payments() -> None:
    """The lender's payment feed: money the lender actually received."""


@payments.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
@run_async
async def payments_import(ctx: click.Context, file: Path, as_json: bool) -> None:
    """Import a payment feed (CSV or JSON Lines; see README "Lender payment feed"). Bad
    lines are reported as ``file:line: field: reason`` and skipped; importing the same file
    or the same receipts again changes nothing."""
    from gateway.clock import to_datetime
    from gateway.reconciliation.payment_feed import import_feed

    gateway = await open_gateway(ctx)
    try:
        report = await import_feed(file, db=gateway.db, now=to_datetime(gateway.clock.now()))
    finally:
        await gateway.aclose()
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    elif report.already_imported:
        console.print(f"{file}: already imported as feed {report.feed_id}; nothing changed")
    else:
        console.print(
            f"feed {report.feed_id}: {report.imported} receipt(s) imported, "
            f"{report.duplicates} already known, {report.unplaced} on cases never placed, "
            f"{len(report.errors)} line error(s)",
            highlight=False,
        )
        for error in report.errors[:50]:
            console.print(f"  {error}", markup=False, highlight=False)
    if report.errors:
        ctx.exit(1)


@payments.command("list")
@click.option("--unmatched", is_flag=True, help="Only receipts no match has consumed.")
@click.option("--limit", type=int, default=50, show_default=True, help="At most this many rows.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@click.pass_context
@run_async
async def payments_list(ctx: click.Context, unmatched: bool, limit: int, as_json: bool) -> None:
    """List imported receipts, newest first, with the match that consumed each."""
    from gateway.store.recon_tables import LenderPayment, PaymentMatch

    receipts = LenderPayment.__table__  # type: ignore[attr-defined]
    links = PaymentMatch.__table__  # type: ignore[attr-defined]
    r, m = receipts.c, links.c
    first_match = (
        sa.select(sa.func.min(m.match_key)).where(m.lender_payment_id == r.id).scalar_subquery()
    )
    query = (
        sa.select(
            r.id,
            r.payment_id,
            r.kind,
            r.placement_id,
            r.agency_id,
            r.amount_minor,
            r.currency,
            r.received_at,
            first_match.label("match"),
        )
        .order_by(r.id.desc())
        .limit(limit)
    )
    if unmatched:
        query = query.where(first_match.is_(None))
    gateway = await open_gateway(ctx)
    try:
        async with gateway.db.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
    finally:
        await gateway.aclose()
    if as_json:
        click.echo(json.dumps([dict(row) for row in rows], default=str, indent=2))
        return
    table = Table("id", "receipt", "kind", "placement", "agency", "amount", "received", "match")
    for row in rows:
        table.add_row(
            str(row["id"]),
            row["payment_id"],
            row["kind"],
            row["placement_id"] or "",
            row["agency_id"] or "",
            f"{row['amount_minor']} {row['currency']}",
            f"{row['received_at']:%Y-%m-%d %H:%M}",
            row["match"] or "",
        )
    console.print(table)


COMMANDS: list[click.Command] = [reconcile, payments]

__all__ = ["COMMANDS"]
