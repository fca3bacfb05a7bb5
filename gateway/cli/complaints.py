"""CLI group ``complaints``: complaints about collection, from the agencies' events, the
lender's complaint channel and ops; their queue, deadlines, actions and the monthly report.
Tables, or JSON with ``--json``.

Who acts is the global ``--as USER`` or ``--token`` (gateway.cli.attribution), recorded as
``ops:NAME`` with every change and in its ``complaint`` evidence leaf.
"""

import asyncio
from datetime import UTC, datetime
from pathlib import Path

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
from gateway.complaints.states import CATEGORIES, OUTCOMES, STATES
from gateway.complaints.store import ComplaintFilter, ComplaintRecord


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _print(record: ComplaintRecord) -> None:
    flags = [f for f, on in (("OVERDUE", record.overdue), ("held", record.hold_id)) if on]
    console.print(
        f"complaint {record.id} ({record.source} {record.source_ref}) on case "
        f"{record.case_id}: {record.state}"
        + (f", {record.outcome}" if record.outcome else "")
        + (f" [{', '.join(flags)}]" if flags else ""),
        highlight=False,
        markup=False,
    )
    console.print(
        f"  agency {record.agency_id or '-'}, placement {record.placement_id or '-'}, "
        f"collector {record.collector_id or '-'}; owner {record.owner or '-'}; "
        f"due {_when(record.deadline_at)}" + (" (extended)" if record.extended else ""),
        highlight=False,
        markup=False,
    )


@click.group(cls=GatewayGroup)
def complaints() -> None:
    """Complaints about collection: each has a deadline from [complaints], an owner and an
    outcome, and may hold the case (the agency is told by a recall). States: open →
    investigating → resolved (upheld, partly_upheld, not_upheld, withdrawn) → closed;
    reopen from resolved or closed."""


@complaints.command("list")
@click.option(
    "--state",
    type=click.Choice([*STATES, "waiting"]),
    help="Only this state; waiting = open or investigating.",
)
@click.option("--overdue", is_flag=True, help="Only complaints waiting past their deadline.")
@click.option("--agency", "agency_id", help="Only complaints held against this agency.")
@click.option("--case", "case_id", help="Only this case's complaints.")
@click.option("--limit", default=200, show_default=True, type=click.IntRange(1, 10_000))
@json_option
@click.pass_context
@run_async
async def complaints_list(
    ctx: click.Context,
    state: str | None,
    overdue: bool,
    agency_id: str | None,
    case_id: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """The queue, the nearest deadline first (default: every state)."""
    gateway = await open_gateway(ctx)
    try:
        found = await gateway.complaints().find(
            ComplaintFilter(state, agency_id, case_id, overdue, limit)
        )
    finally:
        await gateway.aclose()
    if as_json:
        echo_json([r.as_dict() for r in found])
        return
    table = Table("id", "case", "agency", "source", "category", "state", "owner", "due")
    for r in found:
        due = _when(r.deadline_at) + (" OVERDUE" if r.overdue else "")
        state_text = r.state + (f" ({r.outcome})" if r.outcome else "")
        table.add_row(
            str(r.id),
            r.case_id,
            r.agency_id or "-",
            r.source,
            r.category,
            state_text,
            r.owner or "-",
            due,
        )
    console.print(table)


@complaints.command("show")
@click.argument("complaint_id", type=int)
@click.option("--summary", "reveal", is_flag=True, help="Also print the summary (personal data).")
@json_option
@click.pass_context
@run_async
async def complaints_show(
    ctx: click.Context, complaint_id: int, reveal: bool, as_json: bool
) -> None:
    """One complaint in full; its summary only with --summary."""
    gateway = await open_gateway(ctx)
    try:
        service = gateway.complaints()
        record = await service.get(complaint_id)
        summary = await service.summary(complaint_id) if reveal else None
    finally:
        await gateway.aclose()
    if as_json:
        echo_json(record.as_dict() | ({"summary": summary} if reveal else {}))
        return
    _print(record)
    console.print(
        f"  {record.channel}, {record.category}; received {_when(record.received_at)}"
        + (f", contact {_when(record.contact_at)}" if record.contact_at else ""),
        highlight=False,
        markup=False,
    )
    if record.outcome_note:
        console.print(f"  answer: {record.outcome_note}", highlight=False, markup=False)
    if reveal:
        console.print(f"  summary: {summary or '-'}", highlight=False, markup=False)


def _moment(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not ISO 8601", param_hint=name) from None
    if parsed.tzinfo is None:
        raise click.BadParameter("give an offset, e.g. +08:00", param_hint=name)
    return parsed


@complaints.command("open")
@click.option("--case", "case_id", help="The case complained about.")
@click.option("--placement", "placement_id", help="Or the placement (its case and agency).")
@click.option("--channel", required=True, help="How the debtor complained: hotline, branch...")
@click.option("--category", type=click.Choice(CATEGORIES), default="other", show_default=True)
@click.option("--summary", help="What the debtor said (personal data: sealed at rest).")
@click.option("--received-at", help="When it was received (ISO 8601 with offset; default now).")
@click.option("--contact-at", help="When the complained-of contact happened (attribution).")
@click.option("--collector", "collector_id", help="The collector named, when known.")
@click.option("--ref", "source_ref", help="Your reference (a ticket number); never opened twice.")
@click.option("--owner", help="Who answers it.")
@click.option("--hold/--no-hold", default=None, help="Hold the case now ([complaints] default).")
@json_option
@click.pass_context
@run_async
async def complaints_open(
    ctx: click.Context,
    case_id: str | None,
    placement_id: str | None,
    channel: str,
    category: str,
    summary: str | None,
    received_at: str | None,
    contact_at: str | None,
    collector_id: str | None,
    source_ref: str | None,
    owner: str | None,
    hold: bool | None,
    as_json: bool,
) -> None:
    """Open a complaint by hand. It is held against the placement given, else the one that
    held the case at --contact-at (else at receipt); its deadline follows [complaints]."""
    if not case_id and not placement_id:
        raise click.UsageError("give --case or --placement")
    gateway = await open_gateway(ctx)
    try:
        opened = await gateway.complaints().open(
            case_id=case_id,
            placement_id=placement_id,
            channel=channel,
            category=category,
            summary=summary,
            received_at=_moment(received_at, "--received-at"),
            contact_at=_moment(contact_at, "--contact-at"),
            collector_id=collector_id,
            source_ref=source_ref,
            owner=owner,
            hold=hold,
            actor=await recorded_actor(ctx, gateway.db, gateway.clock),
        )
    finally:
        await gateway.aclose()
    if as_json:
        echo_json(opened.complaint.as_dict() | {"created": opened.created})
        return
    if not opened.created:
        console.print(
            f"reference {opened.complaint.source_ref} opened complaint "
            f"{opened.complaint.id} before; nothing changed",
            highlight=False,
        )
    _print(opened.complaint)


@complaints.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
@click.pass_context
@run_async
async def complaints_import(ctx: click.Context, file: Path, as_json: bool) -> None:
    """Open complaints from the lender's complaint file (CSV, UTF-8, a header row; README
    "Complaints" lists the columns). A complaint_id already imported is skipped; bad rows
    are named with line and field. Exits 1 when any row was refused."""
    gateway = await open_gateway(ctx)
    try:
        report = await gateway.complaints().import_file(
            file, actor=await recorded_actor(ctx, gateway.db, gateway.clock)
        )
    finally:
        await gateway.aclose()
    if as_json:
        echo_json(report.as_dict())
    else:
        console.print(
            f"{file}: opened {len(report.opened)}, already known {len(report.known)}, "
            f"refused rows {len({p.line for p in report.problems})}",
            highlight=False,
        )
        for problem in report.problems:
            console.print(f"  {problem}", highlight=False, markup=False)
    if report.problems:
        ctx.exit(1)


async def _act(
    ctx: click.Context, complaint_id: int, action: str, as_json: bool, **options: str | None
) -> None:
    gateway = await open_gateway(ctx)
    try:
        record = await gateway.complaints().act(
            complaint_id,
            action,
            actor=await recorded_actor(ctx, gateway.db, gateway.clock),
            **options,  # type: ignore[arg-type]
        )
    finally:
        await gateway.aclose()
    if as_json:
        echo_json(record.as_dict())
    else:
        _print(record)


note_option = click.option("--note", help="Why, in words (kept with the complaint).")


@complaints.command("assign")
@click.argument("complaint_id", type=int)
@click.argument("owner")
@json_option
@click.pass_context
@run_async
async def complaints_assign(
    ctx: click.Context, complaint_id: int, owner: str, as_json: bool
) -> None:
    """Make OWNER answerable for the complaint."""
    await _act(ctx, complaint_id, "assign", as_json, owner=owner)


@complaints.command("investigate")
@click.argument("complaint_id", type=int)
@note_option
@json_option
@click.pass_context
@run_async
async def complaints_investigate(
    ctx: click.Context, complaint_id: int, note: str | None, as_json: bool
) -> None:
    """Move an open complaint to investigating."""
    await _act(ctx, complaint_id, "investigate", as_json, note=note)


@complaints.command("resolve")
@click.argument("complaint_id", type=int)
@click.option("--outcome", type=click.Choice(OUTCOMES), required=True)
@note_option
@json_option
@click.pass_context
@run_async
async def complaints_resolve(
    ctx: click.Context, complaint_id: int, outcome: str, note: str | None, as_json: bool
) -> None:
    """Answer the complaint with its outcome (answered on time when by its deadline)."""
    await _act(ctx, complaint_id, "resolve", as_json, outcome=outcome, note=note)


@complaints.command("close")
@click.argument("complaint_id", type=int)
@note_option
@json_option
@click.pass_context
@run_async
async def complaints_close(
    ctx: click.Context, complaint_id: int, note: str | None, as_json: bool
) -> None:
    """Close a resolved complaint; its hold on the case is released (unless another open
    complaint on the case holds it too)."""
    await _act(ctx, complaint_id, "close", as_json, note=note)


@complaints.command("reopen")
@click.argument("complaint_id", type=int)
@note_option
@json_option
@click.pass_context
@run_async
async def complaints_reopen(
    ctx: click.Context, complaint_id: int, note: str | None, as_json: bool
) -> None:
    """Reopen a resolved or closed complaint (back to investigating, outcome cleared)."""
    await _act(ctx, complaint_id, "reopen", as_json, note=note)


@complaints.command("extend")
@click.argument("complaint_id", type=int)
@click.option("--note", required=True, help="Why (the debtor must be told).")
@json_option
@click.pass_context
@run_async
async def complaints_extend(
    ctx: click.Context, complaint_id: int, note: str, as_json: bool
) -> None:
    """Extend the deadline once by [complaints] extension_days."""
    await _act(ctx, complaint_id, "extend", as_json, note=note)


@complaints.command("hold")
@click.argument("complaint_id", type=int)
@note_option
@json_option
@click.pass_context
@run_async
async def complaints_hold(
    ctx: click.Context, complaint_id: int, note: str | None, as_json: bool
) -> None:
    """Stop collection on the complaint's case: a COMPLAINT hold; a placed case is recalled
    (the agency gets placement.recalled with reason code COMPLAINT)."""
    await _act(ctx, complaint_id, "hold", as_json, note=note)


@complaints.command("release")
@click.argument("complaint_id", type=int)
@note_option
@json_option
@click.pass_context
@run_async
async def complaints_release(
    ctx: click.Context, complaint_id: int, note: str | None, as_json: bool
) -> None:
    """Release the complaint's hold (the case stays held while another complaint holds it)."""
    await _act(ctx, complaint_id, "release", as_json, note=note)


@complaints.command("attribute")
@click.argument("complaint_id", type=int)
@click.option("--placement", "placement_id", help="The placement (and so agency) to blame.")
@click.option("--collector", "collector_id", help="The collector to blame ('' to clear).")
@note_option
@json_option
@click.pass_context
@run_async
async def complaints_attribute(
    ctx: click.Context,
    complaint_id: int,
    placement_id: str | None,
    collector_id: str | None,
    note: str | None,
    as_json: bool,
) -> None:
    """Correct whom the complaint is held against; the leaf records what it was."""
    await _act(
        ctx,
        complaint_id,
        "attribute",
        as_json,
        placement_id=placement_id,
        collector_id=collector_id,
        note=note,
    )


@complaints.command("report")
@click.option("--month", required=True, help="YYYY-MM (lender's time zone).")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write it (default complaints-YYYY-MM.xlsx).",
)
@json_option
@click.pass_context
@run_async
async def complaints_report(
    ctx: click.Context, month: str, out: Path | None, as_json: bool
) -> None:
    """The monthly complaint report (XLSX) for the regulator and the consumer-protection
    team: counts by agency, category, channel and outcome, answers on time, the median days
    to answer, and the list by reference (no names, no phone numbers, no summaries)."""
    from gateway.complaints.report import monthly_report

    gateway = await open_gateway(ctx)
    try:
        service = gateway.complaints()
        async with gateway.db.snapshot() as conn:
            data = await monthly_report(conn, month, zone=service.policy.zone, now=service.now())
    finally:
        await gateway.aclose()
    target = out or Path(f"complaints-{month}.xlsx")
    await asyncio.to_thread(target.write_bytes, data)
    if as_json:
        echo_json({"month": month, "path": str(target), "bytes": len(data)})
    else:
        console.print(f"wrote {target} ({len(data)} bytes)", highlight=False)


COMMANDS: list[click.Command] = [complaints]

__all__ = ["COMMANDS", "complaints"]
