"""``agency-gateway agencies ...``: each agency's status, its endpoint switch, recalling
everything it holds when its contract ends, and its scorecard for a period."""

import json
from datetime import UTC, datetime, timedelta

import click
import sqlalchemy as sa
from rich.table import Table

from gateway.cli.context import console, err_console, open_gateway, run_async
from gateway.errors import GatewayError


@click.group()
def agencies() -> None:
    """Agencies: status (placements, backlog, endpoints), switches, contract end
    (recall-all) and scorecards."""


@agencies.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@click.pass_context
@run_async
async def agencies_list(ctx: click.Context, as_json: bool) -> None:
    """Each agency with its open placements, outbox backlog and endpoint status."""
    from gateway.allocation.agencies import agency_overview

    gateway = await open_gateway(ctx)
    try:
        rows = await agency_overview(gateway.db, gateway.agencies)
    finally:
        await gateway.aclose()
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False, default=str))
        return
    table = Table("agency", "channel", "open", "pending", "dead", "unknown", "endpoint")
    for r in rows:
        table.add_row(
            str(r["agency_id"]),
            str(r["channel"]),
            str(r["open_placements"]),
            str(r["outbox_pending"]),
            str(r["outbox_dead"]),
            str(r["outbox_unknown"]),
            "disabled: " + str(r["disabled_reason"]) if r["endpoint_disabled"] else "enabled",
        )
    console.print(table)


@agencies.command("enable")
@click.argument("agency_id")
@click.pass_context
@run_async
async def agencies_enable(ctx: click.Context, agency_id: str) -> None:
    """Re-enable AGENCY_ID's endpoint after it answered 410 Gone (or was disabled)."""
    from gateway.allocation.agencies import set_endpoint_disabled

    gateway = await open_gateway(ctx)
    try:
        if agency_id not in gateway.agencies:
            raise GatewayError(f"no agency {agency_id!r} in {gateway.settings.agencies_dir}")
        await set_endpoint_disabled(gateway.db, agency_id, disabled=False, reason=None)
    finally:
        await gateway.aclose()
    console.print(f"{agency_id}: endpoint enabled; queued packets will be sent on the next cycle")


@agencies.command("disable")
@click.argument("agency_id")
@click.option("--reason", required=True, help="Why (shown to ops).")
@click.pass_context
@run_async
async def agencies_disable(ctx: click.Context, agency_id: str, reason: str) -> None:
    """Stop sending to AGENCY_ID; packets stay queued until it is enabled again."""
    from gateway.allocation.agencies import set_endpoint_disabled

    gateway = await open_gateway(ctx)
    try:
        if agency_id not in gateway.agencies:
            raise GatewayError(f"no agency {agency_id!r} in {gateway.settings.agencies_dir}")
        await set_endpoint_disabled(gateway.db, agency_id, disabled=True, reason=reason)
    finally:
        await gateway.aclose()
    console.print(f"{agency_id}: endpoint disabled ({reason})")


@agencies.command("recall-all")
@click.argument("agency_id")
@click.option(
    "--reason", default="CONTRACT_END", show_default=True, help="Recall reason code sent."
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--approval",
    "approval_id",
    type=int,
    help="Run under this approved four-eyes request (see `approvals`).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@click.pass_context
@run_async
async def agencies_recall_all(
    ctx: click.Context,
    agency_id: str,
    reason: str,
    yes: bool,
    approval_id: int | None,
    as_json: bool,
) -> None:
    """Recall every open placement AGENCY_ID holds, for when its contract ends: each gets
    placement.recalled (as `recall` would), and once ended, a data.deletion_requested
    (see README "Privacy: proof of deletion"). To stop new cases reaching it, set
    `enabled = false` in its config; its replies and result files are still read.

    Recalling more than [four_eyes] bulk_recall.above placements needs a second person: the
    command stores an approval request and exits 1 naming it; once another user approved
    it, run this again with --approval ID (the open placements must be the same ones). The
    --as/--token user is recorded as who recalled them."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from gateway.allocation.placements import P
    from gateway.approvals.gates import gate
    from gateway.cli.attribution import acting_user, ops_actor
    from gateway.clock import to_datetime
    from gateway.lifecycle import OPEN_PLACEMENT_STATES

    gateway = await open_gateway(ctx)
    try:
        if agency_id not in gateway.agencies:
            raise GatewayError(f"no agency {agency_id!r} in {gateway.settings.agencies_dir}")
        user = await acting_user(ctx, gateway.db, gateway.clock)
        async with gateway.db.connect() as conn:
            open_ids = list(
                (
                    await conn.execute(
                        sa.select(P.id)
                        .where(P.agency_id == agency_id, P.state.in_(OPEN_PLACEMENT_STATES))
                        .order_by(P.id)
                    )
                ).scalars()
            )
        held = len(open_ids)
        await gate(
            gateway.db,
            gateway.settings.four_eyes,
            action="bulk_recall",
            subject=f"agency:{agency_id}",
            size=held,
            payload={"agency": agency_id, "reason": reason.upper(), "placements": open_ids},
            maker=user,
            approval_id=approval_id,
            now=to_datetime(gateway.clock.now()),
            count=held,
        )
        if not yes and held and not as_json:
            click.confirm(
                f"recall all {held} open placements of {agency_id} ({reason})?", abort=True
            )
        with Progress(
            TextColumn(f"[bold]recall[/] {agency_id}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=err_console,
            disable=as_json or not err_console.is_terminal,
        ) as progress:
            task = progress.add_task(agency_id, total=held)
            recalled = await gateway.placements.recall_agency(
                agency_id,
                reason.upper(),
                progress=lambda done, total: progress.update(task, completed=done, total=total),
                actor=ops_actor(user.name if user is not None else None),
            )
    finally:
        await gateway.aclose()
    if as_json:
        click.echo(json.dumps({"agency_id": agency_id, "recalled": recalled}, indent=2))
        return
    console.print(
        f"{agency_id}: recalled {len(recalled)} placement(s) ({reason.upper()}); "
        "placement.recalled queued (run `dispatch` or `serve`); deletion requests follow"
    )


@agencies.command("scorecard")
@click.option(
    "--from",
    "start",
    type=click.DateTime(["%Y-%m-%d"]),
    help="First day of placements (UTC). Default: 30 days before --to.",
)
@click.option(
    "--to",
    "end",
    type=click.DateTime(["%Y-%m-%d"]),
    help="Day after the last day of placements (UTC). Default: tomorrow.",
)
@click.option(
    "--strategy",
    type=click.Choice(["champion", "challenger"]),
    default=None,
    help="Only placements allocation drew this way (compare the two; see `allocate`).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@click.pass_context
@run_async
async def agencies_scorecard(
    ctx: click.Context,
    start: datetime | None,
    end: datetime | None,
    strategy: str | None,
    as_json: bool,
) -> None:
    """How each agency served the placements it received in a period: recovery (the money
    the lender received and attributed to them / placed; `scorecards fair` compares within
    strata), acknowledgements, first activity, promises and data deletions on time,
    contact-rule violations, reporting breaks and open mismatches (see README "Agency
    scorecards")."""
    from gateway.reporting.scorecards import period, rate, report, scorecards

    try:
        since, until = period(
            start.date() if start else None,
            end.date() if end else None,
            today=datetime.now(UTC).date(),
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--from") from None
    gateway = await open_gateway(ctx)
    try:
        cards = await scorecards(
            gateway.db, gateway.agencies, start=since, end=until, strategy=strategy
        )
    finally:
        await gateway.aclose()
    if as_json:
        out = report(cards, since, until)
        out["strategy"] = strategy
        click.echo(json.dumps(out, indent=2, ensure_ascii=False))
        return
    table = Table(
        "agency",
        "placed",
        "recovered",
        "ack",
        "activity",
        "promises",
        "deletions",
        "violations",
        "breaks",
        "open",
        title=f"{strategy + ' ' if strategy else ''}placements of {since:%Y-%m-%d} to "
        f"{until - timedelta(days=1):%Y-%m-%d}",
        caption="ack, activity, promises, deletions: on time; violations: contact rules; breaks: "
        "reports that disagree with our record; open: unresolved mismatches",
    )
    for c in cards:
        recovery = ", ".join(f"{cur} {rate(bps)}" for cur, bps in sorted(c.recovery_bps.items()))
        table.add_row(
            c.agency_id,
            str(c.placements),
            recovery or "-",
            rate(c.ack.on_time_bps),
            rate(c.first_activity.on_time_bps),
            rate(c.promises.on_time_bps),
            rate(c.deletions.on_time_bps),
            str(c.contact_violations),
            str(c.reporting_breaks),
            str(c.open_mismatches),
        )
    console.print(table)


COMMANDS = [agencies]

__all__ = ["COMMANDS"]
