"""Who acts from the command line: every mutating command records a person.

The person is the global ``--as USER`` (``$GATEWAY_OPS_USER``), an active console user, or
the user of the API token given as ``--token`` (``$GATEWAY_OPS_TOKEN``, see ``users token``).
A command's own older flag (``--actor`` of the case commands, ``mismatches resolve --as``)
names the person for that command and wins over the global one. Four-eyes actions
(gateway.approvals) require a known user; other commands fall back to the operating-system
user, recorded as ``ops:NAME``, as before.
"""

import getpass

import click

from gateway.clock import to_datetime
from gateway.console.accounts import User, active_user, user_for_token
from gateway.errors import FourEyesRefused, NotFound
from gateway.ports import Clock
from gateway.store.database import Database


def ops_actor(name: str | None) -> str:
    """``ops:NAME``: the name given, or the operating-system user."""
    if not name:
        try:
            name = getpass.getuser()
        except (KeyError, OSError):  # no user name in the environment or the password db
            name = "unknown"
    return name if name.startswith("ops:") else f"ops:{name}"


as_option = click.option(
    "--as",
    "as_user",
    envvar="GATEWAY_OPS_USER",
    help="Who acts: an active console user (or $GATEWAY_OPS_USER).",
)
token_option = click.option(
    "--token",
    envvar="GATEWAY_OPS_TOKEN",
    help="Act as the user of this API token (or $GATEWAY_OPS_TOKEN); see `users token`.",
)


def remember(ctx: click.Context, as_user: str | None, token: str | None) -> None:
    """Keep the root command's ``--as`` and ``--token`` for the subcommand."""
    ctx.ensure_object(dict)
    ctx.obj["as_user"] = as_user or None
    ctx.obj["token"] = token or None


def _given(ctx: click.Context) -> tuple[str | None, str | None]:
    root = ctx.find_root()
    obj = root.obj if isinstance(root.obj, dict) else {}
    return obj.get("as_user"), obj.get("token")


async def acting_user(
    ctx: click.Context,
    db: Database,
    clock: Clock,
    *,
    name: str | None = None,
    required: bool = False,
    purpose: str = "this action",
) -> User | None:
    """The person acting: ``name`` (the command's own flag), else ``--as``, else the
    ``--token``'s user. NotFound for a name that is not an active user or a token that is
    unknown or revoked; FourEyesRefused when ``required`` and nobody was named."""
    as_user, token = _given(ctx)
    name = name or as_user
    if name:
        return await active_user(db, name.removeprefix("ops:"))
    if token:
        user = await user_for_token(db, token, now=to_datetime(clock.now()))
        if user is None:
            raise NotFound("the --token (or $GATEWAY_OPS_TOKEN) is unknown, revoked or disabled")
        return user
    if required:
        raise FourEyesRefused(
            f"{purpose} needs a known person: pass --as USER (an active console user) or "
            "--token TOKEN, before the command name (or set $GATEWAY_OPS_USER)"
        )
    return None


async def recorded_actor(
    ctx: click.Context, db: Database, clock: Clock, *, legacy: str | None = None
) -> str:
    """``ops:NAME`` for a command that is not four-eyes: the command's own free-text flag
    as before, else the ``--as``/``--token`` user, else the operating-system user."""
    if legacy:
        return ops_actor(legacy)
    user = await acting_user(ctx, db, clock)
    return ops_actor(user.name if user is not None else None)


__all__ = [
    "acting_user",
    "as_option",
    "ops_actor",
    "recorded_actor",
    "remember",
    "token_option",
]
