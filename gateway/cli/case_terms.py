"""Subcommands about the end of a placement's term, registered on import: ``placements
expire`` and ``placements renew`` (gateway.cases.expiry), ``cases escalations`` and ``cases
escalate`` (gateway.cases.escalation). ``serve`` runs the expiry and the escalation scan on
its ``schedules.expiry_every_seconds`` timer; these commands do the same by hand.
"""

from dataclasses import asdict

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from gateway.cases.escalation import ESCALATION_STATES, EscalationView, escalation_views
from gateway.cases.expiry import ExpiryPlan, ExpiryReport, TermEnd
from gateway.cases.terms import MAX_RENEWAL_DAYS
from gateway.cli.attribution import ops_actor, recorded_actor
from gateway.cli.case_holds import actor_option
from gateway.cli.cases import cases, placements
from gateway.cli.context import console, echo_json, err_console, open_gateway, run_async

NONE = "-"
_TEXT = 500


def _note(note: str | None) -> str | None:
    if note is not None and len(note) > _TEXT:
        raise click.BadParameter(
            f"at most {_TEXT} characters, got {len(note)}", param_hint="--note"
        )
    return note


def _actor(name: str | None) -> str:
    actor = ops_actor(name)
    if len(actor) > 64:
        raise click.BadParameter(f"at most 64 characters, got {len(actor)}", param_hint="--actor")
    return actor


def _terms_table(title: str, terms: list[TermEnd]) -> Table:
    table = Table("placement", "case", "agency", "return_by", "recall_on", title=title)
    for t in terms:
        table.add_row(
            t.placement_id, t.case_id, t.agency_id, t.return_by.isoformat(), t.recall_on.isoformat()
        )
    return table


def _print_plan(plan: ExpiryPlan) -> None:
    if plan.warnings:
        console.print(_terms_table("warnings due (placement.expiring)", plan.warnings))
    if plan.expired:
        console.print(_terms_table("expired: would be recalled (EXPIRED)", plan.expired))
    console.print(
        f"dry run for {plan.today}: {len(plan.warnings)} warning(s) would be sent, "
        f"{len(plan.expired)} placement(s) recalled; nothing was written",
        highlight=False,
    )


def _print_report(report: ExpiryReport) -> None:
    agencies = sorted(set(report.warned) | set(report.expired))
    if agencies:
        table = Table("agency", "warned", "recalled as expired")
        for agency_id in agencies:
            table.add_row(agency_id, str(report.warned[agency_id]), str(report.expired[agency_id]))
        console.print(table)
    console.print(
        f"{report.today}: {report.warned.total()} placement.expiring queued, "
        f"{report.expired.total()} placement(s) recalled as expired (run `dispatch` or `serve`)",
        highlight=False,
    )
    for placement_id, why in sorted(report.skipped.items()):
        console.print(f"  left {placement_id}: {why}", highlight=False, markup=False)


@placements.command("expire")
@click.option(
    "--dry-run", is_flag=True, help="Show what would be warned and recalled; write nothing."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@click.pass_context
@run_async
async def expire(ctx: click.Context, dry_run: bool, as_json: bool) -> None:
    """Warn and recall placements at the end of their term.

    Agencies with expiry_warning = true get placement.expiring [allocation]
    expiry_warning_days before return_by, once per term. A placement past return_by plus
    [allocation] expiry_grace_days is recalled with the code EXPIRED: the case goes back to
    returned and the next allocation takes it to the next tier. `serve` does this on its
    schedules.expiry_every_seconds timer.
    """
    gateway = await open_gateway(ctx)
    try:
        if dry_run:
            plan = await gateway.expiry.plan()
        else:
            with Progress(
                TextColumn("expiry"),
                BarColumn(),
                MofNCompleteColumn(),
                console=err_console,
                disable=as_json or not err_console.is_terminal,
            ) as progress:
                task = progress.add_task("expiry", total=None)

                def advance(done: int, total: int) -> None:
                    progress.update(task, completed=done, total=total)

                report = await gateway.expiry.run(progress=advance)
    finally:
        await gateway.aclose()
    if dry_run:
        if as_json:
            echo_json(
                {
                    "dry_run": True,
                    "today": plan.today,
                    "warnings": [asdict(t) for t in plan.warnings],
                    "expired": [asdict(t) for t in plan.expired],
                }
            )
        else:
            _print_plan(plan)
        return
    if as_json:
        echo_json(
            {
                "dry_run": False,
                "today": report.today,
                "warned": dict(report.warned),
                "expired": dict(report.expired),
                "warned_placements": report.warned_ids,
                "expired_placements": report.expired_ids,
                "skipped": report.skipped,
            }
        )
        return
    _print_report(report)


@placements.command("renew")
@click.argument("placement_id")
@click.option(
    "--days",
    type=click.IntRange(1, MAX_RENEWAL_DAYS),
    required=True,
    help="Move return_by on by this many days.",
)
@click.option("--note", help="Why, in words (kept in the evidence log).")
@actor_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@click.pass_context
@run_async
async def renew(
    ctx: click.Context,
    placement_id: str,
    days: int,
    note: str | None,
    actor: str | None,
    as_json: bool,
) -> None:
    """Renew PLACEMENT_ID: its return_by moves on by --days.

    The agency is told with a placement.amended packet that carries the new return_by (and
    the next version); a new expiry warning is due before the new date. Only an open
    placement can be renewed.
    """
    why = _note(note)
    gateway = await open_gateway(ctx)
    try:
        who = _actor(await recorded_actor(ctx, gateway.db, gateway.clock, legacy=actor))
        renewal = await gateway.expiry.renew(placement_id, days, actor=who, note=why)
    finally:
        await gateway.aclose()
    if as_json:
        echo_json(asdict(renewal))
        return
    console.print(
        f"renewed {renewal.placement_id} ({renewal.agency_id}) from "
        f"{renewal.previous_return_by} until {renewal.return_by}, version {renewal.version}; "
        "placement.amended queued (run `dispatch` or `serve`)",
        highlight=False,
    )


def _view_json(view: EscalationView) -> dict[str, object]:
    return asdict(view)


@cases.command("escalations")
@click.option(
    "--state",
    type=click.Choice([*ESCALATION_STATES, "all"]),
    default="proposed",
    show_default=True,
    help="Only escalations in this state.",
)
@click.option(
    "--scan",
    is_flag=True,
    help="Run the escalation scan first (serve does it on its expiry timer).",
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=500, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@click.pass_context
@run_async
async def escalations(
    ctx: click.Context, state: str, scan: bool, limit: int, as_json: bool
) -> None:
    """Escalations of placed cases to the legal tier, newest first.

    A placed case whose bucket became LEGAL while its agency is not of [allocation]
    legal_tier is escalated by [allocation] escalation: proposed here for ops (approval),
    recalled at once (auto) or left (off). Approve or reject with `cases escalate`.
    """
    gateway = await open_gateway(ctx)
    try:
        scanned = await gateway.escalations.scan() if scan else None
        async with gateway.db.snapshot() as conn:
            views = await escalation_views(
                conn, state=None if state == "all" else state, limit=limit
            )
    finally:
        await gateway.aclose()
    if as_json:
        document: dict[str, object] = {"escalations": [_view_json(v) for v in views]}
        if scanned is not None:
            document["scan"] = {
                "mode": scanned.mode,
                "found": scanned.found,
                "proposed": scanned.proposed,
                "recalled": dict(scanned.recalled),
                "skipped": scanned.skipped,
            }
        echo_json(document)
        return
    if scanned is not None:
        console.print(
            f"scan ({scanned.mode}): {scanned.found} found, {len(scanned.proposed)} proposed, "
            f"{scanned.recalled.total()} recalled for the legal tier",
            highlight=False,
        )
    table = Table(
        "id",
        "case",
        "placement",
        "agency",
        "state",
        "placement state",
        "proposed",
        "decided",
        "reason",
    )
    for v in views:
        decided = (
            f"{v.decided_by} {v.decided_at:%Y-%m-%d %H:%M}" if v.decided_at is not None else NONE
        )
        table.add_row(
            str(v.id),
            v.case_id,
            v.placement_id,
            v.agency_id,
            v.state,
            v.placement_state or NONE,
            f"{v.proposed_at:%Y-%m-%d %H:%M}",
            decided,
            v.reason,
        )
    console.print(table)
    console.print(f"{len(views)} escalation(s) ({state})", highlight=False)


@cases.command("escalate")
@click.argument("escalation_id", type=int)
@click.option(
    "--approve", "decision", flag_value="approve", help="Recall the case for the legal tier."
)
@click.option("--reject", "decision", flag_value="reject", help="Leave the case with its agency.")
@click.option("--note", help="Why, in words (kept with the escalation).")
@actor_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@click.pass_context
@run_async
async def escalate(
    ctx: click.Context,
    escalation_id: int,
    decision: str | None,
    note: str | None,
    actor: str | None,
    as_json: bool,
) -> None:
    """Approve or reject proposed escalation ESCALATION_ID (see `cases escalations`).

    --approve recalls the placement (placement.recalled, code LEGAL_ESCALATION); the next
    allocation places the case with a law firm, without the cool-off. --reject leaves the
    case where it is, and that placement is never proposed again.
    """
    if decision is None:
        raise click.UsageError("say --approve or --reject")
    why = _note(note)
    gateway = await open_gateway(ctx)
    try:
        who = _actor(await recorded_actor(ctx, gateway.db, gateway.clock, legacy=actor))
        service = gateway.escalations
        if decision == "approve":
            view = await service.approve(escalation_id, actor=who, note=why)
        else:
            view = await service.reject(escalation_id, actor=who, note=why)
    finally:
        await gateway.aclose()
    if as_json:
        echo_json(_view_json(view))
        return
    line = f"escalation {view.id} {view.state} by {view.decided_by}"
    if view.state == "approved":
        line += (
            f"; placement {view.placement_id} recalled (LEGAL_ESCALATION), case {view.case_id} "
            "goes to the legal tier at the next allocation"
        )
    console.print(line, highlight=False)


COMMANDS: list[click.Command] = []

__all__ = ["COMMANDS"]
