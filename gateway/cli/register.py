"""``agency-gateway register ...``: the agency register (README "Agency register"): list and
show entries with their standing and history, import the register file, change an agency's
status, share, qualifications and contract, list expiry reminders, and run the register job."""

import json
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any, cast

import click
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.cli.context import console, open_gateway, run_async
from gateway.errors import GatewayError

as_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
reason_option = click.option("--reason", required=True, help="Why (kept in the history).")
DAY = click.DateTime(["%Y-%m-%d"])


def _plain(value: object) -> object:
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _echo_json(value: object) -> None:
    click.echo(json.dumps(_plain(value), indent=2, ensure_ascii=False))


def _day(value: datetime | None) -> date | None:
    return value.date() if value is not None else None


@click.group()
def register() -> None:
    """The agency register: who is admitted, on what contract and qualifications, and
    whether allocation may place with them (see README "Agency register")."""


@register.command("list")
@click.option("--on", "on_day", type=DAY, help="Standing on this day (default: today).")
@as_json_option
@click.pass_context
@run_async
async def register_list(ctx: click.Context, on_day: datetime | None, as_json: bool) -> None:
    """Every agency: register status, standing today (may it take cases, and if not why),
    contract end, the next lapse and the allocation share. Configured agencies with no entry
    are listed too (they receive nothing while [register] enforce = true)."""
    from gateway.clock import to_datetime
    from gateway.register.standing import standing
    from gateway.register.store import read_register

    gateway = await open_gateway(ctx)
    try:
        gate = gateway.placements.register
        day = _day(on_day) or (
            gate.day(to_datetime(gateway.clock.now()))
            if gate
            else to_datetime(gateway.clock.now()).date()
        )
        async with gateway.db.connect() as conn:
            entries = await read_register(conn)
        enforce = gateway.settings.agency_register.enforce
    finally:
        await gateway.aclose()
    rows: list[dict[str, Any]] = []
    for agency_id in sorted(set(entries) | set(gateway.agencies)):
        entry = entries.get(agency_id)
        if entry is None:
            rows.append(
                {
                    "agency_id": agency_id,
                    "status": None,
                    "allowed": not enforce,
                    "reasons": ["not in the agency register"] if enforce else [],
                }
            )
            continue
        st = standing(entry, entry.qualifications, day)
        rows.append(
            {
                "agency_id": agency_id,
                "legal_name": entry.legal_name,
                "status": entry.status,
                "allowed": st.allowed,
                "reasons": list(st.reasons),
                "contract_start": entry.contract_start,
                "contract_end": entry.contract_end,
                "next_lapse": st.next_lapse,
                "share_bps": entry.share_bps,
                "revision": entry.revision,
                "configured": agency_id in gateway.agencies,
            }
        )
    if as_json:
        _echo_json({"day": day, "enforce": enforce, "agencies": rows})
        return
    table = Table(
        "agency",
        "status",
        "standing",
        "contract",
        "next lapse",
        "share",
        title=f"register on {day}",
    )
    for r in rows:
        contract = f"{r['contract_start']} .. {r['contract_end'] or 'open'}" if r["status"] else "-"
        table.add_row(
            str(r["agency_id"]),
            str(r["status"] or "(no entry)"),
            "may take cases" if r["allowed"] else "refused: " + "; ".join(r["reasons"]),
            contract,
            str(r.get("next_lapse") or "-"),
            f"{r['share_bps'] / 100:.0f}%" if r["status"] else "-",
        )
    console.print(table)


@register.command("show")
@click.argument("agency_id")
@as_json_option
@click.pass_context
@run_async
async def register_show(ctx: click.Context, agency_id: str, as_json: bool) -> None:
    """AGENCY_ID's entry: identity, contract, data-processing agreement, deposit, admission
    review, status, qualifications (with their SHA-256) and its history of changes."""
    from dataclasses import asdict

    from gateway.clock import to_datetime
    from gateway.register.standing import standing
    from gateway.register.store import read_entry, read_history

    gateway = await open_gateway(ctx)
    try:
        async with gateway.db.connect() as conn:
            entry = await read_entry(conn, agency_id)
            history = await read_history(conn, agency_id)
        gate = gateway.placements.register
        now = to_datetime(gateway.clock.now())
        day = gate.day(now) if gate else now.date()
    finally:
        await gateway.aclose()
    st = standing(entry, entry.qualifications, day)
    out = asdict(entry)
    out["standing"] = {"day": day, **asdict(st)}
    out["history"] = [asdict(c) for c in history]
    if as_json:
        _echo_json(out)
        return
    details = Table("field", "value", title=f"{agency_id}: revision {entry.revision}")
    for key, value in out.items():
        if key not in {"qualifications", "history", "standing"}:
            details.add_row(key, str(_plain(value)))
    details.add_row(
        "standing", "may take cases" if st.allowed else "refused: " + "; ".join(st.reasons)
    )
    console.print(details)
    docs = Table("kind", "issued", "expires", "required", "sha256", title="qualifications")
    for q in entry.qualifications:
        docs.add_row(
            q.kind, str(q.issued_on or "-"), str(q.expires_on or "-"), str(q.required), q.sha256
        )
    console.print(docs)
    changes = Table("rev", "when", "who", "action", "what", "why", title="history")
    for c in history:
        what = ", ".join(f"{k}: {v[0]} → {v[1]}" for k, v in c.changes.items())
        changes.add_row(
            str(c.revision),
            c.at.isoformat(timespec="seconds"),
            c.actor,
            c.action,
            what[:200],
            c.reason or "",
        )
    console.print(changes)


@register.command("import")
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
@as_json_option
@click.pass_context
@run_async
async def register_import(ctx: click.Context, path: Path | None, as_json: bool) -> None:
    """Load the register file PATH (default: [register] file) in one transaction: new
    agencies are admitted, known ones updated where the file differs (a status change
    follows the transition table), qualifications recorded with their hashes. Importing the
    same file again changes nothing."""
    from gateway.cli.attribution import recorded_actor
    from gateway.clock import to_datetime
    from gateway.register.importing import configured_file, import_register

    gateway = await open_gateway(ctx)
    try:
        source = path or configured_file(gateway.settings)
        if source is None:
            raise GatewayError("no register file: give PATH or set [register] file")
        actor = await recorded_actor(ctx, gateway.db, gateway.clock)
        report = await import_register(
            gateway.db,
            source,
            actor=actor,
            now=to_datetime(gateway.clock.now()),
            configured=gateway.agencies,
        )
    finally:
        await gateway.aclose()
    if as_json:
        _echo_json({"file": str(source), **report.as_dict()})
        return
    console.print(
        f"{source}: {len(report.admitted)} admitted, {len(report.changed)} changed, "
        f"{len(report.unchanged)} unchanged"
        + (
            f"; not configured (kept, receive nothing): {', '.join(report.unconfigured)}"
            if report.unconfigured
            else ""
        )
    )


async def _change(
    ctx: click.Context,
    agency_id: str,
    as_json: bool,
    change: Callable[[AsyncConnection, str, datetime], Awaitable[Any]],
) -> None:
    """Run one register change in a transaction as the acting person; print the entry."""
    from gateway.cli.attribution import recorded_actor
    from gateway.clock import to_datetime

    gateway = await open_gateway(ctx)
    try:
        actor = await recorded_actor(ctx, gateway.db, gateway.clock)
        async with gateway.db.transaction() as conn:
            entry = await change(conn, actor, to_datetime(gateway.clock.now()))
    finally:
        await gateway.aclose()
    if as_json:
        _echo_json(
            {
                "agency_id": agency_id,
                "status": entry.status,
                "share_bps": entry.share_bps,
                "revision": entry.revision,
            }
        )
        return
    console.print(
        f"{agency_id}: {entry.status}, share {entry.share_bps} bps, revision {entry.revision}"
    )


def _status_command(name: str, status: str, doc: str) -> None:
    @register.command(name, help=doc)
    @click.argument("agency_id")
    @reason_option
    @as_json_option
    @click.pass_context
    @run_async
    async def command(ctx: click.Context, agency_id: str, reason: str, as_json: bool) -> None:
        from gateway.register.store import set_status

        async def change(conn: AsyncConnection, actor: str, now: datetime) -> Any:
            return await set_status(conn, agency_id, status, reason=reason, actor=actor, now=now)

        await _change(ctx, agency_id, as_json, change)


_status_command(
    "suspend",
    "suspended",
    "Suspend AGENCY_ID: it receives no new cases from the next round and keeps working the "
    'ones it holds (README "Agency register"); `reinstate` ends the suspension.',
)
_status_command("reinstate", "admitted", "Reinstate a suspended AGENCY_ID: it takes cases again.")
_status_command(
    "terminate",
    "terminated",
    "Terminate AGENCY_ID's contract: it receives no new cases and the register job recalls "
    "its open placements (AGENCY_TERMINATED) after [register] recall_grace_days.",
)
_status_command(
    "blacklist",
    "blacklisted",
    "Blacklist AGENCY_ID (final: no way back): no new cases, its open placements recalled "
    "(AGENCY_BLACKLISTED).",
)


@register.command("admit")
@click.argument("agency_id")
@click.option("--legal-name", help="Registered legal name (a new entry needs it).")
@click.option("--registration-number", help="统一社会信用代码 (a new entry needs it).")
@click.option(
    "--contract-start", type=DAY, help="First day of the contract (a new entry needs it)."
)
@click.option("--contract-end", type=DAY, help="Last day of the contract (omit: open-ended).")
@click.option("--business-scope", default="", help="Business scope / licence text.")
@reason_option
@as_json_option
@click.pass_context
@run_async
async def register_admit(
    ctx: click.Context,
    agency_id: str,
    legal_name: str | None,
    registration_number: str | None,
    contract_start: datetime | None,
    contract_end: datetime | None,
    business_scope: str,
    reason: str,
    as_json: bool,
) -> None:
    """Admit AGENCY_ID: a new entry (give --legal-name, --registration-number and
    --contract-start; the rest with `contract` and `qualify`, or keep the register file and
    `import` it), or re-admit a terminated one after a new admission review."""
    from gateway.register.store import create_entry, read_register, set_status

    async def change(conn: AsyncConnection, actor: str, now: datetime) -> Any:
        if agency_id in await read_register(conn, [agency_id]):
            return await set_status(
                conn, agency_id, "admitted", reason=reason, actor=actor, now=now
            )
        if not (legal_name and registration_number and contract_start):
            raise click.UsageError(
                f"{agency_id} is not in the register: a new entry needs --legal-name, "
                "--registration-number and --contract-start"
            )
        return await create_entry(
            conn,
            agency_id,
            {
                "legal_name": legal_name,
                "registration_number": registration_number,
                "contract_start": contract_start.date(),
                "contract_end": _day(contract_end),
                "business_scope": business_scope,
            },
            reason=reason,
            actor=actor,
            now=now,
        )

    await _change(ctx, agency_id, as_json, change)


@register.command("share")
@click.argument("agency_id")
@click.argument("share_bps", type=click.IntRange(0, 10_000))
@reason_option
@as_json_option
@click.pass_context
@run_async
async def register_share(
    ctx: click.Context, agency_id: str, share_bps: int, reason: str, as_json: bool
) -> None:
    """Set AGENCY_ID's allocation share in basis points of its contract weight (10000: full,
    5000: half as many cases, 0: none), e.g. after an evaluation decided "reduce share"."""
    from gateway.register.store import set_share

    async def change(conn: AsyncConnection, actor: str, now: datetime) -> Any:
        return await set_share(conn, agency_id, share_bps, reason=reason, actor=actor, now=now)

    await _change(ctx, agency_id, as_json, change)


@register.command("qualify")
@click.argument("agency_id")
@click.option("--kind", required=True, help="e.g. business_licence, data_security_certificate.")
@click.option(
    "--file",
    "file_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The document's file: hashed with SHA-256 (the file is not stored).",
)
@click.option("--sha256", help="The SHA-256 of a document kept elsewhere (instead of --file).")
@click.option("--issued", type=DAY, help="Issue day.")
@click.option("--expires", type=DAY, help="Last valid day (omit: does not expire).")
@click.option("--optional", is_flag=True, help="Not required: its lapse does not stop allocation.")
@click.option("--reference", help="The document's number or reference.")
@reason_option
@as_json_option
@click.pass_context
@run_async
async def register_qualify(
    ctx: click.Context,
    agency_id: str,
    kind: str,
    file_path: Path | None,
    sha256: str | None,
    issued: datetime | None,
    expires: datetime | None,
    optional: bool,
    reference: str | None,
    reason: str,
    as_json: bool,
) -> None:
    """Record a qualification document of AGENCY_ID; it stands for its kind from now on (a
    renewed licence: record the new one)."""
    import asyncio

    from gateway.register.register_file import file_sha256
    from gateway.register.standing import Qualification
    from gateway.register.store import add_qualification

    if (file_path is None) == (sha256 is None):
        raise click.UsageError("give exactly one of --file or --sha256")
    digest = await asyncio.to_thread(file_sha256, file_path) if file_path else str(sha256).lower()
    doc = Qualification(
        kind=kind,
        sha256=digest,
        issued_on=_day(issued),
        expires_on=_day(expires),
        required=not optional,
        reference=reference,
        file_name=file_path.name if file_path else None,
    )

    async def change(conn: AsyncConnection, actor: str, now: datetime) -> Any:
        return await add_qualification(conn, agency_id, doc, reason=reason, actor=actor, now=now)

    await _change(ctx, agency_id, as_json, change)


@register.command("contract")
@click.argument("agency_id")
@click.option("--start", type=DAY, help="First day of the contract.")
@click.option("--end", type=DAY, help="Last day of the contract (a renewal moves it on).")
@click.option("--reference", help="The contract's reference.")
@click.option("--dpa", "dpa_ref", help="Data-processing agreement reference.")
@click.option("--dpa-signed", type=DAY, help="Day the data-processing agreement was signed.")
@click.option(
    "--deposit", "deposit_minor", type=click.IntRange(min=0), help="Deposit, minor units."
)
@reason_option
@as_json_option
@click.pass_context
@run_async
async def register_contract(
    ctx: click.Context,
    agency_id: str,
    start: datetime | None,
    end: datetime | None,
    reference: str | None,
    dpa_ref: str | None,
    dpa_signed: datetime | None,
    deposit_minor: int | None,
    reason: str,
    as_json: bool,
) -> None:
    """Change AGENCY_ID's contract terms, data-processing agreement or deposit (what is
    given; the rest stays)."""
    from gateway.register.store import update_details

    values: dict[str, Any] = {
        "contract_start": _day(start),
        "contract_end": _day(end),
        "contract_ref": reference,
        "dpa_ref": dpa_ref,
        "dpa_signed_on": _day(dpa_signed),
        "deposit_minor": deposit_minor,
    }
    values = {k: v for k, v in values.items() if v is not None}
    if not values:
        raise click.UsageError("nothing to change: give at least one option")

    async def change(conn: AsyncConnection, actor: str, now: datetime) -> Any:
        return await update_details(
            conn, agency_id, values, reason=reason, actor=actor, now=now, action="contract"
        )

    await _change(ctx, agency_id, as_json, change)


@register.command("reminders")
@click.option(
    "--days",
    type=click.IntRange(min=0),
    help="Look this far ahead (default: the largest of [register] reminder_days).",
)
@as_json_option
@click.pass_context
@run_async
async def register_reminders(ctx: click.Context, days: int | None, as_json: bool) -> None:
    """Contracts and required qualifications that end within --days (or have ended), soonest
    first, for agencies not terminated or blacklisted."""
    from dataclasses import asdict

    from gateway.clock import to_datetime
    from gateway.register.standing import expiring
    from gateway.register.store import read_register

    gateway = await open_gateway(ctx)
    try:
        async with gateway.db.connect() as conn:
            entries = await read_register(conn)
        now = to_datetime(gateway.clock.now())
        gate = gateway.placements.register
        day = gate.day(now) if gate else now.date()
        horizon = (
            days
            if days is not None
            else max(gateway.settings.agency_register.reminder_days, default=0)
        )
    finally:
        await gateway.aclose()
    found = expiring(entries.values(), day, horizon)
    if as_json:
        _echo_json({"day": day, "days": horizon, "expiring": [asdict(e) for e in found]})
        return
    table = Table(
        "agency", "what", "ends", "days left", title=f"ending within {horizon} days of {day}"
    )
    for e in found:
        table.add_row(e.agency_id, e.subject, str(e.ends_on), str(e.days_left))
    console.print(table)


@register.command("check")
@as_json_option
@click.pass_context
@run_async
async def register_check(ctx: click.Context, as_json: bool) -> None:
    """Run the register job once (what `serve` does every [register] check_every_seconds):
    log the expiry reminders due (each once) and recall the open placements of agencies
    whose standing lapsed (terminated, blacklisted, contract ended, a required
    qualification expired), once per lapse."""
    from gateway.runtime import register_check as run_check

    gateway = await open_gateway(ctx)
    try:
        out = await run_check(gateway)
    finally:
        await gateway.aclose()
    if as_json:
        _echo_json(out)
        return
    reminded = cast(list[object], out.get("reminded") or [])
    recalled = cast(dict[str, list[str]], out.get("recalled") or {})
    console.print(
        f"{len(reminded)} reminder(s) given; "
        + (
            "; ".join(f"{a}: {len(ids)} placement(s) recalled" for a, ids in recalled.items())
            or "nothing recalled"
        )
    )


COMMANDS = [register]

__all__ = ["COMMANDS"]
