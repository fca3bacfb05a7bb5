"""The benchmarks' data set: one benchmark agency, its keys, and a SQLite store seeded the way
production seeds it (demo accounts → intake → allocation, which queues the packets).

Every benchmark process builds its gateway from the same ``BenchSetup`` through the
composition root (``gateway.bootstrap.build``), so the benchmarks exercise exactly what
``agency-gateway serve`` runs. The seeded store is built once per run as a template and copied
for every measured round, so each round starts from the same state.
"""

import shutil
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from gateway.bootstrap import Gateway, build
from gateway.config.agencies import (
    BUCKETS,
    AgencyConfig,
    CapacitySection,
    EligibilitySection,
    EndpointSection,
    InboundSection,
    RetrySection,
    SigningSection,
    WebhookAgency,
)
from gateway.config.documents import DocumentsSection
from gateway.config.secrets import SecretRef
from gateway.config.settings import (
    DatabaseSection,
    DispatchSection,
    GatewaySettings,
    RegisterSection,
)
from gateway.demo.data import generate_accounts, write_csv
from gateway.errors import GatewayError
from gateway.intake.service import import_file
from gateway.keys import generate_missing
from gateway.store.database import Database
from gateway.store.migrate import upgrade
from gateway.store.tables import Placement

AGENCY_ID = "BENCH"
UNUSED_ENDPOINT = "http://127.0.0.1:9/unused"
DATABASE_KIND = "sqlite+aiosqlite file in a temp dir (WAL, synchronous=FULL, BEGIN IMMEDIATE)"
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class BenchSetup:
    """What every process of one benchmark run needs to build the same gateway (picklable).

    Args:
        workdir: the run's temp directory (keys, CSV, databases).
        database_path: the SQLite file this gateway uses.
        endpoint_url: where the agency receives packets.
        concurrency: the agency's ``retry.concurrency`` (sends in flight).
        batch_size: the dispatcher's claim size.
    """

    workdir: Path
    database_path: Path
    endpoint_url: str = UNUSED_ENDPOINT
    concurrency: int = 32
    batch_size: int = 200

    def with_database(self, path: Path) -> "BenchSetup":
        return replace(self, database_path=path)

    def with_endpoint(self, url: str) -> "BenchSetup":
        return replace(self, endpoint_url=url)


@dataclass(frozen=True, slots=True)
class SeededPlacement:
    placement_id: str
    balance_minor: int
    currency: str


def bench_agency(setup: BenchSetup) -> WebhookAgency:
    """The one benchmark agency: a webhook agency taking every bucket, without capacity limit;
    its keys are files under ``workdir``."""
    return WebhookAgency(
        id=AGENCY_ID,
        name="Benchmark agency",
        channel="webhook",
        endpoint=EndpointSection(url=setup.endpoint_url, allow_plain_http=True),
        signing=SigningSection(keys=(SecretRef(file=f"var/keys/{AGENCY_ID}/outbound.whsec"),)),
        inbound=InboundSection(keys=(SecretRef(file=f"var/keys/{AGENCY_ID}/inbound.whsec"),)),
        fields=("debtor.name", "debtor.phones", "debtor.region"),
        eligibility=EligibilitySection(buckets=BUCKETS),
        capacity=CapacitySection(max_open_placements=100_000_000),
        retry=RetrySection(concurrency=setup.concurrency),
    )


def config(setup: BenchSetup) -> tuple[GatewaySettings, dict[str, AgencyConfig]]:
    """Gateway settings (SQLite file, dispatch batch size, keys under ``workdir``) and the
    benchmark agency."""
    settings = GatewaySettings(
        database=DatabaseSection(url=f"sqlite:///{setup.database_path}"),
        dispatch=DispatchSection(batch_size=setup.batch_size),
        # Benchmarks measure the pipeline, not the lender's letters (gateway.letters).
        documents=DocumentsSection(letters="off"),
        # The benchmark agency has no register entry (README "Agency register").
        register=RegisterSection(enforce=False),
        agencies_dir=str(setup.workdir / "agencies"),
        base_dir=setup.workdir,
    )
    agency = bench_agency(setup)
    return settings, {agency.id: agency}


def build_gateway(setup: BenchSetup) -> Gateway:
    """The gateway as ``serve`` would build it from this setup's config."""
    settings, agencies = config(setup)
    return build(settings, agencies)


def check_concurrency(concurrency: int) -> None:
    if not 1 <= concurrency <= 256:
        raise GatewayError(
            f"concurrency must be 1-256 (the range of an agency's retry.concurrency), "
            f"got {concurrency}"
        )


async def seed_template(setup: BenchSetup, cases: int, *, seed: int = 20260101) -> None:
    """Create keys and a store at ``setup.database_path`` with ``cases`` cases, every one
    placed with the benchmark agency and its ``placement.created`` packet queued."""
    settings, agencies = config(setup)
    generate_missing(settings, agencies)
    csv_path = setup.workdir / f"accounts-{cases}.csv"
    as_of = datetime.now(UTC).date()
    write_csv(generate_accounts(cases, seed=seed, as_of=as_of), csv_path)
    await import_and_place(settings, agencies, csv_path, cases, what="benchmark seeding")


async def import_and_place(
    settings: GatewaySettings,
    agencies: dict[str, AgencyConfig],
    csv_path: Path,
    expected: int,
    *,
    what: str,
) -> None:
    """Upgrade the configured store, import ``csv_path`` strictly and allocate, as the
    operator would; raise GatewayError (naming ``what``) unless every one of ``expected``
    accounts was imported and placed."""
    gateway = build(settings, agencies)
    try:
        await upgrade(gateway.db)
        report = await import_file(
            csv_path,
            db=gateway.db,
            pii=gateway.pii,
            placements=gateway.placements,
            allocation=settings.allocation,
            clock=gateway.clock,
            strict=True,
            confirmation="off",
        )
        allocated = await gateway.placements.allocate()
    finally:
        await gateway.aclose()
    if report.inserted != expected or allocated.placed != expected:
        raise GatewayError(
            f"{what}: {report.inserted} cases imported and {allocated.placed} "
            f"placed, expected {expected} of each"
        )


def copy_database(source: Path, target: Path) -> None:
    """Copy a closed SQLite store (and its WAL, if the last close left one)."""
    for suffix in ("", "-wal"):
        src = Path(f"{source}{suffix}")
        if src.exists():
            shutil.copyfile(src, Path(f"{target}{suffix}"))


def remove_database(path: Path) -> None:
    """Delete a closed SQLite store with its WAL and shared-memory files."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def placements(db: Database) -> list[SeededPlacement]:
    """Every placement, in id order."""
    async with db.connect() as conn:
        rows = await conn.execute(
            sa.select(PLACEMENTS.c.id, PLACEMENTS.c.balance_minor, PLACEMENTS.c.currency).order_by(
                PLACEMENTS.c.id
            )
        )
        return [SeededPlacement(*row) for row in rows.all()]


async def counts(path: Path, queries: Mapping[str, sa.Select[Any]]) -> dict[str, int]:
    """Run ``SELECT count(...)`` queries against a benchmark store; name → count."""
    db = Database(f"sqlite:///{path}")
    try:
        async with db.connect() as conn:
            return {name: int((await conn.execute(q)).scalar_one()) for name, q in queries.items()}
    finally:
        await db.dispose()


__all__ = [
    "AGENCY_ID",
    "DATABASE_KIND",
    "BenchSetup",
    "SeededPlacement",
    "bench_agency",
    "build_gateway",
    "check_concurrency",
    "config",
    "copy_database",
    "counts",
    "import_and_place",
    "placements",
    "remove_database",
    "seed_template",
]
