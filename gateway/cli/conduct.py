"""CLI group ``conduct``: collector conduct. ``violations`` counts the conduct mismatches by
agency and kind; ``qa draw|list|review`` keep the monthly QA sample of call recordings
(gateway.conduct). Tables, or JSON with ``--json``.

Who acts is the global ``--as USER`` or ``--token`` (else the operating-system user),
recorded as ``ops:NAME`` with the draw and each review.
"""

import dataclasses
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import click
from rich.table import Table

from gateway.cli.attribution import recorded_actor
from gateway.cli.context import (
    GatewayGroup,
    console,
    echo_json,
    json_option,
    open_gateway,
    run_async,
)
from gateway.clock import to_datetime
from gateway.conduct.sampling import QA_ACTIONS, month_bounds
from gateway.conduct.violations import VIOLATION_KINDS

if TYPE_CHECKING:
    from gateway.conduct.qa import QaItem

_MONTH_HELP = "The month, YYYY-MM, in the lender's time zone (default: last month)."


def _last_month(today: date) -> str:
    first = today.replace(day=1)
    return f"{first - timedelta(days=1):%Y-%m}"


@click.group(cls=GatewayGroup)
def conduct() -> None:
    """Collector conduct: violations raised as contact attempts arrive (third parties,
    holds, disputes, quiet hours and caps) and the monthly QA sample of call recordings.
    README "Collector conduct"."""


@conduct.command("violations")
@click.option("--month", help=_MONTH_HELP.replace("last month", "this month"))
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), help="From this day (UTC).")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), help="Before this day (UTC).")
@json_option
@click.pass_context
@run_async
async def violations(
    ctx: click.Context,
    month: str | None,
    since: datetime | None,
    until: datetime | None,
    as_json: bool,
) -> None:
    """Conduct violations raised in a period, by agency and kind (dismissed ones are not
    counted): third_party_contact, contact_during_hold, contact_during_dispute,
    contact_rule_violation (quiet hours, caps) and recording_qa_failed."""
    from gateway.conduct.violations import violation_counts

    gateway = await open_gateway(ctx)
    try:
        zone = ZoneInfo(gateway.settings.reconciliation.timezone)
        now = to_datetime(gateway.clock.now())
        if since is not None or until is not None:
            start = since.replace(tzinfo=UTC) if since else datetime(1970, 1, 1, tzinfo=UTC)
            end = until.replace(tzinfo=UTC) if until else now + timedelta(seconds=1)
            label = f"{start:%Y-%m-%d} to {end:%Y-%m-%d}"
        else:
            label = month or f"{now.astimezone(zone):%Y-%m}"
            start, end = month_bounds(label, zone)
        async with gateway.db.snapshot() as conn:
            counts = await violation_counts(conn, start=start, end=end)
    finally:
        await gateway.aclose()
    if as_json:
        echo_json({"period": label, "start": start, "end": end, "agencies": counts})
        return
    table = Table("agency", *VIOLATION_KINDS, "total", title=f"conduct violations, {label}")
    for agency_id in sorted(counts):
        row = counts[agency_id]
        table.add_row(
            agency_id, *(str(row.get(k, 0)) for k in VIOLATION_KINDS), str(sum(row.values()))
        )
    if not counts:
        console.print(f"no conduct violations in {label}", highlight=False)
        return
    console.print(table)


@conduct.group("qa")
def qa_group() -> None:
    """The monthly QA sample of call recordings per agency ([conduct] qa_sample_size):
    drawn once per month, reproducibly, stratified by collector."""


@qa_group.command("draw")
@click.option("--month", help=_MONTH_HELP)
@click.option("--agency", "agency_ids", multiple=True, help="Only this agency (repeatable).")
@click.option("--size", type=click.IntRange(1, 1000), help="Override [conduct] qa_sample_size.")
@json_option
@click.pass_context
@run_async
async def qa_draw(
    ctx: click.Context,
    month: str | None,
    agency_ids: tuple[str, ...],
    size: int | None,
    as_json: bool,
) -> None:
    """Draw the month's sample for every agency (or those named). A month already drawn
    for an agency is shown as drawn, never drawn again."""
    from gateway.conduct.qa import draw_month

    gateway = await open_gateway(ctx)
    try:
        zone = ZoneInfo(gateway.settings.reconciliation.timezone)
        now = to_datetime(gateway.clock.now())
        chosen = month or _last_month(now.astimezone(zone).date())
        actor = await recorded_actor(ctx, gateway.db, gateway.clock)
        ids = list(agency_ids) or sorted(gateway.agencies)
        unknown = [a for a in ids if a not in gateway.agencies]
        if unknown:
            raise click.BadParameter(f"unknown agency {', '.join(unknown)}", param_hint="--agency")
        draws = []
        for agency_id in ids:
            async with gateway.db.transaction() as conn:
                draws.append(
                    await draw_month(
                        conn,
                        agency_id,
                        chosen,
                        size=size or gateway.settings.conduct.qa_sample_size,
                        zone=zone,
                        actor=actor,
                        now=now,
                    )
                )
    finally:
        await gateway.aclose()
    if as_json:
        echo_json(
            [
                {
                    "agency_id": d.agency_id,
                    "month": d.month,
                    "new": d.new,
                    "candidates": d.candidates,
                    "items": [i.id for i in d.items],
                }
                for d in draws
            ]
        )
        return
    for d in draws:
        if d.new:
            line = f"{d.agency_id} {d.month}: drew {len(d.items)} of {d.candidates} recorded calls"
        else:
            line = f"{d.agency_id} {d.month}: already drawn ({len(d.items)} items), unchanged"
        console.print(line, highlight=False)


@qa_group.command("list")
@click.option("--month", help=_MONTH_HELP)
@click.option("--agency", "agency_id", help="Only this agency.")
@json_option
@click.pass_context
@run_async
async def qa_list(
    ctx: click.Context, month: str | None, agency_id: str | None, as_json: bool
) -> None:
    """The month's sample with each item's state (drawn, requested, passed, failed,
    unavailable). Reviewers' notes are shown with --json only."""
    from gateway.conduct.qa import progress, sample

    gateway = await open_gateway(ctx)
    try:
        zone = ZoneInfo(gateway.settings.reconciliation.timezone)
        now = to_datetime(gateway.clock.now())
        chosen = month or _last_month(now.astimezone(zone).date())
        month_bounds(chosen, zone)
        async with gateway.db.snapshot() as conn:
            items = await sample(conn, month=chosen, agency_id=agency_id, pii=gateway.pii)
    finally:
        await gateway.aclose()
    if as_json:
        echo_json({"month": chosen, "progress": progress(items), "items": items_json(items)})
        return
    if not items:
        console.print(f"no QA sample for {chosen}; draw it with `conduct qa draw`")
        return
    table = Table("id", "agency", "#", "collector", "recording", "called at", "state", "reviewer")
    for i in items:
        table.add_row(
            str(i.id),
            i.agency_id,
            str(i.rank),
            i.collector_id or "",
            i.recording_ref,
            f"{i.attempted_at.astimezone(zone):%Y-%m-%d %H:%M}",
            i.state,
            i.reviewer or "",
        )
    console.print(table)
    done = progress(items)
    console.print(", ".join(f"{k} {v}" for k, v in done.items()), highlight=False)


def items_json(items: "Sequence[QaItem]") -> list[dict[str, object]]:
    return [dataclasses.asdict(i) for i in items]


@qa_group.command("review")
@click.argument("item_id", type=int)
@click.argument("action", type=click.Choice(QA_ACTIONS))
@click.option("--note", help="What the reviewer heard (kept sealed with the PII keys).")
@json_option
@click.pass_context
@run_async
async def qa_review(
    ctx: click.Context, item_id: int, action: str, note: str | None, as_json: bool
) -> None:
    """Move QA item ITEM_ID: ``request`` (the recording was asked of the agency), then
    ``pass``, ``fail`` or ``unavailable``. A failed or unavailable recording raises the
    mismatch recording_qa_failed against the agency."""
    from gateway.conduct.qa import review

    gateway = await open_gateway(ctx)
    try:
        actor = await recorded_actor(ctx, gateway.db, gateway.clock)
        async with gateway.db.transaction() as conn:
            item = await review(
                conn,
                item_id,
                action,
                actor=actor,
                note=note,
                pii=gateway.pii,
                now=to_datetime(gateway.clock.now()),
            )
    finally:
        await gateway.aclose()
    if as_json:
        echo_json(items_json([item])[0])
        return
    console.print(f"QA item {item.id} ({item.agency_id} {item.month}): {item.state}")


COMMANDS = [conduct]

__all__ = ["COMMANDS"]
