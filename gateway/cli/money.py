"""CLI commands of the money model: ``attributions list|show`` (who is credited with each
lender receipt; gateway.settlement.attribution). Not to be confused with
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


COMMANDS: list[click.Command] = [attributions]

__all__ = ["COMMANDS"]
