"""CLI commands of the SFTP channel."""

import click

COMMANDS: list[click.Command] = []

__all__ = ["COMMANDS"]
