"""CLI commands that set a gateway up: ``check-config``, ``keys generate``, ``db upgrade`` and
``schemas export``."""

from pathlib import Path

import click
from rich.table import Table

from gateway.cli.context import config_path, console, open_gateway, run_async
from gateway.errors import ConfigError


@click.command("check-config")
@click.pass_context
def check_config(ctx: click.Context) -> None:
    """Validate gateway.toml, every agency file and every key they reference, and that
    authorisation letters can be issued (registrations, signing certificate, font).

    Reports each problem as `file: key: reason` and exits 2 if there is any.
    """
    from gateway.bootstrap import check_all_secrets, check_letters, load_config
    from gateway.config.agencies import WebhookAgency

    settings, agencies = load_config(config_path(ctx))
    problems = check_all_secrets(settings, agencies) + check_letters(settings, agencies)
    if problems:
        raise ConfigError(problems)
    table = Table("agency", "name", "channel", "buckets", "capacity", "keys")
    for a in agencies.values():
        table.add_row(
            a.id,
            a.name,
            a.channel,
            ",".join(a.eligibility.buckets),
            str(a.capacity.max_open_placements),
            (
                f"out {a.signing.scheme} x{len(a.signing.keys)}, "
                f"in {a.inbound.scheme} x{len(a.inbound.keys)}"
                if isinstance(a, WebhookAgency)
                else "-"
            ),
        )
    console.print(table)
    console.print(
        f"[green]configuration OK[/]: {len(agencies)} agencies, database {settings.database.url}"
    )


@click.group()
def keys() -> None:
    """Key material for PII encryption, evidence checkpoints and agency signatures."""


@keys.command("generate")
@click.pass_context
def keys_generate(ctx: click.Context) -> None:
    """Create every missing key file the config names (never overwrites).

    Files are written with mode 0600. Keys configured as environment variables are listed
    so you can set them yourself.
    """
    from gateway.bootstrap import load_config
    from gateway.keys import generate_missing

    settings, agencies = load_config(config_path(ctx))
    table = Table("key", "file", "result")
    for action in generate_missing(settings, agencies):
        table.add_row(action.what, action.path, action.done)
    console.print(table)


@click.group()
def db() -> None:
    """Database schema management (Alembic migrations)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@click.pass_context
@run_async
async def db_upgrade(ctx: click.Context, revision: str) -> None:
    """Create the schema or migrate it to the newest revision."""
    from gateway.store.migrate import current_revision, upgrade

    gateway = await open_gateway(ctx, migrate=False)
    try:
        await upgrade(gateway.db, revision)
        console.print(
            f"database {gateway.db.redacted_url()} at revision {await current_revision(gateway.db)}"
        )
    finally:
        await gateway.aclose()


@click.group()
def schemas() -> None:
    """The wire contracts: JSON Schemas and the OpenAPI document."""


@schemas.command("export")
@click.option(
    "--root",
    type=click.Path(path_type=Path),
    default=Path("."),
    show_default=True,
    help="The checkout to write into (its schemas/ folder).",
)
def schemas_export(root: Path) -> None:
    """Regenerate schemas/json/*.json and schemas/openapi.json from the code."""
    from gateway.contracts.export import export

    for path in export(root):
        console.print(f"wrote {path}")


COMMANDS = [check_config, keys, db, schemas]

__all__ = ["COMMANDS"]
