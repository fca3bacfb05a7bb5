"""CLI command of intake: ``intake FILE`` imports overdue accounts."""

import json
from pathlib import Path

import click
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

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
    """
    from gateway.intake.service import import_file

    gateway = await open_gateway(ctx)
    try:
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
                progress=lambda done, total: progress.update(task, completed=done, total=total),
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
    if report.rejected:
        ctx.exit(1)


COMMANDS: list[click.Command] = [intake]

__all__ = ["COMMANDS"]
