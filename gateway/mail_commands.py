"""CLI commands of the law-firm email channel."""

import click

COMMANDS: list[click.Command] = []

__all__ = ["COMMANDS"]
