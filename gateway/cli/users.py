"""CLI commands of the ops console: ``users add|list|disable|enable|passwd|token``."""

import json
import sys

import click
from rich.table import Table

from gateway.cli.context import console, open_gateway, run_async
from gateway.clock import to_datetime
from gateway.console import accounts
from gateway.resolutions.rules import ROLES


@click.group()
def users() -> None:
    """People who use the ops console (and act on mismatches from the CLI with --as).

    \b
    Roles: viewer   reads everything, personal data masked
           operator also acts on mismatches (resolve, resend, recall, amend, ...)
           admin    also manages users and sees the PII reveal audit
    """


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    value: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value


@users.command("add")
@click.argument("name")
@click.option(
    "--role", type=click.Choice(ROLES), required=True, help="What the user may do (see above)."
)
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of stdin instead of prompting.",
)
@click.pass_context
@run_async
async def users_add(ctx: click.Context, name: str, role: str, password_stdin: bool) -> None:
    """Create user NAME with a password (at least 12 characters, hashed with scrypt)."""
    password = _password(password_stdin)
    gateway = await open_gateway(ctx)
    try:
        await accounts.add_user(
            gateway.db, name, role, password, now=to_datetime(gateway.clock.now())
        )
    finally:
        await gateway.aclose()
    console.print(f"user {name} ({role}) created; log in at the console's /login")


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@click.pass_context
@run_async
async def users_list(ctx: click.Context, as_json: bool) -> None:
    """Every user with role, status, last activity and API tokens (never hashes)."""
    gateway = await open_gateway(ctx)
    try:
        rows = await accounts.list_users(gateway.db)
    finally:
        await gateway.aclose()
    if as_json:
        click.echo(json.dumps(rows, default=str, indent=2))
        return
    table = Table("name", "role", "status", "created", "last seen", "API tokens")
    for r in rows:
        table.add_row(
            str(r["name"]),
            str(r["role"]),
            "disabled" if r["disabled"] else "active",
            f"{r['created_at']:%Y-%m-%d %H:%M}",
            f"{r['last_seen_at']:%Y-%m-%d %H:%M}" if r["last_seen_at"] else "-",
            str(r["api_tokens"]),
        )
    console.print(table)


async def _switch(ctx: click.Context, name: str, *, disabled: bool) -> None:
    gateway = await open_gateway(ctx)
    try:
        await accounts.set_disabled(
            gateway.db, name, disabled=disabled, now=to_datetime(gateway.clock.now())
        )
    finally:
        await gateway.aclose()


@users.command("disable")
@click.argument("name")
@click.pass_context
@run_async
async def users_disable(ctx: click.Context, name: str) -> None:
    """Disable NAME: ends their sessions and revokes their API tokens at once."""
    await _switch(ctx, name, disabled=True)
    console.print(f"user {name} disabled; sessions ended, API tokens revoked")


@users.command("enable")
@click.argument("name")
@click.pass_context
@run_async
async def users_enable(ctx: click.Context, name: str) -> None:
    """Enable NAME again (revoked API tokens stay revoked)."""
    await _switch(ctx, name, disabled=False)
    console.print(f"user {name} enabled")


@users.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the new password from stdin.")
@click.pass_context
@run_async
async def users_passwd(ctx: click.Context, name: str, password_stdin: bool) -> None:
    """Set a new password for NAME (ends their sessions)."""
    password = _password(password_stdin)
    gateway = await open_gateway(ctx)
    try:
        await accounts.set_password(
            gateway.db, name, password, now=to_datetime(gateway.clock.now())
        )
    finally:
        await gateway.aclose()
    console.print(f"password of {name} changed; their sessions ended")


@users.command("token")
@click.argument("name")
@click.option("--label", default="cli", show_default=True, help="What the token is for.")
@click.pass_context
@run_async
async def users_token(ctx: click.Context, name: str, label: str) -> None:
    """Create an API token acting as NAME for the console's JSON API (/api/v1).

    The token is printed once; only its hash is stored. Send it as
    'Authorization: Bearer <token>'. Disabling the user revokes it.
    """
    gateway = await open_gateway(ctx)
    try:
        token = await accounts.create_token(
            gateway.db, name, label, now=to_datetime(gateway.clock.now())
        )
    finally:
        await gateway.aclose()
    click.echo(token)


COMMANDS: list[click.Command] = [users]

__all__ = ["COMMANDS"]
