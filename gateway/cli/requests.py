"""CLI group ``requests``: agencies' waiver (减免), instalment (分期) and pause (停催) requests
and the lender's decisions: list, show, approve, reject, lift-pauses; tables, or JSON with
``--json``.

The person deciding is the global ``--as USER`` or ``--token`` (gateway.cli.attribution): a
known user whose role has ``[concessions.limits]``. Above ``[four_eyes] concession_approval``
a second person must approve too.
"""

import click
from rich.table import Table

from gateway.allocation.routing import money
from gateway.cli.attribution import acting_user
from gateway.cli.context import (
    GatewayGroup,
    console,
    echo_json,
    json_option,
    open_gateway,
    run_async,
)
from gateway.concessions.rules import REQUEST_STATES, Terms


def _terms_text(terms: Terms) -> str:
    cur = terms.currency
    if terms.kind == "waiver":
        return f"waive {cur} {money(terms.waive_minor)}, pay {cur} {money(terms.settle_minor or 0)}"
    if terms.kind == "instalment":
        last = terms.schedule[-1].due_date if terms.schedule else "?"
        return f"{len(terms.schedule)} by {last}, {cur} {money(terms.total_minor or 0)}"
    return f"pause {terms.pause_from} to {terms.pause_until}"


@click.group(cls=GatewayGroup)
def requests() -> None:
    """Agencies' requests for a waiver, an instalment plan or a pause of collection, and the
    lender's decisions ([concessions] limits by role, four eyes above a threshold)."""


@requests.command("list")
@click.option(
    "--state",
    "states",
    type=click.Choice(REQUEST_STATES),
    multiple=True,
    help="Only requests in this state (repeatable); default: pending and awaiting_check.",
)
@click.option("--all", "show_all", is_flag=True, help="Requests in every state.")
@click.option("--agency", "agency_id", help="Only this agency's requests.")
@json_option
@click.pass_context
@run_async
async def requests_list(
    ctx: click.Context,
    states: tuple[str, ...],
    show_all: bool,
    agency_id: str | None,
    as_json: bool,
) -> None:
    """The queue of requests, oldest first."""
    from gateway.concessions.requests import list_requests

    chosen = None if show_all else (list(states) or ["pending", "awaiting_check"])
    gateway = await open_gateway(ctx)
    try:
        async with gateway.db.snapshot() as conn:
            found = await list_requests(conn, states=chosen, agency_id=agency_id)
    finally:
        await gateway.aclose()
    if as_json:
        echo_json([r.as_dict() for r in found])
        return
    table = Table("id", "agency", "request", "placement", "kind", "state", "terms", "problems")
    for r in found:
        table.add_row(
            str(r.id),
            r.agency_id,
            r.request_id,
            r.placement_id,
            r.kind,
            r.state,
            _terms_text(r.terms),
            "; ".join(r.terms.problems),
        )
    console.print(table)


@requests.command("show")
@click.argument("ref")
@json_option
@click.pass_context
@run_async
async def requests_show(ctx: click.Context, ref: str, as_json: bool) -> None:
    """One request (by id or AGENCY/REQUEST_ID): its terms, reason and decision."""
    from gateway.concessions.requests import get_request

    gateway = await open_gateway(ctx)
    try:
        async with gateway.db.snapshot() as conn:
            record = await get_request(conn, ref)
    finally:
        await gateway.aclose()
    if as_json:
        echo_json(record.as_dict())
        return
    t = record.terms
    console.print(
        f"request {record.ref} (#{record.id}), {record.kind} on {record.placement_id} "
        f"(case {record.case_id}, balance {t.currency} {money(t.balance_minor)}): "
        f"{record.state}",
        highlight=False,
    )
    console.print(f"terms: {_terms_text(t)}", highlight=False)
    for n, inst in enumerate(t.schedule, 1):
        console.print(
            f"  {n}. {inst.due_date}  {t.currency} {money(inst.amount_minor)}", highlight=False
        )
    console.print(f"reason: {record.reason}", highlight=False)
    for problem in record.terms.problems:
        console.print(f"cannot be approved as asked: {problem}", highlight=False)
    if record.first_by:
        console.print(f"approved first by {record.first_by} (approval #{record.approval_id})")
    if record.decided_by:
        console.print(
            f"{record.state} by {record.decided_by} at {record.decided_at:%Y-%m-%d %H:%M} UTC"
            + (f": {record.decision_reason}" if record.decision_reason else "")
            + (f"; valid until {record.valid_until}" if record.valid_until else ""),
            highlight=False,
        )


def _decide_command(approve: bool) -> click.Command:
    verb = "approve" if approve else "reject"

    @click.command(verb)
    @click.argument("ref")
    @click.option(
        "--reason", required=not approve, help="Why (required to reject; the agency is told)."
    )
    @json_option
    @click.pass_context
    @run_async
    async def command(ctx: click.Context, ref: str, reason: str | None, as_json: bool) -> None:
        gateway = await open_gateway(ctx)
        try:
            person = await acting_user(
                ctx, gateway.db, gateway.clock, required=True, purpose=f"{verb} a request"
            )
            assert person is not None
            record = await gateway.concessions().decide(
                ref, approve=approve, person=person, reason=reason
            )
        finally:
            await gateway.aclose()
        if as_json:
            echo_json(record.as_dict())
            return
        if record.state == "awaiting_check":
            console.print(
                f"request {record.ref} approved by {person.name}; above [four_eyes] "
                f"concession_approval, so a second person must approve it too "
                f"(`--as OTHER_USER requests approve {record.id}`)",
                highlight=False,
            )
            return
        console.print(
            f"request {record.ref} {record.state} by {person.name}; the agency is told",
            highlight=False,
        )

    command.__doc__ = (
        f"{verb.capitalize()} request REF (its id or AGENCY/REQUEST_ID) as the user given "
        "with --as before the command name."
    )
    return command


requests.add_command(_decide_command(True))
requests.add_command(_decide_command(False))


@requests.command("lift-pauses")
@json_option
@click.pass_context
@run_async
async def requests_lift(ctx: click.Context, as_json: bool) -> None:
    """Release the PAUSE hold of every approved pause whose last day has passed."""
    gateway = await open_gateway(ctx)
    try:
        lifted = await gateway.concessions().lift_pauses()
    finally:
        await gateway.aclose()
    if as_json:
        echo_json([r.as_dict() for r in lifted])
        return
    console.print(f"{len(lifted)} pauses lifted", highlight=False)


COMMANDS = [requests]

__all__ = ["COMMANDS"]
