"""The ``sftp-out`` benchmark's data set: an SFTP agency with its keys, a store seeded the
way production seeds it (demo accounts, intake, allocation), the sandbox SFTP server as a
benchmark child, and an N-row result file for the pickup measurement."""

import asyncio
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncssh

from adapters.sftp.batches import Manifest, ManifestFile, done_marker, sha256_hex
from adapters.sftp.layouts import RecordWriter
from gateway.bench.child import HOST, STOP, Finished, ParentLink, Ready, peak_rss_mb
from gateway.bootstrap import build
from gateway.config.agencies import (
    BUCKETS,
    AgencyConfig,
    CapacitySection,
    EligibilitySection,
    RetrySection,
    SftpAgency,
)
from gateway.config.documents import DocumentsSection
from gateway.config.secrets import SecretRef
from gateway.config.settings import (
    DatabaseSection,
    DispatchSection,
    GatewaySettings,
    RegisterSection,
)
from gateway.config.sftp import NamingSection, PgpSection, SftpSection
from gateway.demo.data import generate_accounts, write_csv
from gateway.errors import GatewayError
from gateway.intake.service import import_file
from gateway.keys import generate_missing
from gateway.sandbox.sftp_server import SandboxSftpServer, SftpUser, load_host_key
from gateway.store.migrate import upgrade

AGENCY_ID = "BENCH_SFTP"
USERNAME = "bench"


@dataclass(frozen=True, slots=True)
class SftpBench:
    """What every process of one run needs (picklable)."""

    workdir: Path
    database_path: Path
    port: int = 0
    cases: int = 0
    recipient_fpr: str | None = None

    @property
    def root(self) -> Path:
        return self.workdir / "sftp-root" / USERNAME

    def agency(self) -> SftpAgency:
        pgp = None
        if self.recipient_fpr is not None:
            pgp = PgpSection(
                recipient_fingerprint=self.recipient_fpr,
                recipient_key=SecretRef(file="var/keys/agency.asc"),
            )
        return SftpAgency(
            id=AGENCY_ID,
            name="Benchmark SFTP agency",
            channel="sftp",
            fields=("debtor.name", "debtor.phones", "debtor.region"),
            eligibility=EligibilitySection(buckets=BUCKETS),
            capacity=CapacitySection(max_open_placements=100_000_000),
            retry=RetrySection(concurrency=1),
            sftp=SftpSection(
                host=HOST,
                port=self.port or 22,
                username=USERNAME,
                client_key=SecretRef(file="var/keys/sftp_client"),
                host_keys_file=SecretRef(file="var/keys/sftp_host.pub"),
                naming=NamingSection(sender="LENDERX"),
                max_cases_per_batch=max(self.cases, 1),
                batch_lease_seconds=3600,
                spool_dir="var/spool",
                pgp=pgp,
            ),
        )

    def config(self) -> tuple[GatewaySettings, dict[str, AgencyConfig]]:
        settings = GatewaySettings(
            database=DatabaseSection(url=f"sqlite:///{self.database_path}"),
            dispatch=DispatchSection(batch_size=1000, lease_seconds=3600),
            # Benchmarks measure the pipeline, not the lender's letters (gateway.letters); the
            # baseline puts the data file alone, so the batch carries no documents either.
            documents=DocumentsSection(letters="off", statements=False),
            # The benchmark agency has no register entry (README "Agency register").
            register=RegisterSection(enforce=False),
            agencies_dir=str(self.workdir / "agencies"),
            base_dir=self.workdir,
        )
        agency = self.agency()
        return settings, {agency.id: agency}


async def seed(setup: SftpBench, cases: int) -> None:
    """A store with ``cases`` placements queued for the SFTP agency (intake, allocation)."""
    settings, agencies = setup.config()
    generate_missing(settings, agencies)
    csv_path = setup.workdir / f"accounts-{cases}.csv"
    write_csv(generate_accounts(cases, seed=20260101, as_of=datetime.now(UTC).date()), csv_path)
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
        placed = await gateway.placements.allocate()
    finally:
        await gateway.aclose()
    if report.inserted != cases or placed.placed != cases:
        raise GatewayError(f"seeding: {report.inserted} imported, {placed.placed} placed")


async def serve_sftp(link: ParentLink, workdir: Path) -> None:
    """Child main: the sandbox SFTP server until told to stop."""
    keys = workdir / "var" / "keys"
    host_key = load_host_key((keys / "sftp_host.pub.sandbox").read_text(encoding="utf-8"))
    authorized = (keys / "sftp_client.pub").read_text(encoding="utf-8")
    root = workdir / "sftp-root" / USERNAME
    server = SandboxSftpServer(host_key=host_key, users=[SftpUser(USERNAME, root, authorized)])
    port = await server.start()
    link.send(Ready(port))
    try:
        while await link.receive() != STOP:
            pass
    finally:
        await server.aclose()
    link.send(Finished(peak_rss_mb()))


async def recipient_key(workdir: Path) -> str:
    """A fresh agency key pair (its public half is what the agency config pins)."""
    import gnupg  # type: ignore[import-untyped]

    home = workdir / "gpg"
    home.mkdir(mode=0o700)
    gpg = gnupg.GPG(gnupghome=str(home))
    key = await asyncio.to_thread(
        gpg.gen_key,
        gpg.gen_key_input(
            key_type="EDDSA",
            key_curve="ed25519",
            subkey_type="ECDH",
            subkey_curve="cv25519",
            name_email="bench@agency.example",
            expire_date=0,
            no_protection=True,
        ),
    )
    keys = workdir / "var" / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    (keys / "agency.asc").write_text(gpg.export_keys(str(key.fingerprint)), encoding="utf-8")
    return str(key.fingerprint)


async def connect_client(workdir: Path, port: int) -> asyncssh.SSHClientConnection:
    """An SSH connection to the benchmark server as the agency's user, host key pinned."""
    keys = workdir / "var" / "keys"
    return await asyncssh.connect(
        HOST,
        port,
        username=USERNAME,
        client_keys=[asyncssh.read_private_key(str(keys / "sftp_client"))],
        known_hosts=([asyncssh.read_public_key(str(keys / "sftp_host.pub"))], [], []),
        agent_path=None,
    )


def clear_folder(folder: Path) -> None:
    """Empty ``folder`` (created when missing)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)


def result_file(
    root: Path, placements: list[tuple[str, int, str]], setup: SftpBench
) -> tuple[str, int]:
    """An N-row result file (one acknowledgement of the balance sent per placement), its
    manifest and marker."""
    layout = setup.agency().sftp.layout
    writer = RecordWriter(layout, "result")
    name = f"{AGENCY_ID}_LENDERX_RESULT_{datetime.now(UTC):%Y%m%d}_0001.csv"
    path = root / "results" / name
    with path.open("wb") as out:
        out.write(writer.start())
        for start in range(0, len(placements), 5000):
            chunk, _ = writer.write_records(
                [
                    {
                        "type": "placement.acknowledged",
                        "timestamp": "2026-01-16T09:00:00Z",
                        "data": {
                            "placement_id": pid,
                            "agency_case_ref": f"R{n}",
                            "balance": {"amount_minor": balance, "currency": currency},
                        },
                    }
                    for n, (pid, balance, currency) in enumerate(
                        placements[start : start + 5000], start
                    )
                ]
            )
            out.write(chunk)
    body = path.read_bytes()
    manifest = Manifest(
        batch_id=name.split(".")[0],
        sender=AGENCY_ID,
        receiver="LENDERX",
        file_type="RESULT",
        business_date=datetime.now(UTC).date(),
        seq=1,
        created_at=datetime.now(UTC),
        files=(
            ManifestFile(
                name,
                len(body),
                sha256_hex(body),
                sha256_hex(body),
                len(placements),
                "csv",
                "utf-8",
            ),
        ),
        case_count=len(placements),
    ).render()
    base = name.split(".")[0]
    (root / "results" / f"{base}.manifest.json").write_bytes(manifest)
    (root / "results" / f"{base}.done").write_bytes(done_marker(sha256_hex(manifest)))
    return name, len(body)


__all__ = [
    "AGENCY_ID",
    "USERNAME",
    "SftpBench",
    "clear_folder",
    "connect_client",
    "recipient_key",
    "result_file",
    "seed",
    "serve_sftp",
]
