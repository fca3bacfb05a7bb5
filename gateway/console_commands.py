"""CLI commands of the ops console: ``users ...``."""

import click

COMMANDS: list[click.Command] = []

__all__ = ["COMMANDS"]
