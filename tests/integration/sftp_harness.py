"""Shared set-up of the SFTP integration tests: a real asyncssh server on loopback (the
sandbox SFTP server, with fault injection), a config directory with one SFTP agency whose
pinned host key is that server's, and a seeded store.

``SftpWorld`` is built by ``start_world(tmp_path, database_url, **agency_overrides)``; the
config files are real, so ``tests/integration/crash_worker.py`` can load them in another
process.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncssh

from gateway.bootstrap import Gateway, build, load_config
from gateway.config.agencies import BUCKETS, SftpAgency
from gateway.config.settings import GatewaySettings
from gateway.demo.data import generate_accounts, write_csv
from gateway.intake.service import import_file
from gateway.keys import generate_missing
from gateway.sandbox.sftp_agency import SandboxSftpAgency
from gateway.sandbox.sftp_server import SandboxSftpServer, SftpFaults, SftpUser
from gateway.store.migrate import upgrade

AGENCY_ID = "AGY_SFTP"
USERNAME = "lenderx"


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(type(value).__name__)


def _merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _document(tables: Mapping[str, Any], prefix: str = "") -> list[str]:
    lines: list[str] = []
    nested: list[tuple[str, Mapping[str, Any]]] = []
    for key, value in tables.items():
        if isinstance(value, Mapping) and key != "columns":
            nested.append((key, value))
        else:
            lines.append(f"{json.dumps(key) if '.' in key else key} = {_toml(value)}")
    for key, value in nested:
        lines.append(f"\n[{prefix}{key}]")
        lines += _document(value, f"{prefix}{key}.")
    return lines


@dataclass
class SftpWorld:
    config_path: Path
    settings: GatewaySettings
    agency: SftpAgency
    server: SandboxSftpServer
    root: Path

    @property
    def faults(self) -> SftpFaults:
        return self.server.faults

    def path(self, folder: str) -> Path:
        return self.root / folder

    def files(self, folder: str) -> list[str]:
        path = self.path(folder)
        return sorted(p.name for p in path.iterdir()) if path.exists() else []

    def gateway(self) -> Gateway:
        settings, agencies = load_config(self.config_path, base_dir=self.config_path.parent)
        return build(settings, agencies)

    def agency_behind(self, *, seed: int = 5, fault_rate: float = 0.0) -> SandboxSftpAgency:
        return SandboxSftpAgency(
            agency_id=self.agency.id,
            root=self.root,
            section=self.agency.sftp,
            seed=seed,
            fault_rate=fault_rate,
        )

    async def aclose(self) -> None:
        await self.server.aclose()


async def start_world(
    tmp_path: Path,
    database_url: str,
    *,
    host_key: asyncssh.SSHKey | None = None,
    dispatch: Mapping[str, Any] | None = None,
    sections: Mapping[str, Any] | None = None,
    **agency: Any,
) -> SftpWorld:
    """Start a sandbox server, write a config whose agency pins its host key (unless
    ``sftp.host_keys`` is overridden), generate our client key and authorize it.
    ``sections`` adds sections to gateway.toml; placements carry no document pack unless
    ``sections["documents"]`` asks for one (no letters, no generated statements)."""
    server_key = asyncssh.generate_private_key("ssh-ed25519")
    server = SandboxSftpServer(host_key=server_key, users=[])
    port = await server.start()
    pinned = (host_key or server_key).export_public_key().decode().strip()
    base = tmp_path / "config"
    (base / "agencies").mkdir(parents=True, exist_ok=True)
    gateway_toml = base / "gateway.toml"
    gateway_toml.write_text(
        "\n".join(
            _document(
                {
                    "agencies_dir": "agencies",
                    "gateway": {"lender_id": "LENDERX"},
                    "database": {"url": database_url, "pool_size": 5},
                    "server": {"host": "127.0.0.1", "port": 0},
                    "secrets": {
                        "pii_keys": {"file": "keys/pii.keyring"},
                        "evidence_signing_key": {"file": "keys/evidence.key"},
                        "evidence_origin": "gateway.test/evidence",
                    },
                    "dispatch": {"poll_interval_seconds": 0.1, **(dispatch or {})},
                    "documents": {"letters": "off", "statements": False},
                    # The agency needs no register entry (README "Agency register").
                    "register": {"enforce": False},
                    **(sections or {}),
                }
            )
        )
        + "\n",
        encoding="utf-8",
    )
    raw: dict[str, Any] = {
        "id": AGENCY_ID,
        "name": "SFTP test agency 测试",
        "channel": "sftp",
        "fields": ["debtor.name", "debtor.phones", "debtor.region"],
        "sftp": {
            "host": "127.0.0.1",
            "port": port,
            "username": USERNAME,
            "client_key": {"file": f"keys/{AGENCY_ID}/sftp_client"},
            "host_keys": [pinned],
            "spool_dir": "spool",
            "naming": {"sender": "LENDERX"},
            "readiness": {"poll_interval_seconds": 0.2, "min_age_seconds": 0},
            "timeouts": {"reconnect_base_seconds": 0.05, "reconnect_cap_seconds": 0.2},
        },
        "eligibility": {"buckets": list(BUCKETS), "currencies": ["CNY"]},
        "capacity": {"max_open_placements": 1_000_000, "weight": 1.0},
        "retry": {"base_seconds": 0.05, "cap_seconds": 0.2, "max_attempts": 20},
    }
    raw = _merge(raw, agency)
    (base / "agencies" / "agency.toml").write_text(
        "\n".join(_document(raw)) + "\n", encoding="utf-8"
    )
    settings, agencies = load_config(gateway_toml, base_dir=base)
    generate_missing(settings, agencies)
    loaded = agencies[AGENCY_ID]
    assert isinstance(loaded, SftpAgency)
    public = (base / "keys" / AGENCY_ID / "sftp_client.pub").read_text(encoding="utf-8")
    root = tmp_path / "sftp-root" / USERNAME
    server.users[USERNAME] = SftpUser(USERNAME, root, public)
    root.mkdir(parents=True, exist_ok=True)
    for folder in ("inbox", "results"):
        (root / folder).mkdir(exist_ok=True)
    return SftpWorld(gateway_toml, settings, loaded, server, root)


async def seed(world: SftpWorld, count: int, *, seed: int = 11) -> None:
    """Import ``count`` accounts and allocate them all to the SFTP agency."""
    gateway = world.gateway()
    try:
        await upgrade(gateway.db)
        accounts = world.config_path.parent / f"accounts-{count}-{seed}.csv"
        write_csv(generate_accounts(count, seed=seed, as_of=datetime.now(UTC).date()), accounts)
        report = await import_file(
            accounts,
            db=gateway.db,
            pii=gateway.pii,
            placements=gateway.placements,
            allocation=world.settings.allocation,
            clock=gateway.clock,
            confirmation="off",
        )
        assert report.inserted == count, report.errors
        placed = await gateway.placements.allocate()
        assert placed.placed == count, placed
    finally:
        await gateway.aclose()


__all__ = ["AGENCY_ID", "USERNAME", "SftpWorld", "seed", "start_world"]
