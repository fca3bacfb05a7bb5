"""CLI commands of the mismatch queue: ``mismatches list|show|resolve``.

They read through the same read model as the ops console and act through the same
resolution service, so every CLI action is audited and attested like a console action
(``--as`` names the console user who acts; operators and admins only).
"""

import json
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.table import Table

from gateway.cli.attribution import acting_user
from gateway.cli.context import console, echo_json, err_console, open_gateway, run_async
from gateway.console import read_model, timeline
from gateway.console.read_model import SORTS
from gateway.errors import GatewayError
from gateway.resolutions.actions import ActionResult
from gateway.resolutions.rules import ACTIONS, ActionRequest, MismatchFilter

F = TypeVar("F", bound=Callable[..., Any])


def filter_options(assignee_flag: str = "--assignee") -> Callable[[F], F]:
    """The queue filters shared by ``list`` and ``resolve`` (where ``--assignee`` names the
    new assignee, so the filter is ``--assigned-to``)."""
    dest = assignee_flag.lstrip("-").replace("-", "_")
    options = [
        click.option("--kind", multiple=True, help="Only these kinds (repeatable)."),
        click.option("--agency", multiple=True, help="Only these agencies (repeatable)."),
        click.option(
            "--state",
            multiple=True,
            help="Only these states (repeatable; default open and investigating; 'all').",
        ),
        click.option("--severity", multiple=True, help="Only these severities (repeatable)."),
        click.option(assignee_flag, dest, help="Only assigned to this user ('-': nobody)."),
        click.option("--search", help="Placement or case id prefix."),
    ]

    def decorate(fn: F) -> F:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


def _filter(
    kind: tuple[str, ...],
    agency: tuple[str, ...],
    state: tuple[str, ...],
    severity: tuple[str, ...],
    assignee: str | None,
    search: str | None,
    ids: tuple[int, ...] = (),
) -> MismatchFilter:
    states = () if "all" in state else (state or ("open", "investigating"))
    return MismatchFilter(
        states=states,
        kinds=kind,
        agencies=agency,
        severities=severity,
        assignee=None if assignee is None else ("" if assignee == "-" else assignee),
        search=search,
        ids=ids,
    )


@click.group()
def mismatches() -> None:
    """The queue of disagreements between our record and the agencies' reports."""


@mismatches.command("list")
@filter_options()
@click.option("--sort", type=click.Choice(sorted(SORTS)), default="id", show_default=True)
@click.option("--asc", is_flag=True, help="Oldest / smallest first.")
@click.option("--page", type=int, default=1, show_default=True)
@click.option("--limit", type=int, default=50, show_default=True, help="Rows per page (<= 200).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@click.pass_context
@run_async
async def mismatches_list(
    ctx: click.Context,
    kind: tuple[str, ...],
    agency: tuple[str, ...],
    state: tuple[str, ...],
    severity: tuple[str, ...],
    assignee: str | None,
    search: str | None,
    sort: str,
    asc: bool,
    page: int,
    limit: int,
    as_json: bool,
) -> None:
    """List mismatches (newest first by default), with filters, sorting and paging.

    --json prints the rows of the page as a JSON array (both sides parsed).
    """
    target = _filter(kind, agency, state, severity, assignee, search)
    gateway = await open_gateway(ctx)
    try:
        async with gateway.db.snapshot() as conn:
            data = await read_model.queue(
                conn, target, sort=sort, descending=not asc, page=page, per_page=limit
            )
    finally:
        await gateway.aclose()
    if as_json:
        echo_json(data["items"])
        return
    table = Table(
        "id", "kind", "sev", "state", "agency", "placement", "delta", "assignee", "detail"
    )
    for r in data["items"]:
        table.add_row(
            str(r["id"]),
            r["kind"],
            r["severity"],
            r["state"],
            r["agency_id"],
            r["placement_id"] or "-",
            "" if r["delta_minor"] is None else str(r["delta_minor"]),
            r["assignee"] or "",
            r["detail"],
        )
    console.print(table)
    states = ", ".join(target.states) or "any state"
    console.print(
        f"page {data['page']} of {data['pages']}: showing {len(data['items'])} of "
        f"{data['total']} ({states})"
    )


@mismatches.command("show")
@click.argument("mismatch_id", type=int)
@click.option("--timeline", "with_timeline", is_flag=True, help="Add the case's timeline.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@click.pass_context
@run_async
async def mismatches_show(
    ctx: click.Context, mismatch_id: int, with_timeline: bool, as_json: bool
) -> None:
    """One mismatch: both sides, what it points at, its history and the actions open to it."""
    gateway = await open_gateway(ctx)
    try:
        async with gateway.db.snapshot() as conn:
            data = await read_model.mismatch_detail(conn, mismatch_id)
            if with_timeline and data["case_id"]:
                data["timeline"] = (await timeline.case_timeline(conn, data["case_id"]))["entries"]
    finally:
        await gateway.aclose()
    if as_json:
        echo_json(data)
        return
    console.print(
        f"[bold]#{data['id']} {data['kind']}[/] ({data['severity']}, {data['state']}) "
        f"agency {data['agency_id']}, placement {data['placement_id'] or '-'}",
        highlight=False,
    )
    console.print(data["detail"], highlight=False)
    sides = Table("", "ours", "theirs")
    sides.add_row(
        "",
        json.dumps(data["ours"], ensure_ascii=False, indent=1),
        json.dumps(data["theirs"], ensure_ascii=False, indent=1),
    )
    console.print(sides)
    console.print(f"assignee: {data['assignee'] or 'nobody'}; delta: {data['delta_minor']}")
    for h in data["history"]:
        what = h.get("body") if h["type"] == "comment" else f"{h['action']} {h.get('reason')}"
        console.print(f"  {h['at']:%Y-%m-%d %H:%M} {h['actor']}: {what}", highlight=False)
    console.print("actions now: " + (", ".join(data["actions_available"]) or "none"))
    for entry in data.get("timeline", []):
        console.print(f"  {entry['at']:%Y-%m-%d %H:%M:%S} {entry['type']}", highlight=False)


@mismatches.command("resolve")
@click.argument("ids", nargs=-1, type=int)
@click.option("--action", type=click.Choice(list(ACTIONS)), required=True, help="What to do.")
@click.option("--reason", default="", help="Why (required to close; the comment for 'comment').")
@click.option(
    "--as",
    "actor",
    help="Who acts (an active console user); default: the global --as or --token.",
)
@click.option(
    "--approval",
    "approval_id",
    type=int,
    help="write_off or accept above [four_eyes]'s amount: the approved request to run under.",
)
@click.option("--assignee", help="For 'assign': the user (empty string to unassign).")
@click.option("--balance-minor", type=int, help="For 'amend': the new balance, minor units.")
@click.option("--recall-code", default="RECONCILIATION", show_default=True, help="For 'recall'.")
@click.option("--all-matching", is_flag=True, help="Act on every mismatch the filters match.")
@filter_options("--assigned-to")
@click.option("--limit", type=int, default=1000, show_default=True, help="Bulk cap.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@click.pass_context
@run_async
async def mismatches_resolve(
    ctx: click.Context,
    ids: tuple[int, ...],
    action: str,
    reason: str,
    actor: str | None,
    approval_id: int | None,
    assignee: str | None,
    balance_minor: int | None,
    recall_code: str,
    all_matching: bool,
    kind: tuple[str, ...],
    agency: tuple[str, ...],
    state: tuple[str, ...],
    severity: tuple[str, ...],
    assigned_to: str | None,
    search: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Act on mismatches IDS (or, with --all-matching, on every one the filters match).

    \b
    Actions: investigate, reopen, assign, comment, accept (take the agency's figure),
    resend (dead packet back to the outbox), recall, amend (queue placement.amended),
    dismiss, write_off. Each is audited with --as and --reason and attested by an
    evidence leaf. Exits 1 when any mismatch refused the action. A write_off or accept
    above [four_eyes]'s amount is refused with a pending approval request; once another
    user approved it (`approvals approve ID`), run it again with --approval ID.
    """
    if bool(ids) == all_matching:
        raise GatewayError("name mismatch ids, or use --all-matching with filters (not both)")
    gateway = await open_gateway(ctx)
    try:
        user = await acting_user(
            ctx, gateway.db, gateway.clock, name=actor, required=True, purpose="mismatches resolve"
        )
        assert user is not None
        request = ActionRequest(
            action=action,
            actor=user.name,
            reason=reason,
            assignee=assignee,
            balance_minor=balance_minor,
            recall_code=recall_code,
            approval_id=approval_id,
        )
        service = gateway.resolutions()
        target = (
            MismatchFilter(states=(), ids=ids)
            if ids
            else _filter(kind, agency, state, severity, assigned_to, search)
        )
        result = await service.bulk(target, request, limit=limit)
    finally:
        await gateway.aclose()
    if as_json:
        echo_json(
            {
                "batch": result.batch,
                "matched": result.matched,
                "truncated": result.truncated,
                "done": [_result_json(r) for r in result.done],
                "refused": result.refused,
            }
        )
    else:
        for r in result.done:
            console.print(
                f"#{r.mismatch_id}: {r.action} ({r.from_state} → {r.to_state}), "
                f"evidence leaf {r.evidence_seq}",
                highlight=False,
            )
        for mismatch_id, why in result.refused.items():
            err_console.print(f"#{mismatch_id}: refused: {why}", highlight=False)
        console.print(f"{len(result.done)} done, {len(result.refused)} refused")
    if result.refused or not result.matched:
        ctx.exit(1)


def _result_json(r: ActionResult) -> dict[str, object]:
    return {
        "mismatch_id": r.mismatch_id,
        "action": r.action,
        "from_state": r.from_state,
        "to_state": r.to_state,
        "evidence_seq": r.evidence_seq,
        "details": r.details,
    }


COMMANDS: list[click.Command] = [mismatches]

__all__ = ["COMMANDS"]
