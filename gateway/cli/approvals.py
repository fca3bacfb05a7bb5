"""CLI groups ``claims`` (claim confirmation batches, 债权确认) and ``approvals`` (every
four-eyes request): list, show, approve, reject; tables, or JSON with ``--json``.

The checker is the global ``--as USER`` or ``--token`` (gateway.cli.attribution): a known
user of a role ``[four_eyes]`` permits, never the request's maker.
"""

import json
from collections.abc import Awaitable, Callable
from typing import TypeVar

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
from gateway.clock import to_datetime
from gateway.console.accounts import User

T = TypeVar("T")
S = TypeVar("S", str, int)


async def _decided(
    ctx: click.Context,
    decision: Callable[..., Awaitable[T]],
    subject: S,
    approve: bool,
    note: str | None,
    *,
    purpose: str,
) -> tuple[User, T]:
    """The acting checker (required: ``--as`` or ``--token``) and their ``decision`` on
    ``subject`` (a claim batch or an approval request), recorded."""
    gateway = await open_gateway(ctx)
    try:
        checker = await acting_user(ctx, gateway.db, gateway.clock, required=True, purpose=purpose)
        assert checker is not None
        decided = await decision(
            gateway.db,
            subject,
            approve=approve,
            checker=checker,
            four_eyes=gateway.settings.four_eyes,
            now=to_datetime(gateway.clock.now()),
            note=note,
        )
    finally:
        await gateway.aclose()
    return checker, decided


@click.group(cls=GatewayGroup)
def claims() -> None:
    """Claim confirmation (债权确认): each intake file's batch, its totals and differences,
    approved or rejected by a second person before any of its cases is allocated."""


@claims.command("list")
@click.option(
    "--status",
    type=click.Choice(["importing", "pending", "approved", "rejected"]),
    help="Only batches in this state.",
)
@json_option
@click.pass_context
@run_async
async def claims_list(ctx: click.Context, status: str | None, as_json: bool) -> None:
    """The latest confirmation batches, newest first."""
    from gateway.claims import batches

    gateway = await open_gateway(ctx)
    try:
        async with gateway.db.snapshot() as conn:
            found = await batches.listing(conn, status=status)
    finally:
        await gateway.aclose()
    if as_json:
        echo_json([b.as_dict() for b in found])
        return
    table = Table("batch", "file", "maker", "status", "cases", "balance", "new", "gone", "by")
    for b in found:
        table.add_row(
            b.id,
            b.file_name,
            b.maker,
            b.status,
            str(b.cases),
            ", ".join(f"{cur} {money(t['balance_minor'])}" for cur, t in b.by_currency().items()),
            str(b.differences.get("new", {}).get("cases", "")),
            str(b.differences.get("gone", {}).get("cases", "")),
            b.decided_by or "",
        )
    console.print(table)


@claims.command("show")
@click.argument("batch_id")
@json_option
@click.pass_context
@run_async
async def claims_show(ctx: click.Context, batch_id: str, as_json: bool) -> None:
    """One batch: its file, totals per currency, product and bucket, holds and differences."""
    from gateway.claims import batches

    gateway = await open_gateway(ctx)
    try:
        async with gateway.db.snapshot() as conn:
            batch = await batches.get(conn, batch_id)
    finally:
        await gateway.aclose()
    if as_json:
        echo_json(batch.as_dict())
        return
    console.print(
        f"batch {batch.id}: {batch.file_name} (sha256 {batch.file_sha256[:16]}…), "
        f"imported by {batch.maker}; {batch.status}"
        + (f" by {batch.decided_by}" if batch.decided_by else ""),
        highlight=False,
    )
    table = Table(
        "currency", "product", "bucket", "cases", "principal due", "interest", "penalty",
        "fees", "balance", "no breakdown", title="totals",
    )  # fmt: skip
    for t in batch.totals:
        table.add_row(
            str(t["currency"]),
            str(t["product"]),
            str(t["bucket"]),
            str(t["cases"]),
            money(t["principal_due_minor"]),
            money(t["interest_minor"]),
            money(t["penalty_minor"]),
            money(t["fees_minor"]),
            money(t["balance_minor"]),
            str(t["unbroken"]),
        )
    console.print(table)
    d = batch.differences
    if d:
        console.print(
            f"differences: {d['new']['cases']} new ({money(d['new']['total_minor'])}), "
            f"{d['gone']['cases']} no longer listed ({money(d['gone']['total_minor'])}), "
            f"{d['balance_up']['cases']} up by {money(d['balance_up']['total_minor'])}, "
            f"{d['balance_down']['cases']} down by {money(d['balance_down']['total_minor'])}",
            highlight=False,
        )
    if batch.holds:
        console.print(
            "holds: " + ", ".join(f"{code} {n}" for code, n in batch.holds.items()),
            highlight=False,
        )


def _decide_batch_command(approve: bool) -> click.Command:
    verb = "approve" if approve else "reject"

    @click.command(verb)
    @click.argument("batch_id")
    @click.option("--note", required=not approve, help="Why (required to reject).")
    @json_option
    @click.pass_context
    @run_async
    async def command(ctx: click.Context, batch_id: str, note: str | None, as_json: bool) -> None:
        from gateway.approvals.decisions import decide_batch

        checker, batch = await _decided(
            ctx, decide_batch, batch_id, approve, note, purpose=f"{verb} a claim batch"
        )
        if as_json:
            echo_json(batch.as_dict())
            return
        after = "its cases may now be allocated" if approve else "its cases stay unallocated"
        console.print(f"claim batch {batch.id} {batch.status} by {checker.name}; {after}")

    command.__doc__ = (
        f"{verb.capitalize()} claim batch BATCH_ID as a second person (--as USER before the "
        "command name): never the user who imported it."
    )
    return command


claims.add_command(_decide_batch_command(True))
claims.add_command(_decide_batch_command(False))


@click.group(cls=GatewayGroup)
def approvals() -> None:
    """Four eyes: actions waiting for (or given) a second person's approval (claim
    confirmation, large allocation rounds, bulk recalls, large write-offs and accepted
    agency figures; [four_eyes] in the config)."""


@approvals.command("list")
@click.option(
    "--status",
    type=click.Choice(["pending", "approved", "rejected", "executed", "withdrawn"]),
    help="Only approvals in this state.",
)
@json_option
@click.pass_context
@run_async
async def approvals_list(ctx: click.Context, status: str | None, as_json: bool) -> None:
    """The latest approvals, newest first."""
    from gateway.approvals import store

    gateway = await open_gateway(ctx)
    try:
        async with gateway.db.snapshot() as conn:
            found = await store.listing(conn, status=status)
    finally:
        await gateway.aclose()
    if as_json:
        echo_json([a.as_dict() for a in found])
        return
    table = Table("id", "action", "subject", "count", "amount", "maker", "status", "checker")
    for a in found:
        amount = "" if a.amount_minor is None else f"{a.currency or ''} {money(a.amount_minor)}"
        table.add_row(
            str(a.id),
            a.action,
            a.subject,
            str(a.count),
            amount,
            a.maker,
            a.status,
            a.checker or "",
        )
    console.print(table)


@approvals.command("show")
@click.argument("approval_id", type=int)
@json_option
@click.pass_context
@run_async
async def approvals_show(ctx: click.Context, approval_id: int, as_json: bool) -> None:
    """One approval with the exact payload that was (or would be) approved."""
    from gateway.approvals import store

    gateway = await open_gateway(ctx)
    try:
        async with gateway.db.snapshot() as conn:
            approval = await store.get(conn, approval_id)
    finally:
        await gateway.aclose()
    if as_json:
        echo_json(approval.as_dict())
        return
    data = approval.as_dict()
    payload = data.pop("payload")
    for key, value in data.items():
        console.print(f"{key:>15}: {'' if value is None else value}", highlight=False)
    console.print("payload:")
    click.echo(json.dumps(payload, indent=2, ensure_ascii=False))


def _decide_command(approve: bool) -> click.Command:
    verb = "approve" if approve else "reject"

    @click.command(verb)
    @click.argument("approval_id", type=int)
    @click.option("--note", required=not approve, help="Why (required to reject).")
    @json_option
    @click.pass_context
    @run_async
    async def command(
        ctx: click.Context, approval_id: int, note: str | None, as_json: bool
    ) -> None:
        from gateway.approvals.decisions import decide

        checker, approval = await _decided(
            ctx, decide, approval_id, approve, note, purpose=f"{verb} an approval"
        )
        if as_json:
            echo_json(approval.as_dict())
            return
        console.print(
            f"approval #{approval.id} ({approval.action} {approval.subject}) "
            f"{approval.status} by {checker.name}",
            highlight=False,
        )
        if approval.status == "approved":
            console.print(
                f"{approval.maker} may now run it with --approval {approval.id}", highlight=False
            )

    command.__doc__ = (
        f"{verb.capitalize()} APPROVAL_ID as a second person (--as USER before the command "
        "name): never its maker, and of a role [four_eyes] permits for the action."
    )
    return command


approvals.add_command(_decide_command(True))
approvals.add_command(_decide_command(False))


@approvals.command("withdraw")
@click.argument("approval_id", type=int)
@click.pass_context
@run_async
async def approvals_withdraw(ctx: click.Context, approval_id: int) -> None:
    """Take back a pending request you made."""
    from gateway.approvals import store

    gateway = await open_gateway(ctx)
    try:
        maker = await acting_user(
            ctx, gateway.db, gateway.clock, required=True, purpose="withdraw an approval"
        )
        assert maker is not None
        async with gateway.db.transaction() as conn:
            approval = await store.withdraw(
                conn, approval_id, by=maker.name, now=to_datetime(gateway.clock.now())
            )
    finally:
        await gateway.aclose()
    console.print(f"approval #{approval.id} withdrawn")


COMMANDS: list[click.Command] = [claims, approvals]

__all__ = ["COMMANDS"]
