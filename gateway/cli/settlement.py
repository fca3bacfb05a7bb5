"""``settlement`` commands: monthly commission statements (佣金结算单) per agency.

``build`` makes (or remakes) a month's draft from the attributions, ``adjust`` and ``fee
add`` change it, ``issue`` hashes it, makes the XLSX and signed PDF and sends it to the
agency, ``list`` and ``show`` read, ``export`` writes the documents to a folder. Mutating
commands record the acting person (the global ``--as`` / ``--token``, else the OS user).
Amounts are integer minor units (分).
"""

import asyncio
import json
from datetime import date
from pathlib import Path

import click
from rich.table import Table

from gateway.cli.attribution import recorded_actor
from gateway.cli.context import console, echo_json, json_option, open_gateway, run_async
from gateway.config.commission import FEE_KINDS


@click.group()
def settlement() -> None:
    """Monthly settlement statements: commission on attributed repayments, adjustments,
    legal fees; issued to the agency, which confirms or disputes them."""


@settlement.command("build")
@click.option("--agency", "agency_id", required=True, help="The agency id.")
@click.option("--month", required=True, help="The month, YYYY-MM.")
@json_option
@click.pass_context
@run_async
async def build(ctx: click.Context, agency_id: str, month: str, as_json: bool) -> None:
    """Build AGENCY's statement for MONTH from its attributions (rebuilds a draft; after a
    dispute, builds the next revision)."""
    gateway = await open_gateway(ctx)
    try:
        actor = await recorded_actor(ctx, gateway.db, gateway.clock)
        service = gateway.statements()
        sid = await service.build(agency_id, month, actor=actor)
        view = await service.show(sid)
    finally:
        await gateway.aclose()
    if as_json:
        echo_json(view.statement)
        return
    _summary(view.statement)


@settlement.command("list")
@click.option("--agency", "agency_id", help="Only this agency.")
@click.option("--month", help="Only this month, YYYY-MM.")
@json_option
@click.pass_context
@run_async
async def list_statements(
    ctx: click.Context, agency_id: str | None, month: str | None, as_json: bool
) -> None:
    """List statements (every revision), newest month first."""
    gateway = await open_gateway(ctx)
    try:
        rows = await gateway.statements().statements(agency_id=agency_id, month=month)
    finally:
        await gateway.aclose()
    if as_json:
        echo_json({"statements": rows})
        return
    table = Table(title=f"{len(rows)} statement(s)")
    for name in ("id", "agency", "month", "rev", "state", "currency", "recovered", "total"):
        table.add_column(name, no_wrap=True)
    for r in rows:
        table.add_row(
            str(r["id"]),
            str(r["agency_id"]),
            str(r["month"]),
            str(r["revision"]),
            str(r["state"]),
            str(r["currency"]),
            str(r["recovered_minor"]),
            str(r["total_minor"]),
        )
    console.print(table)


@settlement.command("show")
@click.argument("statement_id", type=int)
@json_option
@click.pass_context
@run_async
async def show(ctx: click.Context, statement_id: int, as_json: bool) -> None:
    """Show a statement with its lines, adjustments, fees and documents."""
    gateway = await open_gateway(ctx)
    try:
        view = await gateway.statements().show(statement_id)
    finally:
        await gateway.aclose()
    if as_json:
        echo_json(view.as_dict())
        return
    _summary(view.statement)
    table = Table(title="lines")
    for name in ("#", "paid on", "placement", "amount", "rule", "bps", "commission"):
        table.add_column(name, no_wrap=True)
    for line in view.lines:
        table.add_row(
            str(line["line_no"]),
            str(line["paid_on"]),
            str(line["placement_id"]),
            str(line["amount_minor"]),
            str(line["rule"] or "withheld (disputed)"),
            str(line["rate_bps"] or ""),
            str(line["commission_minor"] if line["commission_minor"] is not None else ""),
        )
    console.print(table)
    for adj in view.adjustments:
        console.print(f"adjustment {adj['amount_minor']}: {adj['reason']} ({adj['actor']})")
    for fee in view.fees:
        console.print(
            f"fee {fee['kind']} {fee['case_id']}: advanced {fee['advanced_minor']}, "
            f"reimbursed {fee['reimbursed_minor']} (receipt {fee['receipt_ref']})"
        )


@settlement.command("adjust")
@click.argument("statement_id", type=int)
@click.option("--amount-minor", type=int, required=True, help="Signed amount, minor units.")
@click.option("--reason", required=True, help="Why (shown to the agency on the statement).")
@click.pass_context
@run_async
async def adjust(ctx: click.Context, statement_id: int, amount_minor: int, reason: str) -> None:
    """Add an adjustment to a draft statement."""
    gateway = await open_gateway(ctx)
    try:
        actor = await recorded_actor(ctx, gateway.db, gateway.clock)
        await gateway.statements().adjust(statement_id, amount_minor, reason, actor=actor)
    finally:
        await gateway.aclose()
    console.print(f"statement {statement_id}: adjustment {amount_minor} recorded ({actor})")


@settlement.group("fee")
def fee() -> None:
    """Legal fees a law firm advanced (court fees, lawyers' fees)."""


@fee.command("add")
@click.option("--agency", "agency_id", required=True)
@click.option("--case", "case_id", required=True)
@click.option("--kind", type=click.Choice(FEE_KINDS), required=True)
@click.option("--amount-minor", type=click.IntRange(min=1), required=True)
@click.option("--currency", default="CNY", show_default=True)
@click.option("--receipt-ref", required=True, help="The receipt or invoice number.")
@click.option(
    "--on", "incurred_on", type=click.DateTime(["%Y-%m-%d"]), required=True, help="YYYY-MM-DD"
)
@click.pass_context
@run_async
async def fee_add(
    ctx: click.Context,
    agency_id: str,
    case_id: str,
    kind: str,
    amount_minor: int,
    currency: str,
    receipt_ref: str,
    incurred_on: object,
) -> None:
    """Record a fee the firm advanced; the statement of its month reimburses it (at cost or
    capped, by [commission.legal_fees])."""
    assert hasattr(incurred_on, "date")
    day: date = incurred_on.date()
    gateway = await open_gateway(ctx)
    try:
        actor = await recorded_actor(ctx, gateway.db, gateway.clock)
        fee_id = await gateway.statements().add_fee(
            agency_id,
            case_id,
            kind,
            amount_minor,
            receipt_ref=receipt_ref,
            incurred_on=day,
            actor=actor,
            currency=currency,
        )
    finally:
        await gateway.aclose()
    console.print(f"fee {fee_id} recorded for {agency_id} {day:%Y-%m}: rebuild the statement")


@settlement.command("issue")
@click.argument("statement_id", type=int)
@click.pass_context
@run_async
async def issue(ctx: click.Context, statement_id: int) -> None:
    """Issue a draft: hash it, make the XLSX and signed PDF, send it to the agency."""
    gateway = await open_gateway(ctx)
    try:
        actor = await recorded_actor(ctx, gateway.db, gateway.clock)
        sha = await gateway.statements().issue(statement_id, actor=actor)
    finally:
        await gateway.aclose()
    console.print(f"statement {statement_id} issued; SHA-256 {sha}", highlight=False)


@settlement.command("export")
@click.argument("statement_id", type=int)
@click.option(
    "--to",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
)
@click.pass_context
@run_async
async def export(ctx: click.Context, statement_id: int, folder: Path) -> None:
    """Write an issued statement's XLSX and PDF, and the statement as JSON, to a folder
    (for an SFTP or email agency, which is not sent the statement packet)."""
    gateway = await open_gateway(ctx)
    try:
        service = gateway.statements()
        view = await service.show(statement_id)
        files = [await service.document(statement_id, kind) for kind in ("xlsx", "pdf")]
    finally:
        await gateway.aclose()
    stem = files[0][0].rsplit(".", 1)[0]
    canonical = json.dumps(view.as_dict(), ensure_ascii=False, indent=2, default=str)
    files.append((f"{stem}.json", canonical.encode()))
    for path in await asyncio.to_thread(_write, folder, files):
        console.print(f"wrote {path}")


def _write(folder: Path, files: list[tuple[str, bytes]]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in files:
        (folder / name).write_bytes(data)
        written.append(folder / name)
    return written


def _summary(st: dict[str, object]) -> None:
    console.print(
        f"statement {st['id']}: {st['agency_id']} {st['month']} r{st['revision']} {st['state']}"
        f" | recovered {st['recovered_minor']} | commission {st['lines_minor']}"
        f" (+{st['floor_topup_minor']} -{st['ceiling_cut_minor']}) | adjustments "
        f"{st['adjustments_minor']} | fees {st['fees_minor']} | total {st['total_minor']} "
        f"{st['currency']} | withheld {st['withheld_minor']}",
        highlight=False,
    )


COMMANDS = [settlement]

__all__ = ["COMMANDS", "settlement"]
