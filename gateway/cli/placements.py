"""CLI commands that move cases to agencies: ``allocate``, ``recall`` and ``dispatch``
(``serve`` does the last on a timer)."""

import json

import click
from rich.table import Table

from gateway.cli.context import console, err_console, open_gateway, run_async


@click.command()
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


@click.command()
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


@click.command()
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


COMMANDS = [allocate, recall, dispatch]

__all__ = ["COMMANDS"]
