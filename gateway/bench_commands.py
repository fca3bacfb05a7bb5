"""CLI commands of the benchmarks: ``bench ...``. Each prints JSON with a ratio against a
baseline measured in the same run."""

import json

import click

from gateway.cli_support import run_async


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


COMMANDS: list[click.Command] = [bench]

__all__ = ["COMMANDS"]
