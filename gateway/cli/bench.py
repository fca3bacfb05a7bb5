"""CLI commands of the benchmarks: ``bench ...``. Each prints JSON with a ratio against a
baseline measured in the same run."""

import json
from typing import Literal

import click

from gateway.cli.context import run_async


@click.group()
def bench() -> None:
    """Benchmarks that report a ratio against a baseline measured in the same run."""


@bench.command("webhook-in")
@click.option("--requests", "count", type=int, default=4000, show_default=True)
@click.option("--concurrency", type=int, default=32, show_default=True)
@run_async
async def bench_webhook_in(count: int, concurrency: int) -> None:
    """Inbound: verified + durably stored events/s vs a bare aiohttp handler (JSON)."""
    from gateway.bench.webhook_in import run

    click.echo(json.dumps(await run(count=count, concurrency=concurrency), indent=2))


@bench.command("webhook-out")
@click.option("--packets", "count", type=int, default=4000, show_default=True)
@click.option("--concurrency", type=int, default=32, show_default=True)
@run_async
async def bench_webhook_out(count: int, concurrency: int) -> None:
    """Outbound: delivered + recorded packets/s vs a raw aiohttp client loop (JSON)."""
    from gateway.bench.webhook_out import run

    click.echo(json.dumps(await run(count=count, concurrency=concurrency), indent=2))


@bench.command("reconcile")
@click.option(
    "--rows",
    type=click.IntRange(min=1_000),
    default=1_000_000,
    show_default=True,
    help="Placements, and as many agency events.",
)
@click.option("--seed", type=int, default=20260101, show_default=True)
@click.option("--progress", is_flag=True, help="Progress lines on stderr.")
@run_async
async def bench_reconcile(rows: int, seed: int, progress: bool) -> None:
    """Reconciliation: placements vs as many events (and the lender's feed), classified and
    breaks written, in seconds and as a ratio to a bare SQL join of the same tables (JSON)."""
    from gateway.bench.reconcile import run

    click.echo(json.dumps(await run(rows=rows, seed=seed, progress=progress), indent=2))


@bench.command("sftp-out")
@click.option(
    "--cases",
    type=click.IntRange(min=10),
    default=100_000,
    show_default=True,
    help="Placements in the one batch (and rows in the result file picked up).",
)
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--encrypt", is_flag=True, help="OpenPGP-encrypt the batch (gpg, a run key).")
@click.option("--progress", is_flag=True, help="Progress lines on stderr.")
@run_async
async def bench_sftp_out(cases: int, rounds: int, encrypt: bool, progress: bool) -> None:
    """SFTP batch: one placement file rendered, uploaded and recorded vs the bare-SQL floor of
    its records (target: within 1.5x) and a raw asyncssh put of the same bytes; peak RSS at two
    batch sizes; pickup of a result file of as many rows (JSON)."""
    from gateway.bench.sftp_out import run

    report = await run(cases=cases, rounds=rounds, encrypt=encrypt, progress=progress)
    click.echo(json.dumps(report, indent=2))


@bench.command("intake")
@click.option(
    "--accounts",
    type=click.IntRange(min=10),
    default=1_000_000,
    show_default=True,
    help="Rows in the generated intake file (the targets are stated for 1,000,000).",
)
@click.option("--progress", is_flag=True, help="Progress lines on stderr.")
@run_async
async def bench_intake(accounts: int, progress: bool) -> None:
    """Intake: an N-account file imported (parsed, validated, encrypted, written), then
    imported again unchanged, against a bare load of the same file; seconds and peak RSS
    against the targets (<= 60 s, <= 400 MB at 1,000,000 rows) (JSON)."""
    from gateway.bench.intake import run

    click.echo(json.dumps(await run(accounts=accounts, progress=progress), indent=2))


@bench.command("evidence")
@click.option(
    "--leaves",
    type=click.IntRange(min=1),
    default=200_000,
    show_default=True,
    help="Leaves appended at the headline transaction size.",
)
@click.option(
    "--per-transaction",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Leaves per transaction for the headline (1, 10 and 100 are measured too).",
)
@click.option("--progress", is_flag=True, help="Progress lines on stderr.")
@run_async
async def bench_evidence(leaves: int, per_transaction: int, progress: bool) -> None:
    """Evidence log: leaves appended inside transactions per second (target >= 50,000)
    against bare inserts of the same rows (JSON)."""
    from gateway.bench.evidence import run

    report = await run(leaves=leaves, per_transaction=per_transaction, progress=progress)
    click.echo(json.dumps(report, indent=2))


@bench.command("letters")
@click.option("--letters", type=click.IntRange(min=1), default=200, show_default=True)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Processes of the pool measured (default: CPUs, at most 4).",
)
def bench_letters(letters: int, workers: int | None) -> None:
    """Authorisation letters: render + PAdES sign per letter, in process and across a
    process pool, against a plain Helvetica PDF of the same text (JSON)."""
    from gateway.bench.letters import run

    click.echo(json.dumps(run(letters=letters, workers=workers), indent=2, ensure_ascii=False))


@bench.command("chaos-dispatch")
@click.option(
    "--placements",
    type=click.IntRange(min=10),
    default=10_000,
    show_default=True,
    help="Placements seeded on each side, one packet each.",
)
@click.option(
    "--kills",
    type=click.IntRange(min=0),
    default=90,
    show_default=True,
    help="Dispatcher processes SIGKILLed on each side, at random points of the run.",
)
@click.option("--workers", type=click.IntRange(1, 4), default=2, show_default=True)
@click.option("--agencies", type=click.IntRange(1, 8), default=2, show_default=True)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 256),
    default=8,
    show_default=True,
    help="Each agency's retry.concurrency: sends in flight per worker.",
)
@click.option("--batch-size", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option(
    "--lease-seconds",
    type=click.IntRange(5, 3600),
    default=10,
    show_default=True,
    help="How long a killed worker's packets wait before another worker sends them.",
)
@click.option(
    "--agency-latency-ms",
    type=click.IntRange(min=0),
    default=50,
    show_default=True,
    help="How long the counting agencies take to answer.",
)
@click.option(
    "--profile",
    type=click.Choice(["burst", "steady"]),
    default="burst",
    show_default=True,
    help="burst: every packet due at once, each kill mid-dispatch after a random progress "
    "point (harsh). steady: an intake hands over --rate packets a second and the kills land "
    "at uniformly random times on any live worker (issue 15's chaos).",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=100.0,
    show_default=True,
    help="Packets handed to the dispatcher a second under --profile steady.",
)
@click.option(
    "--standby",
    type=click.IntRange(0, 4),
    default=None,
    help="Workers started ahead that replace a killed one at once. Default: 0 under burst, "
    "--workers under steady.",
)
@click.option(
    "--evidence",
    type=click.Choice(["staged", "locked"]),
    default="staged",
    show_default=True,
    help="On PostgreSQL: staged as serve does ([cluster] stage_evidence), or appended under "
    "the evidence lock by every recorder.",
)
@click.option(
    "--database-url",
    help="A postgresql:// URL: each side runs in a database created on that server and "
    "dropped afterwards (needs CREATEDB). Default: SQLite files in a temp dir.",
)
@click.option("--seed", "seed_value", type=int, default=20260101, show_default=True)
@click.option("--progress", is_flag=True, help="Progress lines on stderr.")
@run_async
async def bench_chaos_dispatch(
    placements: int,
    kills: int,
    workers: int,
    agencies: int,
    concurrency: int,
    batch_size: int,
    lease_seconds: int,
    agency_latency_ms: int,
    profile: Literal["burst", "steady"],
    rate: float,
    standby: int | None,
    evidence: str,
    database_url: str | None,
    seed_value: int,
    progress: bool,
) -> None:
    """Crash recovery: dispatcher processes SIGKILLed at random while they deliver to counting
    agencies; deliveries sent twice, lost or changed, with outcomes group-committed vs
    committed once per whole batch, and every duplicate traced to a kill (JSON)."""
    from gateway.bench.chaos import run

    report = await run(
        placements=placements,
        kills=kills,
        workers=workers,
        agencies=agencies,
        concurrency=concurrency,
        batch_size=batch_size,
        lease_seconds=lease_seconds,
        agency_latency_ms=agency_latency_ms,
        profile=profile,
        rate=rate,
        standby=standby,
        stage_evidence=evidence == "staged",
        database_url=database_url,
        seed_value=seed_value,
        progress=progress,
    )
    click.echo(json.dumps(report, indent=2))


@bench.command("cluster")
@click.option(
    "--database-url",
    envvar="GATEWAY_BENCH_POSTGRES_URL",
    required=True,
    help="A postgresql:// URL: each fleet runs in a database created on that server and "
    "dropped afterwards (needs CREATEDB). Also $GATEWAY_BENCH_POSTGRES_URL.",
)
@click.option(
    "--processes",
    "sizes",
    type=click.IntRange(1, 16),
    multiple=True,
    default=(1, 2, 4),
    show_default=True,
    help="Fleet sizes measured (repeat the option); 1 is always measured as the baseline.",
)
@click.option("--placements", type=click.IntRange(min=1), default=2000, show_default=True)
@click.option("--events", type=click.IntRange(min=1), default=4000, show_default=True)
@click.option("--concurrency", type=click.IntRange(1, 512), default=32, show_default=True)
@click.option("--agency-latency-ms", type=click.IntRange(min=0), default=20, show_default=True)
@click.option("--progress", is_flag=True, help="Progress lines on stderr.")
@run_async
async def bench_cluster(
    database_url: str,
    sizes: tuple[int, ...],
    placements: int,
    events: int,
    concurrency: int,
    agency_latency_ms: int,
    progress: bool,
) -> None:
    """Many processes: 1, 2 and 4 real ``serve`` processes on one PostgreSQL database, inbound
    events posted to them in turn and packets drained to a counting agency; each fleet's
    throughput against one process's (JSON)."""
    from gateway.bench.cluster import run

    report = await run(
        database_url=database_url,
        sizes=tuple(sorted(set(sizes))),
        placements=placements,
        events=events,
        concurrency=concurrency,
        agency_latency_ms=agency_latency_ms,
        progress=progress,
    )
    click.echo(json.dumps(report, indent=2))


COMMANDS: list[click.Command] = [bench]

__all__ = ["COMMANDS"]
