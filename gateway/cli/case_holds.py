"""Subcommands of ``cases`` (see gateway.cli.cases): ``hold``, ``release`` and ``reopen``,
ops actions through ``Gateway.cases`` (gateway.cases.holds.CaseService); registered on import.

Each is one transaction, recorded in the case's history and attested in the evidence log.
"""

import dataclasses
import json

import click

from gateway.cases.holds import HoldOutcome
from gateway.cli.attribution import ops_actor, recorded_actor
from gateway.cli.cases import cases
from gateway.cli.context import console, json_option, open_gateway, run_async
from schemas.account import KNOWN_HOLD_CODES

_CODES = ", ".join(KNOWN_HOLD_CODES)


actor_option = click.option(
    "--actor",
    envvar="GATEWAY_OPS_USER",
    help="Who acts, recorded as ops:NAME (default: the global --as or --token user, "
    "else the OS user).",
)
note_option = click.option("--note", help="Why, in words (kept with the hold and its history).")


def _echo(action: str, outcome: HoldOutcome) -> None:
    click.echo(json.dumps({"action": action, **dataclasses.asdict(outcome)}, indent=2))


def _others(outcome: HoldOutcome) -> str:
    return ", ".join(c for c in outcome.holds if c != outcome.code)


@cases.command("hold")
@click.argument("case_id")
@click.option("--reason", "code", required=True, help=f"Hold code: {_CODES} or a lender code.")
@note_option
@actor_option
@json_option
@click.pass_context
@run_async
async def hold(
    ctx: click.Context,
    case_id: str,
    code: str,
    note: str | None,
    actor: str | None,
    as_json: bool,
) -> None:
    """Put a hold on CASE_ID: it is not placed while a hold stands.

    A case with an agency is recalled at once (placement.recalled carries the code).
    Holding a case again with a code it already has changes nothing.
    """
    gateway = await open_gateway(ctx)
    try:
        outcome = await gateway.cases.hold(
            case_id,
            code,
            actor=await recorded_actor(ctx, gateway.db, gateway.clock, legacy=actor),
            note=note,
        )
    finally:
        await gateway.aclose()
    if as_json:
        _echo("hold", outcome)
        return
    if not outcome.changed:
        console.print(
            f"case {case_id} already has the hold {outcome.code}; nothing changed "
            f"(status {outcome.status})",
            highlight=False,
        )
        return
    line = f"case {case_id} held: {outcome.code} (status {outcome.status})"
    if outcome.recalled_placement_id:
        line += f"; recalled placement {outcome.recalled_placement_id}"
    if others := _others(outcome):
        line += f"; also held by {others}"
    console.print(line, highlight=False)


@cases.command("release")
@click.argument("case_id")
@click.option("--reason", "code", required=True, help="The code of the hold to release.")
@note_option
@actor_option
@json_option
@click.pass_context
@run_async
async def release(
    ctx: click.Context,
    case_id: str,
    code: str,
    note: str | None,
    actor: str | None,
    as_json: bool,
) -> None:
    """Release CASE_ID's hold with code --reason (whoever placed it: intake, an agency or
    ops). With no hold left the case is open and allocatable again.

    A hold the lender's file still lists comes back when the lender's row next changes.
    """
    gateway = await open_gateway(ctx)
    try:
        outcome = await gateway.cases.release(
            case_id,
            code,
            actor=await recorded_actor(ctx, gateway.db, gateway.clock, legacy=actor),
            note=note,
        )
    finally:
        await gateway.aclose()
    if as_json:
        _echo("release", outcome)
        return
    line = f"case {case_id}: released {outcome.code}"
    if outcome.holds:
        line += f"; still held by {', '.join(outcome.holds)}"
    console.print(f"{line} (status {outcome.status})", highlight=False)


@cases.command("reopen")
@click.argument("case_id")
@note_option
@actor_option
@json_option
@click.pass_context
@run_async
async def reopen(
    ctx: click.Context, case_id: str, note: str | None, actor: str | None, as_json: bool
) -> None:
    """Reopen CASE_ID: a recalled case goes back to allocation (returned, so the next
    allocation takes it to the next tier); a closed case is open again (held if a hold
    still stands)."""
    gateway = await open_gateway(ctx)
    try:
        status = await gateway.cases.reopen(
            case_id,
            actor=await recorded_actor(ctx, gateway.db, gateway.clock, legacy=actor),
            note=note,
        )
    finally:
        await gateway.aclose()
    if as_json:
        click.echo(json.dumps({"action": "reopen", "case_id": case_id, "status": status}))
        return
    console.print(f"case {case_id} reopened (status {status})", highlight=False)


COMMANDS: list[click.Command] = []

__all__ = ["COMMANDS", "hold", "ops_actor", "release", "reopen"]
