"""CLI command group ``cases``: every case through its life (list, show, history, holds,
reopening, escalations). The subcommands live with their capability:
``gateway.cli.case_views`` (list, show, history), ``gateway.cli.case_holds`` (hold, release,
reopen) and ``gateway.cli.case_terms`` (escalations); each registers itself on ``cases``.
"""

import click

from gateway.cli.context import GatewayGroup


@click.group(cls=GatewayGroup)
def cases() -> None:
    """Cases: find them, see why they are where they are, hold and release them.

    A case moves open → placed (or legal) → returned / recalled / held / closed /
    written_off; README ("Case lifecycle") has the whole table.
    """


@click.group(cls=GatewayGroup)
def placements() -> None:
    """Placements: expiry and renewal of what agencies hold."""


COMMANDS: list[click.Command] = [cases, placements]

__all__ = ["COMMANDS", "cases", "placements"]
