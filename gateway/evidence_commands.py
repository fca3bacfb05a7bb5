"""CLI commands of the evidence log: ``evidence verify|checkpoint``."""

import json

import click

from gateway.cli_support import console, err_console, open_gateway, run_async


@click.group()
def evidence() -> None:
    """The tamper-evident log of every packet, receipt and inbound message."""


@evidence.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
@run_async
async def evidence_verify(ctx: click.Context, as_json: bool) -> None:
    """Recompute the Merkle tree, check every checkpoint signature and every attested row.

    Exits 1 on any tampering, naming the leaf, checkpoint or row.
    """
    gateway = await open_gateway(ctx)
    try:
        report = await gateway.evidence.verify([gateway.note_verifier])
    finally:
        await gateway.aclose()
    problems = [str(p) for p in report.problems]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": report.ok,
                    "leaves": report.leaves_checked,
                    "checkpoints": report.checkpoints_checked,
                    "problems": problems,
                },
                indent=2,
            )
        )
    else:
        for p in problems[:50]:
            err_console.print(f"  [red]✗[/] {p}", highlight=False)
        verdict = (
            "[green]evidence log verifies[/]"
            if report.ok
            else "[red]evidence log does NOT verify[/]"
        )
        console.print(
            f"{verdict}: {report.leaves_checked} leaves, "
            f"{report.checkpoints_checked} checkpoints, {len(problems)} problems"
        )
    if not report.ok:
        ctx.exit(1)


@evidence.command("checkpoint")
@click.pass_context
@run_async
async def evidence_checkpoint(ctx: click.Context) -> None:
    """Sign a checkpoint over the current tree (if it grew) and print it."""
    from gateway.clock import to_datetime

    gateway = await open_gateway(ctx)
    try:
        row = await gateway.evidence.checkpoint(now=to_datetime(gateway.clock.now()))
    finally:
        await gateway.aclose()
    console.print(
        row.note if row is not None else "tree unchanged since the last checkpoint", highlight=False
    )


COMMANDS: list[click.Command] = [evidence]

__all__ = ["COMMANDS"]
