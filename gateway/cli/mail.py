"""CLI commands of the law-firm email channel: ``mail poll`` and ``events import``."""

import json
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.table import Table

from adapters.email.inbox_store import record_sheet
from adapters.email.mailbox import build_mailbox_reader
from gateway.cli.context import console, err_console, open_gateway, run_async
from gateway.config.agencies import EmailAgency
from gateway.errors import ConfigError
from gateway.inbound.sheets import RowDefaults, parse_sheet
from gateway.reconciliation.recorder import ArrivalPolicy


@click.group()
def mail() -> None:
    """Law-firm email: read replies and delivery reports from the firms' mailboxes."""


@mail.command("poll")
@click.option("--agency", "agency_ids", multiple=True, help="Only these firms (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@click.pass_context
@run_async
async def mail_poll(ctx: click.Context, agency_ids: tuple[str, ...], as_json: bool) -> None:
    """Read every new message in each firm's mailbox once (`serve` does this on a
    schedule): replies the firm signed become events, bounces mark their dispatch dead,
    anything unsigned (per email.smime.reply_signature), unmatched or unreadable becomes a
    mismatch for ops. The raw message is always kept."""
    gateway = await open_gateway(ctx)
    results: dict[str, dict[str, object]] = {}
    try:
        firms = [
            a
            for a in gateway.agencies.values()
            if isinstance(a, EmailAgency) and a.email.imap is not None
        ]
        unknown = sorted(set(agency_ids) - {a.id for a in firms})
        if unknown:
            raise ConfigError(f"--agency: no email agency with an [email.imap] section: {unknown}")
        for agency in firms:
            if agency_ids and agency.id not in agency_ids:
                continue
            reader = build_mailbox_reader(
                agency,
                base_dir=gateway.settings.base_dir,
                db=gateway.db,
                clock=gateway.clock.now,
                arrival=ArrivalPolicy.of(gateway.settings),
            )
            stats = await reader.poll()
            results[agency.id] = {
                "fetched": stats.fetched,
                "by_kind": stats.kinds,
                "uidvalidity": stats.uidvalidity,
                "rescanned": stats.rescanned,
            }
    finally:
        await gateway.aclose()
    if as_json:
        console.print_json(json.dumps(results))
        return
    table = Table("agency", "messages", "by kind", "rescanned")
    for agency_id, r in results.items():
        kinds = r["by_kind"]
        assert isinstance(kinds, dict)
        table.add_row(
            agency_id,
            str(r["fetched"]),
            ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) or "-",
            "yes" if r["rescanned"] else "no",
        )
    console.print(table)


@click.group()
def events() -> None:
    """Agency events handed over outside the live channels."""


@events.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--agency", "agency_id", required=True, help="The agency or firm that sent it.")
@click.option("--check", is_flag=True, help="Only check the file; import nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
@run_async
async def events_import(
    ctx: click.Context, file: Path, agency_id: str, check: bool, as_json: bool
) -> None:
    """Import agency events from FILE (.csv, .xlsx or .json), as if they came in a reply.

    One row per event, the columns of the reply sheet (README "Law-firm email"). Bad lines
    are reported with line and field and skipped; the good ones are reconciled. The file is
    stored with an evidence leaf; importing the same file again changes nothing. A settlement
    answer its statement cannot take is stored, changes nothing and is reported as refused.
    Exits 1 when any line was refused.
    """
    gateway = await open_gateway(ctx)
    try:
        agency = gateway.agencies.get(agency_id)
        if agency is None:
            raise ConfigError(f"--agency: no agency {agency_id!r}; see `agencies list`")
        replies = agency.email.replies if isinstance(agency, EmailAgency) else None
        now = datetime.fromtimestamp(gateway.clock.now(), UTC)
        data = file.read_bytes()  # noqa: ASYNC240 (one small sheet)
        parsed = parse_sheet(
            file.name,
            data,
            RowDefaults(
                received_at=now,
                currency=replies.default_currency if replies else "CNY",
                timezone=replies.timezone if replies else "Asia/Shanghai",
            ),
        )
        imported = None
        if not check and parsed.events:
            async with gateway.db.transaction() as conn:
                imported = await record_sheet(
                    conn,
                    agency_id=agency_id,
                    data=data,
                    events=parsed.events,
                    refused_lines=len(parsed.errors),
                    now=now,
                    arrival=ArrivalPolicy.of(gateway.settings),
                )
    finally:
        await gateway.aclose()
    report = {
        "file": str(file),
        "agency": agency_id,
        "events": len(parsed.events),
        "errors": [{"line": e.line, "field": e.field, "message": e.message} for e in parsed.errors],
        "imported": imported.applied if imported else 0,
        "already_imported": bool(imported and not imported.new),
        "inbound_id": imported.inbound_id if imported else None,
        "refused": list(imported.refused) if imported else [],
    }
    if as_json:
        console.print_json(json.dumps(report, ensure_ascii=False))
    else:
        for e in parsed.errors:
            err_console.print(f"{file}: {e}", markup=False, highlight=False, soft_wrap=True)
        for why in imported.refused if imported else ():
            err_console.print(
                f"{file}: refused: {why}", markup=False, highlight=False, soft_wrap=True
            )
        if imported is not None and not imported.new:
            console.print(
                f"{file} was imported before (inbound {imported.inbound_id}); nothing changed",
                soft_wrap=True,
            )
        elif check:
            console.print(
                f"{len(parsed.events)} event(s) readable, {len(parsed.errors)} line(s) refused",
                soft_wrap=True,
            )
        else:
            console.print(
                f"{report['imported']} event(s) imported from {file}, "
                f"{len(parsed.errors)} line(s) refused",
                soft_wrap=True,
            )
    if parsed.errors or (imported is not None and imported.refused):
        ctx.exit(1)


COMMANDS: list[click.Command] = [mail, events]

__all__ = ["COMMANDS"]
