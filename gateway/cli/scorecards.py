"""``agency-gateway scorecards ...``: the fair scorecards (recovery on lender-received money,
compared within strata, champion against challenger, roll, cure and cost of collection) and
the vintage curves as a chart."""

import asyncio
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from gateway.cli.context import console, open_gateway, run_async


def _period(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    from gateway.reporting.scorecards import period

    try:
        return period(
            start.date() if start else None,
            end.date() if end else None,
            today=datetime.now(UTC).date(),
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--from") from None


def _period_options(func: Any) -> Any:
    func = click.option(
        "--to",
        "end",
        type=click.DateTime(["%Y-%m-%d"]),
        help="Day after the last day of placements (UTC). Default: tomorrow.",
    )(func)
    return click.option(
        "--from",
        "start",
        type=click.DateTime(["%Y-%m-%d"]),
        help="First day of placements (UTC). Default: 30 days before --to.",
    )(func)


def _pct(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value * 100:.{digits}f}%"


def _interval(pair: list[float] | None, *, pct: bool = True) -> str:
    if pair is None:
        return "-"
    if pct:
        return f"[{_pct(pair[0])}, {_pct(pair[1])}]"
    return f"[{pair[0]:.3f}, {pair[1]:.3f}]"


@click.group()
def scorecards() -> None:
    """Fair scorecards: each agency against its peers within strata, champion against
    challenger, roll, cure and cost of collection, vintage curves (see README "Agency
    scorecards")."""


@scorecards.command("fair")
@_period_options
@click.option(
    "--strategy",
    type=click.Choice(["champion", "challenger"]),
    default=None,
    help="Only placements allocation drew this way.",
)
@click.option("--agency", "agency_ids", multiple=True, help="Only these agencies (repeat).")
@click.option("--strata", "show_strata", is_flag=True, help="Also print every stratum.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@click.pass_context
@run_async
async def scorecards_fair(
    ctx: click.Context,
    start: datetime | None,
    end: datetime | None,
    strategy: str | None,
    agency_ids: tuple[str, ...],
    show_strata: bool,
    as_json: bool,
) -> None:
    """The placements of a period measured on the money the lender received and attributed
    to them: per agency its crude recovery rate with its interval, and the ratio of its
    recovery to what its peers recovered in the same strata (bucket at placement, balance
    band, vintage month; 1.00 = as the peers on the same mix) with its interval; strata too
    small to compare are counted apart. Then champion against challenger (difference within
    strata, interval, p-value, significant or not) and roll, cure and cost of collection."""
    from gateway.reporting.stratified import stratified_scorecards

    since, until = _period(start, end)
    gateway = await open_gateway(ctx)
    try:
        report = await stratified_scorecards(
            gateway.db,
            start=since,
            end=until,
            agencies=gateway.agencies,
            settings=gateway.settings.scorecards,
            strategy=strategy,
        )
    finally:
        await gateway.aclose()
    out = report.as_dict()
    if agency_ids:
        wanted = set(agency_ids)
        out["comparisons"] = [c for c in out["comparisons"] if c["agency_id"] in wanted]
        out["flows"] = [f for f in out["flows"] if f["agency_id"] in wanted]
    if as_json:
        out["strategy"] = strategy
        click.echo(json.dumps(out, indent=2, ensure_ascii=False))
        return
    last = until - timedelta(days=1)
    level = f"{report.settings.confidence:.0%}"
    table = Table(
        "agency",
        "cur",
        "placed",
        "recovered",
        f"{level} interval",
        "vs peers",
        f"{level} interval",
        "too small",
        title=f"{strategy + ' ' if strategy else ''}placements of {since:%Y-%m-%d} to "
        f"{last:%Y-%m-%d}",
        caption="recovered: lender-received, attributed money / placed balance; vs peers: "
        "recovered / expected at the peers' rates in the same strata (1.00 = as the peers); "
        "* the interval leaves out 1",
    )
    for c in out["comparisons"]:
        ratio = "-" if c["ratio"] is None else f"{c['ratio']:.2f}{' *' if c['significant'] else ''}"
        table.add_row(
            c["agency_id"],
            c["currency"],
            str(c["placements"]),
            _pct(c["rate"]),
            _interval(c["rate_interval"]),
            ratio,
            _interval(c["ratio_interval"], pct=False),
            str(c["strata_too_small"]),
        )
    console.print(table)
    if show_strata:
        strata = Table(
            "agency",
            "bucket",
            "band",
            "vintage",
            "placements",
            "recovered",
            "interval",
            "peers",
            "peer rate",
            title="strata",
        )
        for c in out["comparisons"]:
            for s in c["strata"]:
                strata.add_row(
                    c["agency_id"],
                    s["bucket"],
                    s["band"],
                    s["vintage"],
                    str(s["placements"]),
                    _pct(s["rate"]),
                    _interval(s["rate_interval"]),
                    str(s["peer_placements"]),
                    _pct(s["peer_rate"]) if s["comparable"] else "too small",
                )
        console.print(strata)
    cc = Table(
        "cur",
        "champion",
        "challenger",
        "difference",
        f"{level} interval",
        "p",
        "strata",
        title="challenger - champion, within strata",
    )
    for k in out["champion_challenger"]:
        verdict = "" if k["difference"] is None else (" significant" if k["significant"] else "")
        cc.add_row(
            k["currency"],
            f"{_pct(k['champion']['rate'])} ({k['champion']['placements']})",
            f"{_pct(k['challenger']['rate'])} ({k['challenger']['placements']})",
            _pct(k["difference"]) + verdict,
            _interval(k["interval"]),
            "-" if k["p_value"] is None else f"{k['p_value']:.4f}",
            f"{k['strata']} (+{k['strata_too_small']} too small)",
        )
    console.print(cc)
    flows = Table(
        "agency",
        "cur",
        "cured",
        "rolled",
        "commission",
        "fees",
        "cost",
        "complaints /10k",
        title="roll, cure and cost of collection",
        caption="cured: closed paid or settled, or paid to the balance; rolled: escalated to "
        "legal or placed on a later tier; cost: (commission + fees) / recovered",
    )
    for f in out["flows"]:
        flows.add_row(
            f["agency_id"],
            f["currency"],
            _bps(f["cure_bps"]),
            _bps(f["roll_bps"]),
            str(f["commission_minor"]),
            str(f["fees_minor"]),
            _bps(f["cost_bps"]),
            "-" if f["complaints_per_10k"] is None else f"{f['complaints_per_10k']:.1f}",
        )
    console.print(flows)


def _bps(value: int | None) -> str:
    return "-" if value is None else f"{value / 100:.2f}%"


@scorecards.command("curves")
@_period_options
@click.option(
    "--as-of",
    type=click.DateTime(["%Y-%m-%d"]),
    help="Count money the lender received up to this day. Default: today (UTC).",
)
@click.option("--agency", "agency_ids", multiple=True, help="Only these agencies (repeat).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["png", "svg"]),
    default=None,
    help="Write the chart in this format to -o (else print the points).",
)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--lang", type=click.Choice(["en", "zh_CN"]), default="en", help="Chart labels.")
@click.option("--json", "as_json", is_flag=True, help="Print the points as JSON.")
@click.pass_context
@run_async
async def scorecards_curves(
    ctx: click.Context,
    start: datetime | None,
    end: datetime | None,
    as_of: datetime | None,
    agency_ids: tuple[str, ...],
    fmt: str | None,
    output: Path | None,
    lang: str,
    as_json: bool,
) -> None:
    """Vintage (liquidation) curves: each agency's recovered share of the placed balance by
    months on book (calendar months since the month of placement), cumulative, for the
    placements of a period; a vintage counts at a month once it has reached it. With
    --format png|svg -o FILE, the chart."""
    from gateway.reporting.charts import curves_png, curves_svg
    from gateway.reporting.stratified import remitting_agencies, vintage_curves

    if (fmt is None) != (output is None):
        raise click.UsageError("--format and -o go together")
    since, until = _period(start, end)
    day: date = as_of.date() if as_of else datetime.now(UTC).date()
    gateway = await open_gateway(ctx)
    try:
        remitting = set(remitting_agencies(gateway.agencies))
        found = await vintage_curves(
            gateway.db, start=since, end=until, as_of=day, agency_ids=agency_ids or None
        )
        # Agencies that remit have no dated attributed money: no curve unless asked for.
        found = [c for c in found if agency_ids or c.agency_id not in remitting]
    finally:
        await gateway.aclose()
    if fmt is not None and output is not None:
        chart = (
            curves_png(found, lang=lang)
            if fmt == "png"
            else curves_svg(found, lang=lang).encode("utf-8")
        )
        await asyncio.to_thread(output.write_bytes, chart)
    if as_json:
        click.echo(json.dumps([c.as_dict() for c in found], indent=2, ensure_ascii=False))
        return
    if fmt is not None:
        console.print(f"wrote {output} ({len(found)} curves)")
        return
    table = Table("agency", "cur", "months on book", title=f"recovered share, as of {day}")
    for c in found:
        table.add_row(
            c.agency_id,
            c.currency,
            "  ".join(f"{m}: {_pct(s, 1)}" for m, s, _p in c.points) or "-",
        )
    console.print(table)


COMMANDS = [scorecards]

__all__ = ["COMMANDS"]
