"""Subcommands of ``cases`` (see gateway.cli.cases) that read: ``cases list``, ``cases show``
and ``cases history``. They read through gateway.cases.views, as the console and its JSON API
do, so all three say the same thing; none of them shows personal data."""

from datetime import date, datetime
from typing import Any

import click
from rich.table import Column, Table

from gateway.cases.views import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    CaseFilter,
    case_detail,
    history_of,
    list_cases,
)
from gateway.cli.cases import cases
from gateway.cli.context import console, echo_json, open_gateway, run_async
from schemas.base import decimal_text

NONE = "-"


def _text(value: object) -> str:
    if value is None or value == "":
        return NONE
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _money(amount_minor: int | None, currency: str) -> str:
    return NONE if amount_minor is None else f"{currency} {decimal_text(amount_minor, currency)}"


async def _read(ctx: click.Context, reader: Any, *args: Any, **kwargs: Any) -> Any:
    gateway = await open_gateway(ctx)
    try:
        async with gateway.db.snapshot() as conn:
            return await reader(conn, *args, **kwargs)
    finally:
        await gateway.aclose()


@cases.command("list")
@click.option("--status", multiple=True, help="Only cases in this status (repeatable).")
@click.option("--bucket", multiple=True, help="Only this bucket (repeatable).")
@click.option("--agency", multiple=True, help="Only cases open with this agency (repeatable).")
@click.option("--tier", multiple=True, help="Only cases placed in this tier (repeatable).")
@click.option("--held", is_flag=True, help="Only cases with an active hold.")
@click.option("--hold", "hold_codes", multiple=True, help="Only with an active hold CODE.")
@click.option("--debtor", help="Only this debtor's cases.")
@click.option("--unallocated", is_flag=True, help="Only cases the last round left unplaced.")
@click.option("--search", help="Any id: case, debtor, placement or the agency's case ref.")
@click.option(
    "--limit",
    type=click.IntRange(1, MAX_LIMIT),
    default=DEFAULT_LIMIT,
    show_default=True,
    help="Rows per page.",
)
@click.option("--after", help="Start after this case id (the previous page's next_after).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@click.pass_context
@run_async
async def cases_list(
    ctx: click.Context,
    status: tuple[str, ...],
    bucket: tuple[str, ...],
    agency: tuple[str, ...],
    tier: tuple[str, ...],
    held: bool,
    hold_codes: tuple[str, ...],
    debtor: str | None,
    unallocated: bool,
    search: str | None,
    limit: int,
    after: str | None,
    as_json: bool,
) -> None:
    """List cases in id order, filtered, one page at a time.

    --json prints the page: total (all pages), next_after (the --after of the next page,
    null on the last) and items.
    """
    target = CaseFilter(
        statuses=status,
        buckets=bucket,
        agencies=agency,
        tiers=tier,
        held=True if held else None,
        hold_codes=hold_codes,
        debtor_id=debtor,
        unallocated=True if unallocated else None,
        search=search,
    )
    page = await _read(ctx, list_cases, target, limit=limit, after=after)
    if as_json:
        echo_json(page)
        return
    table = Table(
        Column("case", no_wrap=True), "debtor", "status", "bucket", "dpd", "balance", "agency",
        "tier", "return by", "holds", "unallocated because",
    )  # fmt: skip
    for r in page["items"]:
        table.add_row(
            r["id"],
            r["debtor_id"],
            r["status"],
            r["bucket"],
            str(r["dpd"]),
            _money(r["balance_minor"], r["currency"]),
            _text(r["agency_id"]),
            _text(r["tier"]),
            _text(r["return_by"]),
            ", ".join(r["holds"]) or NONE,
            _text(r["unallocated_reason"]),
        )
    console.print(table)
    more = f"; next page: --after {page['next_after']}" if page["next_after"] else ""
    console.print(f"{len(page['items'])} of {page['total']} shown{more}", highlight=False)


def _history_table(rows: list[dict[str, Any]]) -> Table:
    table = Table("when", "event", "from", "to", "by", "why", "placement", title="History")
    for h in rows:
        table.add_row(
            _text(h["at"]),
            h["event"],
            h["from_status"],
            h["to_status"],
            h["actor"],
            _text(h["reason"]),
            _text(h["placement_id"]),
        )
    return table


def _decision_lines(decision: dict[str, Any], heading: str) -> list[Any]:
    """A decision as a heading line and its candidates table."""
    summary = (
        f"[bold]{heading}[/] round {decision['round_id']} at {_text(decision['decided_at'])}: "
        f"bucket {decision['bucket']}, tier {_text(decision['tier'])}, rule {decision['rule']}, "
        f"strategy {decision['strategy']}, seed {decision['seed']}, draw "
        f"{_text(decision['draw'])} → {decision['chosen_agency'] or 'no agency'}"
    )
    lines: list[Any] = [summary]
    if decision["reason"]:
        lines.append(f"  reason: {decision['reason']}")
    table = Table("agency", "tier", "verdict", "weight", "factor", "")
    for c in decision["candidates"]:
        chosen = c.get("agency") == decision["chosen_agency"]
        table.add_row(
            _text(c.get("agency")),
            _text(c.get("tier")),
            _text(c.get("verdict")),
            _text(c.get("weight")),
            _text(c.get("factor")),
            "chosen" if chosen else "",
        )
    lines.append(table)
    return lines


@cases.command("show")
@click.argument("case_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@click.pass_context
@run_async
async def cases_show(ctx: click.Context, case_id: str, as_json: bool) -> None:
    """Everything about CASE_ID but the debtor's personal data: the case, its holds, its
    placements, why each went to its agency (the candidates, their verdicts and weights, the
    draw), why the last round left it unplaced, escalations and its history."""
    data = await _read(ctx, case_detail, case_id)
    if as_json:
        echo_json(data)
        return
    c = data["case"]
    console.print(f"[bold]Case {c['id']}[/] ({c['status']})", highlight=False)
    console.print(
        f"debtor {c['debtor_id']}, bucket {c['bucket']} ({c['dpd']} days past due), balance "
        f"{_money(c['balance_minor'], c['currency'])} of "
        f"{_money(c['principal_minor'], c['currency'])}, {c['product']}, grade "
        f"{c['credit_grade']}, region {c['region']}",
        highlight=False,
    )
    if c["unallocated_reason"]:
        console.print(f"unallocated: {c['unallocated_reason']}", highlight=False)
    holds = Table("code", "source", "by", "since", "note", "released", title="Holds")
    for h in data["holds"]:
        released = "active" if h["active"] else f"{_text(h['released_at'])} by {h['released_by']}"
        holds.add_row(
            h["code"], h["source"], h["placed_by"], _text(h["placed_at"]), _text(h["note"]),
            released,
        )  # fmt: skip
    console.print(holds if data["holds"] else "Holds: none")
    placements = Table(
        "placement", "agency", "tier", "state", "balance", "collected", "placed", "return by",
        "renewals", title="Placements",
    )  # fmt: skip
    for p in data["placements"]:
        placements.add_row(
            p["id"], p["agency_id"], _text(p["tier"]), p["state"],
            _money(p["balance_minor"], p["currency"]), _money(p["collected_minor"], p["currency"]),
            _text(p["placed_at"]), _text(p["return_by"]), str(p["renewals"]),
        )  # fmt: skip
    console.print(placements if data["placements"] else "Placements: never placed")
    console.print("[bold]Why this agency[/]")
    explained = False
    for p in data["placements"]:
        if p["decision"] is not None:
            explained = True
            for line in _decision_lines(p["decision"], f"{p['id']} ({p['agency_id']})"):
                console.print(line, highlight=False)
    if data["unallocated_decision"] is not None:
        explained = True
        for line in _decision_lines(data["unallocated_decision"], "Last round, unplaced"):
            console.print(line, highlight=False)
    if not explained:
        console.print("  no allocation decision recorded for this case", highlight=False)
    if data["escalations"]:
        escalations = Table("placement", "agency", "state", "reason", "proposed", "decided",
                            title="Escalations")  # fmt: skip
        for e in data["escalations"]:
            decided = f"{_text(e['decided_at'])} by {e['decided_by']}" if e["decided_by"] else NONE
            escalations.add_row(
                e["placement_id"], e["agency_id"], e["state"], e["reason"],
                _text(e["proposed_at"]), decided,
            )  # fmt: skip
        console.print(escalations)
    console.print(_history_table(data["history"]) if data["history"] else "History: none")


@cases.command("history")
@click.argument("case_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@click.pass_context
@run_async
async def cases_history(ctx: click.Context, case_id: str, as_json: bool) -> None:
    """Every change of CASE_ID's status, oldest first: the event, from and to, who or what
    made it (intake, allocation, expiry, escalation, agency:ID, ops:NAME) and why."""
    rows = await _read(ctx, history_of, case_id)
    if as_json:
        echo_json(rows)
        return
    console.print(_history_table(rows) if rows else f"{case_id}: no status change recorded")


COMMANDS: list[click.Command] = []

__all__ = ["COMMANDS", "cases_history", "cases_list", "cases_show"]
