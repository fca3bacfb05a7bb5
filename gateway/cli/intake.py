"""CLI command of intake: ``intake FILE`` imports overdue accounts."""

import json
from pathlib import Path

import click
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from gateway.cli.attribution import acting_user, recorded_actor
from gateway.cli.context import console, err_console, open_gateway, run_async


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--strict", is_flag=True, help="Refuse the whole file if any row is bad.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
@run_async
async def intake(ctx: click.Context, file: Path, strict: bool, as_json: bool) -> None:
    """Import overdue accounts from FILE (CSV or JSON Lines), streaming.

    Bad rows are reported with file, line and every bad field, and skipped (unless
    --strict); the command then exits 1, so a script notices. Importing the same file
    again changes nothing; a changed balance of a placed case queues a placement.amended
    packet to its agency. The file format is in README ("Intake file").

    Each import is a claim batch (债权确认) made by the --as user (or --token's); with
    [claims] confirmation = "four_eyes" a second person approves it (`claims approve`)
    before its cases can be allocated.
    """
    from gateway.intake.service import import_file

    gateway = await open_gateway(ctx)
    try:
        confirmation = gateway.settings.claims.confirmation
        user = await acting_user(
            ctx,
            gateway.db,
            gateway.clock,
            required=confirmation == "four_eyes",
            purpose="intake (the importer makes the claim batch a second person confirms)",
        )
        maker = (
            user.name if user is not None else await recorded_actor(ctx, gateway.db, gateway.clock)
        )
        with Progress(
            TextColumn("[bold]intake[/] {task.description}"),
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            console=err_console,
            disable=as_json or not err_console.is_terminal,
        ) as progress:
            size = file.stat().st_size  # noqa: ASYNC240  (one stat before streaming)
            task = progress.add_task(file.name, total=size)
            report = await import_file(
                file,
                db=gateway.db,
                pii=gateway.pii,
                placements=gateway.placements,
                allocation=gateway.settings.allocation,
                clock=gateway.clock,
                strict=strict,
                confirmation=confirmation,
                maker=maker,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
                documents=gateway.documents,
            )
    finally:
        await gateway.aclose()
    summary = {
        "file": str(file),
        "rows": report.rows,
        "inserted": report.inserted,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "amended": report.amended,
        "rejected": report.rejected,
        "holds_added": report.holds_added,
        "holds_released": report.holds_released,
        "closed": report.closed,
        "reopened": report.reopened,
        "recalled": report.recalled,
        "sha256": report.sha256,
        "documents_recorded": report.documents_recorded,
        "documents_changed": report.documents_changed,
        "documents_refused": report.documents_refused,
        "claim_batch": None if report.claim_batch is None else report.claim_batch.as_dict(),
        "errors": [str(e) for e in report.errors[:100]],
    }
    if as_json:
        click.echo(json.dumps(summary, ensure_ascii=False, indent=2))
        if report.rejected:
            ctx.exit(1)
        return
    for error in report.errors[:20]:
        err_console.print(f"  [yellow]rejected[/] {error}", highlight=False)
    if report.rejected > 20:
        err_console.print(f"  … and {report.rejected - 20} more rejected rows")
    console.print(
        f"{report.rows} rows: {report.inserted} new, {report.updated} updated, "
        f"{report.unchanged} unchanged, {report.amended} amendments queued, "
        f"{report.rejected} rejected"
    )
    if report.holds_added or report.holds_released or report.closed or report.reopened:
        console.print(
            f"lifecycle: {report.holds_added} holds added, {report.holds_released} released, "
            f"{report.closed} closed as paid off or cured, {report.reopened} reopened, "
            f"{report.recalled} placements recalled"
        )
    if report.documents_recorded or report.documents_refused:
        console.print(
            f"documents: {report.documents_recorded} recorded from the document store "
            f"({report.documents_changed} new versions of changed files), "
            f"{report.documents_refused} refused (see the log)"
        )
    batch = report.claim_batch
    if batch is not None and batch.status == "pending":
        console.print(
            f"claim batch {batch.id}: {batch.cases} cases pending confirmation by a second "
            f"person (`claims show {batch.id}`, then `--as OTHER claims approve {batch.id}`); "
            "until then none of its cases is allocated",
            highlight=False,
        )
    elif batch is not None:
        console.print(f"claim batch {batch.id}: {batch.status} by {batch.decided_by}")
    if report.rejected:
        ctx.exit(1)


COMMANDS: list[click.Command] = [intake]

__all__ = ["COMMANDS"]
