"""CLI commands of the mismatch queue: ``mismatches list``."""

import json

import click
import sqlalchemy as sa
from rich.table import Table

from gateway.cli_support import console, open_gateway, run_async
from gateway.store.tables import Mismatch


@click.group()
def mismatches() -> None:
    """The queue of disagreements between our record and the agencies' reports."""


@mismatches.command("list")
@click.option("--kind", multiple=True, help="Only these kinds (repeatable).")
@click.option("--agency", multiple=True, help="Only these agencies (repeatable).")
@click.option(
    "--state",
    multiple=True,
    default=("open", "investigating"),
    show_default=True,
    help="Only these states (repeatable).",
)
@click.option("--limit", type=int, default=50, show_default=True, help="At most this many rows.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@click.pass_context
@run_async
async def mismatches_list(
    ctx: click.Context,
    kind: tuple[str, ...],
    agency: tuple[str, ...],
    state: tuple[str, ...],
    limit: int,
    as_json: bool,
) -> None:
    """List mismatches, newest first."""
    table_ = Mismatch.__table__  # type: ignore[attr-defined]
    m = table_.c
    gateway = await open_gateway(ctx)
    try:
        query = sa.select(table_).order_by(m.id.desc()).limit(limit)
        if kind:
            query = query.where(m.kind.in_(kind))
        if agency:
            query = query.where(m.agency_id.in_(agency))
        if state:
            query = query.where(m.state.in_(state))
        async with gateway.db.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
            total = (
                await conn.execute(
                    sa.select(sa.func.count()).select_from(table_).where(m.state.in_(state))
                )
            ).scalar_one()
    finally:
        await gateway.aclose()
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        **{k: v for k, v in r.items() if k not in ("ours", "theirs")},
                        "ours": json.loads(r["ours"]),
                        "theirs": json.loads(r["theirs"]),
                    }
                    for r in rows
                ],
                default=str,
                ensure_ascii=False,
                indent=2,
            )
        )
        return
    table = Table("id", "kind", "sev", "state", "agency", "placement", "delta", "detail")
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["kind"],
            r["severity"],
            r["state"],
            r["agency_id"],
            r["placement_id"] or "-",
            "" if r["delta_minor"] is None else str(r["delta_minor"]),
            r["detail"],
        )
    console.print(table)
    console.print(f"showing {len(rows)} of {total} in state(s) {', '.join(state)}")


COMMANDS: list[click.Command] = [mismatches]

__all__ = ["COMMANDS"]
