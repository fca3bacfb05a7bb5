"""``evaluation`` commands: the annual evaluation of each agency (README "Annual
evaluation").

``report`` generates and stores reports (every agency, or ``--agency``; ``--due`` only the
agencies whose contract ends within ``[evaluation] before_contract_end_days``) and writes
their documents with ``-o DIR``; ``list`` and ``show`` read them; ``decide`` records the
reviewer's decision (renew, reduce share, terminate) and ``approve`` is the second person's
approval (which changes the register) or, with ``--reject``, rejection. ``incident add``
records a data incident against an agency. The acting person is the global ``--as`` /
``--token``.
"""

import asyncio
from datetime import date
from pathlib import Path

import click
from rich.table import Table

from gateway.cli.attribution import acting_user, recorded_actor
from gateway.cli.context import (
    GatewayGroup,
    console,
    echo_json,
    json_option,
    open_gateway,
    run_async,
)
from gateway.clock import to_datetime
from gateway.evaluation.documents import KINDS
from gateway.evaluation.model import DECISIONS
from gateway.evaluation.service import SEVERITIES


@click.group(cls=GatewayGroup)
def evaluation() -> None:
    """Annual agency evaluations (年度评估): register standing, compliance, performance against
    peers in the same strata, vintage curve, SLA and money, a recommendation, and the
    reviewer's decision approved by a second person, which changes the register."""


@evaluation.command("report")
@click.option("--agency", "agency_ids", multiple=True, help="Only this agency (repeatable).")
@click.option(
    "--end",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="The period's end (exclusive, YYYY-MM-DD); default: the first of this month.",
)
@click.option(
    "--start",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="The period's start; default: a year before --end.",
)
@click.option(
    "--due",
    is_flag=True,
    help="Only agencies whose contract ends within [evaluation] before_contract_end_days "
    "and that have no recent report (what serve runs daily).",
)
@click.option(
    "-o",
    "--output",
    "folder",
    type=click.Path(path_type=Path, file_okay=False),
    help="Write each report's PDFs (zh, en) and XLSX to this folder.",
)
@json_option
@click.pass_context
@run_async
async def report(
    ctx: click.Context,
    agency_ids: tuple[str, ...],
    end: object,
    start: object,
    due: bool,
    folder: Path | None,
    as_json: bool,
) -> None:
    """Generate and store the annual evaluation of each agency (or those named)."""
    gateway = await open_gateway(ctx)
    try:
        actor = await recorded_actor(ctx, gateway.db, gateway.clock)
        service = gateway.evaluations()
        today = to_datetime(gateway.clock.now()).date()
        until = _day(end) or today.replace(day=1)
        agencies = list(agency_ids) or sorted(gateway.agencies)
        if due:
            agencies = await service.due(agencies, today=today)
        ids = await service.generate(
            agencies,
            start=_day(start),
            end=until,
            trigger="contract_end" if due else "on_demand",
            actor=actor,
            now=to_datetime(gateway.clock.now()),
        )
        rows = [await service.show(i) for i in ids]
        files = [await service.document(i, k) for i in ids for k in KINDS] if folder else []
    finally:
        await gateway.aclose()
    written = await asyncio.to_thread(_write, folder, files) if folder else []
    if as_json:
        echo_json({"reports": rows, "written": [str(p) for p in written]})
        return
    _table(rows)
    for path in written:
        console.print(f"wrote {path}")


@evaluation.command("list")
@click.option("--agency", "agency_id", help="Only this agency.")
@json_option
@click.pass_context
@run_async
async def list_reports(ctx: click.Context, agency_id: str | None, as_json: bool) -> None:
    """List the stored evaluations, newest first."""
    gateway = await open_gateway(ctx)
    try:
        rows = await gateway.evaluations().listing(agency_id=agency_id)
    finally:
        await gateway.aclose()
    if as_json:
        echo_json({"reports": rows})
        return
    _table(rows)


@evaluation.command("show")
@click.argument("report_id", type=int)
@click.option(
    "-o",
    "--output",
    "folder",
    type=click.Path(path_type=Path, file_okay=False),
    help="Also write its PDFs (zh, en) and XLSX to this folder.",
)
@json_option
@click.pass_context
@run_async
async def show(ctx: click.Context, report_id: int, folder: Path | None, as_json: bool) -> None:
    """Show one evaluation: its figures, recommendation, decision and documents."""
    gateway = await open_gateway(ctx)
    try:
        service = gateway.evaluations()
        row = await service.show(report_id)
        files = [await service.document(report_id, k) for k in KINDS] if folder else []
    finally:
        await gateway.aclose()
    written = await asyncio.to_thread(_write, folder, files) if folder else []
    if as_json:
        echo_json(row)
        return
    f = row["figures"]
    _table([row])
    perf, comp, sla = f["performance"], f["compliance"], f["sla"]
    console.print(
        f"placements {perf['placements']}, placed {perf['placed_minor']}, recovered "
        f"{perf['recovered_minor']} ({_pct(perf['recovery_bps'])}); relative to peers in the "
        f"same strata {_pct(perf['relative_bps'])}"
    )
    console.print(
        f"violations {comp['violations']} (high {comp['high_violations']}); complaints "
        f"{comp['complaints']}; deletions {comp['deletions']}; incidents {comp['incidents']}"
    )
    console.print(
        f"SLA ack {_pct(sla['ack']['on_time_bps'])}, first activity "
        f"{_pct(sla['first_activity']['on_time_bps'])}; money {f['money']}"
    )
    for reason in f["reasons"]:
        console.print(
            f"reason: {reason['code']} {reason['value']} (threshold "
            f"{reason['threshold']}) → {reason['recommends']}"
        )
    for doc in row["documents"]:
        console.print(f"{doc['kind']}: {doc['name']} sha256 {doc['sha256']}")
    for path in written:
        console.print(f"wrote {path}")


@evaluation.command("decide")
@click.argument("report_id", type=int)
@click.option("--decision", type=click.Choice(DECISIONS), required=True)
@click.option("--reason", required=True, help="Why (kept with the decision and the register).")
@click.option(
    "--share-bps",
    type=click.IntRange(0, 9_999),
    help="reduce_share: the new share factor; default [evaluation] reduce_share_bps.",
)
@click.option(
    "--extend-to",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="renew: the contract's new end (YYYY-MM-DD), changed in the register on approval.",
)
@json_option
@click.pass_context
@run_async
async def decide(
    ctx: click.Context,
    report_id: int,
    decision: str,
    reason: str,
    share_bps: int | None,
    extend_to: object,
    as_json: bool,
) -> None:
    """Propose the decision on an evaluation; a second person approves it (`evaluation
    approve`)."""
    gateway = await open_gateway(ctx)
    try:
        maker = await acting_user(
            ctx, gateway.db, gateway.clock, required=True, purpose="an evaluation decision"
        )
        assert maker is not None
        approval = await gateway.evaluations().propose(
            report_id,
            decision,
            reason=reason,
            maker=maker,
            now=to_datetime(gateway.clock.now()),
            share_bps=share_bps,
            extend_to=_day(extend_to),
        )
    finally:
        await gateway.aclose()
    if as_json:
        echo_json(approval.as_dict())
        return
    console.print(
        f"evaluation {report_id}: {decision} proposed by {maker.name}; approval #{approval.id} "
        "waits for a second person (`agency-gateway --as OTHER evaluation approve "
        f"{report_id}`)"
    )


@evaluation.command("approve")
@click.argument("report_id", type=int)
@click.option("--reject", is_flag=True, help="Reject the proposed decision instead.")
@click.option("--note", help="The checker's note.")
@json_option
@click.pass_context
@run_async
async def approve(
    ctx: click.Context, report_id: int, reject: bool, note: str | None, as_json: bool
) -> None:
    """Approve (and carry out in the register) or reject the decision proposed on an
    evaluation, as the second person."""
    gateway = await open_gateway(ctx)
    try:
        checker = await acting_user(
            ctx, gateway.db, gateway.clock, required=True, purpose="approving a decision"
        )
        assert checker is not None
        row = await gateway.evaluations().check(
            report_id,
            approve=not reject,
            checker=checker,
            now=to_datetime(gateway.clock.now()),
            note=note,
        )
    finally:
        await gateway.aclose()
    if as_json:
        echo_json(row)
        return
    _table([row])


@evaluation.group("incident")
def incident() -> None:
    """Data incidents recorded against an agency (counted in its evaluation)."""


@incident.command("add")
@click.option("--agency", "agency_id", required=True)
@click.option("--on", "occurred_on", type=click.DateTime(formats=["%Y-%m-%d"]), required=True)
@click.option("--severity", type=click.Choice(SEVERITIES), required=True)
@click.option("--summary", required=True, help="What happened; no personal data.")
@click.option("--ref", help="The lender's incident file reference.")
@click.pass_context
@run_async
async def incident_add(
    ctx: click.Context,
    agency_id: str,
    occurred_on: object,
    severity: str,
    summary: str,
    ref: str | None,
) -> None:
    """Record a data incident (a leak, a lost device, data sent to the wrong party)."""
    gateway = await open_gateway(ctx)
    try:
        actor = await recorded_actor(ctx, gateway.db, gateway.clock)
        day = _day(occurred_on)
        assert day is not None
        new_id = await gateway.evaluations().add_incident(
            agency_id,
            occurred_on=day,
            severity=severity,
            summary=summary,
            ref=ref,
            actor=actor,
            now=to_datetime(gateway.clock.now()),
        )
    finally:
        await gateway.aclose()
    console.print(f"data incident #{new_id} recorded against {agency_id} ({severity})")


def _day(value: object) -> date | None:
    return None if value is None else value.date()  # type: ignore[attr-defined]


def _pct(bps: object) -> str:
    return "-" if bps is None else f"{int(str(bps)) / 100:.2f}%"


def _table(rows: list[dict[str, object]]) -> None:
    table = Table(title=f"{len(rows)} evaluation(s)")
    for name in ("id", "agency", "period", "recommendation", "state", "decision", "decided by"):
        table.add_column(name, no_wrap=True)
    for r in rows:
        table.add_row(
            str(r["id"]),
            str(r["agency_id"]),
            f"{r['period_start']}..{r['period_end']}",
            str(r["recommendation"]),
            str(r["state"]),
            str(r["decision"] or ""),
            str(r["decided_by"] or ""),
        )
    console.print(table)


def _write(folder: Path | None, files: list[tuple[str, bytes]]) -> list[Path]:
    assert folder is not None
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in files:
        (folder / name).write_bytes(data)
        written.append(folder / name)
    return written


COMMANDS = [evaluation]

__all__ = ["COMMANDS", "evaluation"]
