"""What every CLI command module shares: consoles, the async bridge, error handling and
opening the gateway from ``--config``."""

import asyncio
import json
from collections.abc import Callable, Coroutine
from datetime import date, datetime
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import click
from rich.console import Console

from gateway.errors import ConfigError, GatewayError

if TYPE_CHECKING:
    from gateway.bootstrap import Gateway

P = ParamSpec("P")
R = TypeVar("R")

console = Console()
err_console = Console(stderr=True)

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")


def _json_default(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def echo_json(data: object) -> None:
    """``data`` as indented JSON on stdout: Chinese as is, dates and times in ISO 8601."""
    click.echo(json.dumps(data, default=_json_default, ensure_ascii=False, indent=2))


def run_async(fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, R]:
    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        return asyncio.run(fn(*args, **kwargs))

    return wrapper


class GatewayGroup(click.Group):
    """Turns gateway errors into a clear message and an exit code instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            err_console.print("[bold red]configuration problem(s):[/]")
            for problem in exc.problems:
                err_console.print(f"  • {problem}", markup=False, highlight=False)
            ctx.exit(2)
        except GatewayError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
            ctx.exit(1)


def config_path(ctx: click.Context) -> Path:
    path: Path = ctx.obj["config"]
    return path


async def open_gateway(ctx: click.Context, *, migrate: bool = True) -> "Gateway":
    # Imported here so that `--help` does not load the whole gateway.
    from gateway.bootstrap import build, load_config
    from gateway.store.migrate import upgrade

    settings, agencies = load_config(config_path(ctx))
    gateway = build(settings, agencies)
    if migrate:
        await upgrade(gateway.db)
    return gateway


__all__ = [
    "GatewayGroup",
    "config_path",
    "console",
    "echo_json",
    "err_console",
    "json_option",
    "open_gateway",
    "run_async",
]
