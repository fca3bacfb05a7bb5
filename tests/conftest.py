"""Shared fixtures: real SQLite files in tmp dirs, real PostgreSQL when a URL is given.

* ``database_url``: parametrised ``sqlite`` (a file under ``tmp_path``) and ``postgres``
  (marked ``postgres``): a throwaway database created with asyncpg on the server named by
  ``GATEWAY_TEST_POSTGRES_URL`` and dropped afterwards; skipped when the variable is unset.
* ``db``: a fresh ``Database`` on ``database_url`` with the schema applied
  (``gateway.store.migrate.upgrade``), so every test using it runs on both backends.
* ``sqlite_db``: the same on SQLite only.
* ``make_config``: writes a complete config directory (``gateway.toml``, one file per agency)
  and generates every key it names with ``gateway.keys.generate_missing``.
* ``seed_placements``: imports generated accounts (``gateway.demo.data`` through
  ``gateway.intake.service.import_file``) and allocates them to the given agencies.
"""

import json
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest
import sqlalchemy as sa
from hypothesis import settings
from sqlalchemy.engine import make_url

from gateway.allocation.placements import PlacementService
from gateway.bootstrap import Gateway, load_config
from gateway.clock import ManualClock
from gateway.config.agencies import BUCKETS, AgencyConfig
from gateway.config.settings import AllocationSection, GatewaySettings
from gateway.demo.data import generate_accounts, write_csv
from gateway.intake.service import import_file
from gateway.keys import generate_missing
from gateway.privacy.pii import PiiKeyRing
from gateway.store.database import Database
from gateway.store.migrate import upgrade
from gateway.store.tables import Placement

# Property tests judge behaviour, never time: hypothesis's per-example deadline is a timing
# threshold, and on a loaded two-core machine it fails tests that are right.
settings.register_profile("gateway", deadline=None)
settings.load_profile("gateway")

PG_ENV = "GATEWAY_TEST_POSTGRES_URL"

Config = tuple[Path, GatewaySettings, dict[str, AgencyConfig]]
ConfigFactory = Callable[..., Config]
PlacedRow = tuple[str, str, str, int]
"""(placement id, case id, agency id, balance in minor units)."""
Seeder = Callable[..., Awaitable[list[PlacedRow]]]


@asynccontextmanager
async def throwaway_postgres(server_url: str) -> AsyncIterator[str]:
    """Create a uniquely named database on the server and yield its URL; drop it afterwards
    (``WITH (FORCE)``, so connections left by a killed process do not block the drop)."""
    url = make_url(server_url)
    name = f"gw_test_{uuid.uuid4().hex[:12]}"
    params = {
        "user": url.username,
        "password": url.password,
        "host": url.host or "127.0.0.1",
        "port": url.port or 5432,
        "database": url.database or "postgres",
    }
    admin = await asyncpg.connect(**params)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        admin = await asyncpg.connect(**params)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@asynccontextmanager
async def postgres_or_skip() -> AsyncIterator[str]:
    """``throwaway_postgres`` on the server of ``PG_ENV``; the test is skipped without it."""
    server = os.environ.get(PG_ENV)
    if not server:
        pytest.skip(f"{PG_ENV} is not set")
    async with throwaway_postgres(server) as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A URL of an empty database: SQLite always, PostgreSQL when the env var is set."""
    if request.param == "sqlite":
        yield "sqlite:///" + str(tmp_path / "gateway.db")
        return
    async with postgres_or_skip() as url:
        yield url


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A URL of an empty PostgreSQL database, for tests that need PostgreSQL itself."""
    async with postgres_or_skip() as url:
        yield url


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """A fresh database with the schema applied, on each backend."""
    database = Database(database_url)
    await upgrade(database)
    yield database
    await database.dispose()


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[Database]:
    """A fresh SQLite file with the schema applied."""
    database = Database("sqlite:///" + str(tmp_path / "gateway.db"))
    await upgrade(database)
    yield database
    await database.dispose()


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _toml_document(top: Mapping[str, object], sections: Mapping[str, Mapping[str, object]]) -> str:
    lines = [f"{k} = {_toml(v)}" for k, v in top.items()]
    for name, section in sections.items():
        lines.append(f"\n[{name}]")
        lines.extend(f"{k} = {_toml(v)}" for k, v in section.items())
    return "\n".join(lines) + "\n"


@pytest.fixture
def make_config(tmp_path: Path) -> ConfigFactory:
    """``make_config(database_url=..., agencies={ID: {"scheme": "v1"|"v1a", "url": ...,
    "retry": {...}, "sla": {...}, "settlement": {...}}}, dispatch={...}, console={...},
    register={...})``
    writes ``tmp_path/config`` with key files under ``keys/`` and returns (gateway.toml path,
    settings, agencies)."""

    def write(
        *,
        database_url: str,
        agencies: Mapping[str, Mapping[str, object]],
        dispatch: Mapping[str, object] | None = None,
        console: Mapping[str, object] | None = None,
        register: Mapping[str, object] | None = None,
    ) -> Config:
        base = tmp_path / "config"
        (base / "agencies").mkdir(parents=True, exist_ok=True)
        gateway_toml = base / "gateway.toml"
        gateway_toml.write_text(
            _toml_document(
                {"agencies_dir": "agencies"},
                {
                    "gateway": {"lender_id": "LENDERX"},
                    "database": {"url": database_url, "pool_size": 5},
                    "server": {"host": "127.0.0.1", "port": 0},
                    "secrets": {
                        "pii_keys": {"file": "keys/pii.keyring"},
                        "evidence_signing_key": {"file": "keys/evidence.key"},
                        "evidence_origin": "gateway.test/evidence",
                    },
                    "dispatch": {"poll_interval_seconds": 0.1, **(dispatch or {})},
                    # No lender registration here: placements carry no letter.
                    "documents": {"letters": "off"},
                    # Agencies need no register entry unless a test asks for the register.
                    "register": {"enforce": False, **(register or {})},
                    **({"console": dict(console)} if console else {}),
                },
            ),
            encoding="utf-8",
        )
        for agency_id, spec in agencies.items():
            scheme = str(spec.get("scheme", "v1"))
            out_ext, in_ext = ("whsec", "whsec") if scheme == "v1" else ("whsk", "whpk")
            sections: dict[str, Mapping[str, object]] = {
                "endpoint": {
                    "url": spec["url"],
                    "timeout_seconds": 10,
                    "connect_timeout_seconds": 5,
                    "allow_plain_http": True,
                },
                "signing": {
                    "scheme": scheme,
                    "keys": [{"file": f"keys/{agency_id}/outbound.{out_ext}"}],
                },
                "inbound": {
                    "scheme": scheme,
                    "keys": [{"file": f"keys/{agency_id}/inbound.{in_ext}"}],
                },
                "eligibility": {"buckets": list(BUCKETS), "currencies": ["CNY"]},
                "capacity": {"max_open_placements": 100_000, "weight": 1.0},
            }
            for name in ("retry", "sla", "settlement"):
                if name in spec:
                    sections[name] = spec[name]  # type: ignore[assignment]
            top = {
                "id": agency_id,
                "name": f"{agency_id} test agency",
                "channel": "webhook",
                "fields": ["debtor.name", "debtor.phones", "debtor.region"],
            }
            (base / "agencies" / f"{agency_id.lower()}.toml").write_text(
                _toml_document(top, sections), encoding="utf-8"
            )
        settings, loaded = load_config(gateway_toml, base_dir=base)
        generate_missing(settings, loaded)
        return gateway_toml, settings, loaded

    return write


async def import_and_allocate(gateway: Gateway, path: Path) -> int:
    """Import the accounts file at ``path`` through a built gateway (claims confirmed at once)
    and run one allocation round; the number of cases placed."""
    await import_file(
        path,
        db=gateway.db,
        pii=gateway.pii,
        placements=gateway.placements,
        allocation=gateway.settings.allocation,
        clock=gateway.clock,
        confirmation="off",
    )
    return (await gateway.placements.allocate()).placed


@pytest.fixture
def seed_placements(tmp_path: Path) -> Seeder:
    """``await seed_placements(db, agencies, count, clock)`` imports ``count`` generated
    accounts, allocates them among ``agencies`` and returns the placements, sorted by id."""

    async def seed(
        db: Database,
        agencies: Mapping[str, AgencyConfig],
        count: int,
        clock: ManualClock,
        *,
        seed: int = 7,
    ) -> list[PlacedRow]:
        pii = PiiKeyRing.parse(PiiKeyRing.generate_line("k1"))
        allocation = AllocationSection()
        service = PlacementService(
            db=db, agencies=agencies, pii=pii, settings=allocation, clock=clock
        )
        path = tmp_path / f"accounts-{uuid.uuid4().hex[:8]}.csv"
        as_of = datetime.fromtimestamp(clock.now(), UTC).date()
        write_csv(generate_accounts(count, seed=seed, as_of=as_of), path)
        report = await import_file(
            path,
            db=db,
            pii=pii,
            placements=service,
            allocation=allocation,
            clock=clock,
            confirmation="off",
        )
        assert report.inserted == count, report.errors
        await service.allocate()
        table = Placement.__table__  # type: ignore[attr-defined]
        async with db.connect() as conn:
            rows = await conn.execute(
                sa.select(
                    table.c.id, table.c.case_id, table.c.agency_id, table.c.balance_minor
                ).order_by(table.c.id)
            )
            return [(r[0], r[1], r[2], r[3]) for r in rows.all()]

    return seed
