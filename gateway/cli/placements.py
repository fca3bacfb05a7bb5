"""CLI commands that move cases to agencies: ``allocate``, ``recall`` and ``dispatch``
(``serve`` does the last on a timer)."""

import json

import click
from rich.table import Table

from gateway.allocation.routing import REASONS
from gateway.cli.attribution import acting_user, recorded_actor
from gateway.cli.context import console, err_console, open_gateway, run_async
from gateway.config.settings import BUCKET_NAMES


@click.command()
@click.option(
    "--preview",
    is_flag=True,
    help="Show what a round would do, by agency and bucket; write nothing.",
)
@click.option(
    "--approval",
    "approval_id",
    type=int,
    help="Run the round under this approved four-eyes request (see `approvals`).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
@run_async
async def allocate(
    ctx: click.Context, preview: bool, approval_id: int | None, as_json: bool
) -> None:
    """Place every allocatable case with an agency that can take it, tier by tier.

    A new case goes to the first [allocation] tier with an agency whose contract takes it
    (and waits when that tier is full); a returned or expired case goes to the next tier
    after the cool-off, never to an agency that had it; an escalated one to the legal tier.
    A debtor's accounts travel together (mixed buckets by [allocation] mixed_debtors). Held,
    not overdue and zero-balance cases are never placed. Each placement is written with its
    placement.created packet and evidence leaf in one transaction, and each debtor group's
    decision (every agency's verdict, the weights, the draw) is recorded; every case left
    unplaced gets its reason. The result is deterministic for the same cases and seed. With
    performance_weighting, champion draws weigh agencies by recent recovery; a
    challenger_share of debtors is drawn by contract weights alone.

    --preview runs the same decision and prints it without writing anything.

    Cases whose claim batch is not approved stay unallocated (`unconfirmed`). A round that
    would place more than [four_eyes] allocation_round.above cases needs a second person:
    the command stores an approval request and exits 1 naming it; once another user has
    approved it, run `allocate --approval ID` (the round re-planned must not place more
    cases than were approved). The --as/--token user is recorded with the round.

    One round runs at a time across every process on the database: while another runs
    (another `serve`, another `allocate`), the command exits 1 naming its holder.
    """
    from gateway.approvals.gates import attest, gate
    from gateway.clock import to_datetime

    gateway = await open_gateway(ctx)
    try:
        if preview:
            report = await gateway.placements.preview()
        else:
            # One round at a time across every process: RoleHeld names the other's holder.
            async with gateway.placements.exclusive_round():
                user = await acting_user(ctx, gateway.db, gateway.clock)
                now = to_datetime(gateway.clock.now())
                found, result, report = await gateway.placements.plan(now)
                ran_under = await gate(
                    gateway.db,
                    gateway.settings.four_eyes,
                    action="allocation_round",
                    subject=f"allocation:{now:%Y-%m-%dT%H:%M:%SZ}",
                    size=report.placed,
                    payload={
                        "placed": report.placed,
                        "by_agency": dict(sorted(report.by_agency.items())),
                        "unallocated": report.unallocated,
                    },
                    maker=user,
                    approval_id=approval_id,
                    now=now,
                    count=report.placed,
                    match="count",
                )
                report = await gateway.placements.commit(found, result, report, now=now)
                if report.round_id is not None:
                    await attest(
                        gateway.db,
                        kind="allocation_round",
                        ref=f"round:{report.round_id}",
                        fields={
                            "by": user.name
                            if user is not None
                            else await recorded_actor(ctx, gateway.db, gateway.clock),
                            "placed": report.placed,
                            "unallocated": report.unallocated,
                            "approval": ran_under,
                        },
                        now=now,
                    )
        tiers = {agency_id: agency.tier for agency_id, agency in gateway.agencies.items()}
    finally:
        await gateway.aclose()
    by_bucket: dict[str, dict[str, int]] = {}
    for (agency_id, bucket), n in sorted(report.by_agency_bucket.items()):
        by_bucket.setdefault(agency_id, {})[bucket] = n
    if as_json:
        click.echo(
            json.dumps(
                {
                    "preview": preview,
                    "round_id": report.round_id,
                    "placed": report.placed,
                    "unallocated": report.unallocated,
                    "by_agency": dict(report.by_agency),
                    "by_agency_bucket": by_bucket,
                    "by_strategy": dict(report.by_strategy),
                    "performance_factors": [
                        {"agency": a, "currency": cur, "factor": round(f, 4)}
                        for (a, cur), f in sorted(report.factors.items())
                    ],
                    "reasons": dict(sorted(report.reasons.items())),
                    "reason_labels": {code: REASONS[code] for code in sorted(report.reasons)},
                    "decisions_recorded": report.decisions,
                },
                indent=2,
                ensure_ascii=False,
            )
        )
        return
    buckets = [b for b in BUCKET_NAMES if any(b in row for row in by_bucket.values())]
    title = "would be placed (preview: nothing written)" if preview else "placed"
    table = Table("agency", "tier", *buckets, "total", title=title)
    for agency_id, row in by_bucket.items():
        table.add_row(
            agency_id,
            tiers.get(agency_id, "?"),
            *(str(row.get(b, "")) for b in buckets),
            str(report.by_agency[agency_id]),
        )
    if by_bucket:
        console.print(table)
    verb = "would place" if preview else "placed"
    console.print(f"{verb} {report.placed}, unallocated {report.unallocated}")
    if report.by_strategy.get("challenger"):
        console.print(
            f"  champion {report.by_strategy['champion']}, "
            f"challenger {report.by_strategy['challenger']}"
        )
    for (agency_id, currency), factor in sorted(report.factors.items()):
        console.print(f"  performance factor {agency_id} {currency}: {factor:.2f}")
    for code, n in report.reasons.most_common():
        console.print(f"  {n} unallocated: {REASONS.get(code, code)} ({code})", highlight=False)
    if report.round_id:
        console.print(
            f"round {report.round_id}: {report.decisions} decision(s) recorded "
            "(`cases show ID` explains each case)",
            highlight=False,
        )


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
    The --as/--token user (else the OS user) is recorded as who recalled it.
    """
    from gateway.clock import to_datetime

    gateway = await open_gateway(ctx)
    try:
        actor = await recorded_actor(ctx, gateway.db, gateway.clock)
        async with gateway.db.transaction() as conn:
            placement_id = await gateway.placements.recall_in(
                conn, case_id, reason.upper(), now=to_datetime(gateway.clock.now()), actor=actor
            )
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
