"""CLI commands of the money model: ``attributions list|show|resolve`` (who is credited with
each lender receipt, and the lender's decision on a dispute; gateway.settlement.attribution
and gateway.settlement.disputes). Not to be confused with
gateway.cli.attribution, which records *who acts* (``--as``)."""

import json
from datetime import date
from typing import Any

import click
import sqlalchemy as sa
from rich.table import Table

from gateway.cli.context import GatewayGroup, console, open_gateway, run_async


def _month(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        year, month = value.split("-")
        return date(int(year), int(month), 1)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a month; use YYYY-MM") from None


def _table(rows: list[dict[str, Any]]) -> Table:
    table = Table("receipt", "paid on", "case", "placement", "agency", "rule", "share", "amount",
                  "state", "reason")  # fmt: skip
    for r in rows:
        table.add_row(
            r["payment_id"],
            str(r["paid_on"]),
            r["case_id"] or "",
            r["placement_id"] or "",
            r["agency_id"] or "",
            r["rule"],
            f"{r['share_bps'] / 100:.2f}%",
            f"{r['amount_minor']} {r['currency']}",
            r["state"],
            r["reason"] or "",
        )
    return table


@click.group(cls=GatewayGroup)
def attributions() -> None:
    """Lender receipts credited to the placement that held the case (README "Money model
    and attribution")."""


@attributions.command("list")
@click.option("--agency", "agency_id", help="Only the rows credited to this agency.")
@click.option("--month", help="Only receipts the lender received in this month (YYYY-MM).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@click.pass_context
@run_async
async def attributions_list(
    ctx: click.Context, agency_id: str | None, month: str | None, as_json: bool
) -> None:
    """List attributions, newest receipt first: rule, share, amount, state, and for an
    unattributable receipt the reason."""
    from gateway.settlement.attribution_pass import attributions_of

    first = _month(month)
    gateway = await open_gateway(ctx)
    try:
        async with gateway.db.connect() as conn:
            rows = await attributions_of(conn, agency_id=agency_id, month=first)
    finally:
        await gateway.aclose()
    if as_json:
        click.echo(json.dumps(rows, default=str, indent=2, ensure_ascii=False))
        return
    console.print(_table(rows))
    totals: dict[tuple[str, str], int] = {}
    for r in rows:
        key = (r["agency_id"] or "unattributable", r["currency"])
        totals[key] = totals.get(key, 0) + r["amount_minor"]
    for (agency, currency), total in sorted(totals.items()):
        console.print(f"{agency}: {total} {currency} (minor units)", highlight=False)


@attributions.command("show")
@click.argument("receipt")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@click.pass_context
@run_async
async def attributions_show(ctx: click.Context, receipt: str, as_json: bool) -> None:
    """Show how one lender receipt (its id in the lender's feed, as on the agency's packet)
    was attributed."""
    from gateway.settlement.attribution_pass import RECEIPTS, attributions_of

    gateway = await open_gateway(ctx)
    try:
        async with gateway.db.connect() as conn:
            found = (
                await conn.execute(sa.select(RECEIPTS.c.id).where(RECEIPTS.c.payment_id == receipt))
            ).scalar()
            rows = [] if found is None else await attributions_of(conn, receipt_id=found)
    finally:
        await gateway.aclose()
    if found is None:
        raise click.ClickException(
            f"no lender receipt {receipt!r}; `agency-gateway payments list` shows the imported ones"
        )
    if as_json:
        click.echo(json.dumps(rows, default=str, indent=2, ensure_ascii=False))
        return
    if not rows:
        console.print(f"receipt {receipt} is not attributed yet: the next `reconcile` does it")
        return
    first = rows[0]
    console.print(f"receipt {receipt}, case {first['case_id'] or '-'}, paid on {first['paid_on']}:")
    for r in rows:
        credited = f"{r['agency_id']} {r['placement_id']}" if r["agency_id"] else "nobody"
        line = (
            f"  {credited}: {r['rule']}, {r['share_bps'] / 100:.2f}%, "
            f"{r['amount_minor']} {r['currency']} (minor units), {r['state']}"
        )
        console.print(line + (f": {r['reason']}" if r["reason"] else ""), markup=False,
                      highlight=False)  # fmt: skip


@attributions.command("resolve")
@click.argument("receipt")
@click.option("--keep", is_flag=True, help="The attribution stands: its rows count again.")
@click.option(
    "--move-to",
    "move_to",
    metavar="PLACEMENT",
    help="Move the unsettled share(s) to this placement of the receipt's case (rule `moved`).",
)
@click.option("--reason", required=True, help="Why; recorded with who decided.")
@click.option("--as", "actor", help="Who decides (a console user; default: --as / --token).")
@click.option("--approval", "approval_id", type=int, help="A move above [four_eyes]'s amount: "
              "the approved request to run under.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@click.pass_context
@run_async
async def attributions_resolve(
    ctx: click.Context,
    receipt: str,
    keep: bool,
    move_to: str | None,
    reason: str,
    actor: str | None,
    approval_id: int | None,
    as_json: bool,
) -> None:
    """Decide the open attribution dispute(s) of lender receipt RECEIPT: --keep (the
    mismatch is dismissed and the disputed rows count again as they were) or --move-to
    PLACEMENT (the first dispute is resolved by moving the receipt's unsettled shares to
    PLACEMENT, with rule `moved`, the reason and an evidence leaf; the others are dismissed).
    Every step is a mismatch action by --as with --reason. Exits 1 when there is no open
    dispute or the decision is refused."""
    from gateway.cli.attribution import acting_user
    from gateway.resolutions.rules import ActionRequest, MismatchFilter
    from gateway.settlement.disputes import open_disputes

    if keep == (move_to is not None):
        raise click.UsageError("say --keep or --move-to PLACEMENT (one of them)")
    gateway = await open_gateway(ctx)
    done: list[dict[str, Any]] = []
    refused: dict[int, str] = {}
    try:
        user = await acting_user(
            ctx, gateway.db, gateway.clock, name=actor, required=True, purpose="attributions"
        )
        assert user is not None
        async with gateway.db.connect() as conn:
            ids = await open_disputes(conn, receipt)
        if not ids:
            raise click.ClickException(f"receipt {receipt!r} has no open attribution dispute")
        service = gateway.resolutions()
        for n, mismatch_id in enumerate(ids):
            move = move_to is not None and n == 0
            request = ActionRequest(
                action="accept" if move else "dismiss",
                actor=user.name,
                reason=reason,
                placement_id=move_to if move else None,
                approval_id=approval_id if move else None,
            )
            result = await service.bulk(MismatchFilter(states=(), ids=(mismatch_id,)), request)
            refused.update(result.refused)
            done += [
                {"mismatch_id": r.mismatch_id, "action": r.action, "details": r.details}
                for r in result.done
            ]
            if move and result.refused:
                break
    finally:
        await gateway.aclose()
    if as_json:
        click.echo(json.dumps({"done": done, "refused": refused}, default=str, indent=2))
    else:
        for d in done:
            console.print(f"#{d['mismatch_id']}: {d['action']}: {d['details']}", highlight=False)
        for mismatch_id, why in refused.items():
            console.print(f"#{mismatch_id}: refused: {why}", highlight=False)
    if refused:
        ctx.exit(1)


COMMANDS: list[click.Command] = [attributions]

__all__ = ["COMMANDS"]
