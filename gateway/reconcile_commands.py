"""CLI commands of reconciliation: ``reconcile``."""

import json

import click

from gateway.cli_support import console, open_gateway, run_async


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
@run_async
async def reconcile(ctx: click.Context, as_json: bool) -> None:
    """Run the SLA checks: overdue acknowledgements, first activity and broken promises
    become mismatches. (Events are reconciled as they arrive.)"""
    from gateway.runtime import sla_checks

    gateway = await open_gateway(ctx)
    try:
        counts = await sla_checks(gateway)
    finally:
        await gateway.aclose()
    if as_json:
        click.echo(json.dumps({"breaches": counts}, indent=2))
    else:
        console.print(f"SLA breaches raised: {sum(counts.values())} {dict(counts) or ''}")


COMMANDS: list[click.Command] = [reconcile]

__all__ = ["COMMANDS"]
