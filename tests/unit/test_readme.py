"""The README documents every command and option the CLI has (the docs promise it)."""

from collections.abc import Iterator
from pathlib import Path

import click

from gateway.cli import main

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def _commands(
    command: click.Command, path: tuple[str, ...] = ()
) -> Iterator[tuple[str, click.Command]]:
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _commands(sub, (*path, name))
    else:
        yield " ".join(path), command


def test_every_command_and_option_is_in_the_readme() -> None:
    missing = []
    for name, command in _commands(main):
        leaf = name.rpartition(" ")[2]
        # A group's later commands may be listed after its first: `users list` / `disable NAME`.
        if f"agency-gateway {name}" not in README and f"`{leaf} " not in README:
            missing.append(name)
        missing += [
            f"{name} {option}"
            for param in command.params
            for option in param.opts
            if option.startswith("--") and option != "--help" and option not in README
        ]
    assert missing == [], f"document these in README.md: {missing}"
