"""CLI commands of the SFTP channel: ``sftp poll|files|errors``.

* ``sftp poll`` runs result pickup once for every SFTP agency (``serve`` does it on a timer).
* ``sftp files`` lists what was exchanged: batches we dropped (with each file's remote path,
  size and SHA-256) and result files we picked up (state, rows accepted and refused).
* ``sftp errors ID`` shows the refused rows of one pickup: line, column, reason.

Placement files are sent by ``dispatch`` / ``serve`` like every other packet.
"""

import json
from datetime import date, datetime

import click
import sqlalchemy as sa
from rich.table import Table

from gateway.cli.context import console, open_gateway, run_async
from gateway.errors import NotFound
from gateway.runtime import channel_pollers
from gateway.store.transfer_tables import FileBatch, FilePickup, RemoteFile

BATCHES = FileBatch.__table__  # type: ignore[attr-defined]
FILES = RemoteFile.__table__  # type: ignore[attr-defined]
PICKUPS = FilePickup.__table__  # type: ignore[attr-defined]


def _json(data: object) -> None:
    def default(value: object) -> object:
        if isinstance(value, datetime | date):
            return value.isoformat()
        raise TypeError(type(value).__name__)

    click.echo(json.dumps(data, default=default, ensure_ascii=False, indent=2))


@click.group()
def sftp() -> None:
    """Placement files on agencies' SFTP servers and the result files they return."""


@sftp.command("poll")
@click.option("--agency", multiple=True, help="Only these agencies (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@click.pass_context
@run_async
async def sftp_poll(ctx: click.Context, agency: tuple[str, ...], as_json: bool) -> None:
    """Pick up ready result files once: claim, verify, parse, reconcile, archive."""
    gateway = await open_gateway(ctx)
    try:
        dispatcher = await gateway.dispatcher()
        report = {}
        for poller in channel_pollers(dispatcher):
            agency_id = poller.name.rpartition(":")[2]
            if agency and agency_id not in agency:
                continue
            report[agency_id] = dict(await poller.poll_once())
    finally:
        await gateway.aclose()
    if as_json:
        _json(report)
        return
    table = Table("agency", "outcome", "files")
    for agency_id, counts in report.items():
        for outcome, n in sorted(counts.items()) or [("nothing ready", 0)]:
            table.add_row(agency_id, outcome, str(n))
    console.print(table)


@sftp.command("files")
@click.option("--agency", multiple=True, help="Only these agencies (repeatable).")
@click.option(
    "--direction",
    type=click.Choice(["out", "in", "both"]),
    default="both",
    show_default=True,
    help="Batches we sent, result files we received, or both.",
)
@click.option("--limit", type=int, default=50, show_default=True, help="Newest rows per list.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@click.pass_context
@run_async
async def sftp_files(
    ctx: click.Context, agency: tuple[str, ...], direction: str, limit: int, as_json: bool
) -> None:
    """List file batches sent and result files picked up, newest first."""
    gateway = await open_gateway(ctx)
    out: list[dict[str, object]] = []
    received: list[dict[str, object]] = []
    try:
        async with gateway.db.snapshot() as conn:
            if direction in ("out", "both"):
                query = (
                    sa.select(
                        BATCHES.c.id,
                        BATCHES.c.agency_id,
                        BATCHES.c.base_name,
                        BATCHES.c.state,
                        BATCHES.c.record_count,
                        BATCHES.c.resend_of,
                        BATCHES.c.delivered_at,
                        BATCHES.c.error,
                    )
                    .order_by(BATCHES.c.id.desc())
                    .limit(limit)
                )
                if agency:
                    query = query.where(BATCHES.c.agency_id.in_(agency))
                batches = [dict(r._mapping) for r in (await conn.execute(query)).all()]
                ids = [b["id"] for b in batches]
                files = (
                    await conn.execute(
                        sa.select(
                            FILES.c.batch_id,
                            FILES.c.role,
                            FILES.c.remote_path,
                            FILES.c.size,
                            FILES.c.sha256,
                            FILES.c.state,
                        )
                        .where(FILES.c.batch_id.in_(ids))
                        .order_by(FILES.c.id)
                    )
                ).all()
                for batch in batches:
                    batch["files"] = [
                        {k: v for k, v in f._mapping.items() if k != "batch_id"}
                        for f in files
                        if f.batch_id == batch["id"]
                    ]
                    out.append(batch)
            if direction in ("in", "both"):
                picked = (
                    sa.select(
                        PICKUPS.c.id,
                        PICKUPS.c.agency_id,
                        PICKUPS.c.remote_name,
                        PICKUPS.c.kind,
                        PICKUPS.c.state,
                        PICKUPS.c.size,
                        PICKUPS.c.sha256,
                        PICKUPS.c.rows_total,
                        PICKUPS.c.rows_ok,
                        PICKUPS.c.rows_failed,
                        PICKUPS.c.final_path,
                        PICKUPS.c.finished_at,
                    )
                    .order_by(PICKUPS.c.id.desc())
                    .limit(limit)
                )
                if agency:
                    picked = picked.where(PICKUPS.c.agency_id.in_(agency))
                received = [dict(r._mapping) for r in (await conn.execute(picked)).all()]
    finally:
        await gateway.aclose()
    if as_json:
        _json({"sent": out, "received": received})
        return
    if direction in ("out", "both"):
        table = Table("batch", "agency", "state", "cases", "remote file", "bytes", "sha256", "file")
        for b in out:
            listed: list[dict[str, object]] = b["files"] or [{}]  # type: ignore[assignment]
            for n, f in enumerate(listed):
                first = n == 0
                table.add_row(
                    str(b["id"]) if first else "",
                    str(b["agency_id"]) if first else "",
                    str(b["state"]) if first else "",
                    str(b["record_count"]) if first else "",
                    str(f.get("remote_path", b["base_name"])),
                    str(f.get("size", "-")),
                    str(f.get("sha256", "-"))[:12],
                    str(f.get("state", "-")),
                )
        console.print(table, highlight=False)
    if direction in ("in", "both"):
        table = Table("pickup", "agency", "file", "kind", "state", "rows", "refused", "now at")
        for p in received:
            table.add_row(
                str(p["id"]),
                str(p["agency_id"]),
                str(p["remote_name"]),
                str(p["kind"]),
                str(p["state"]),
                f"{p['rows_ok']}/{p['rows_total']}",
                str(p["rows_failed"]),
                str(p["final_path"] or "-"),
            )
        console.print(table, highlight=False)


@sftp.command("errors")
@click.argument("pickup_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@click.pass_context
@run_async
async def sftp_errors(ctx: click.Context, pickup_id: int, as_json: bool) -> None:
    """Show why rows (or the whole file) of one picked-up file were refused."""
    gateway = await open_gateway(ctx)
    try:
        async with gateway.db.snapshot() as conn:
            row = (
                await conn.execute(sa.select(PICKUPS).where(PICKUPS.c.id == pickup_id))
            ).one_or_none()
    finally:
        await gateway.aclose()
    if row is None:
        raise NotFound(f"no pickup {pickup_id}; see `agency-gateway sftp files --direction in`")
    errors = json.loads(row.errors) if row.errors else []
    if as_json:
        _json({"pickup": pickup_id, "file": row.remote_name, "state": row.state, "errors": errors})
        return
    console.print(
        f"{row.remote_name}: {row.state}, {row.rows_ok} of {row.rows_total} rows accepted, "
        f"{row.rows_failed} refused" + (" (first 1000 listed)" if row.rows_failed > 1000 else ""),
        highlight=False,
    )
    table = Table("line", "column", "reason")
    for error in errors:
        table.add_row(str(error["line"]), str(error["field"]), str(error["message"]))
    console.print(table, highlight=False)


COMMANDS: list[click.Command] = [sftp]

__all__ = ["COMMANDS"]
