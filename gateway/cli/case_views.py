"""Subcommands of ``cases`` (see gateway.cli.cases); registered on import."""

import click

COMMANDS: list[click.Command] = []

__all__ = ["COMMANDS"]
