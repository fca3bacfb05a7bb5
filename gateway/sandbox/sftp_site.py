"""The demo's SFTP side: a sandbox server and agency for every SFTP agency of the config.

Each agency gets its own ``SandboxSftpServer`` on the port its config names (or a free port,
with the agency's config rewritten in memory, when that port is taken), its pinned host key
from ``keys generate`` (``<host_keys_file>.sandbox``) and our client key's public half as the
login's authorized key. ``exchange`` runs one round trip: each agency processes its inbox,
then the gateway's pickup polls each results folder.
"""

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gateway.config.agencies import AgencyConfig, SftpAgency
from gateway.keys import sandbox_sftp_keys
from gateway.ports import InboundPoller
from gateway.sandbox.sftp_agency import SandboxSftpAgency
from gateway.sandbox.sftp_server import SandboxSftpServer, SftpUser, load_host_key


@dataclass
class SftpSandboxes:
    """Running sandbox servers and agencies; ``agencies`` holds the (re-ported) configs."""

    servers: list[SandboxSftpServer] = field(default_factory=list)
    sandboxes: list[SandboxSftpAgency] = field(default_factory=list)
    agencies: dict[str, SftpAgency] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    picked_up: dict[str, int] = field(default_factory=dict)

    @classmethod
    async def start(
        cls,
        agencies: Mapping[str, AgencyConfig],
        base_dir: Path,
        *,
        root: Path,
        seed: int,
        fault_rate: float,
    ) -> "SftpSandboxes":
        site = cls()
        for agency in agencies.values():
            if not isinstance(agency, SftpAgency) or not agency.enabled:
                continue
            host_key, authorized = sandbox_sftp_keys(agency, base_dir)
            cfg = agency.sftp
            home = root / agency.id / cfg.username
            user = SftpUser(cfg.username, home, authorized)
            server = SandboxSftpServer(
                host_key=load_host_key(host_key), users=[user], host=cfg.host, port=cfg.port
            )
            try:
                port = await server.start()
            except OSError:
                server = SandboxSftpServer(
                    host_key=load_host_key(host_key), users=[user], host=cfg.host, port=0
                )
                port = await server.start()
                site.notes.append(f"{agency.id}: port {cfg.port} taken, sandbox SFTP on {port}")
            site.servers.append(server)
            updated = agency.model_copy(update={"sftp": cfg.model_copy(update={"port": port})})
            site.agencies[agency.id] = updated
            site.sandboxes.append(
                SandboxSftpAgency(
                    agency_id=agency.id,
                    root=home,
                    section=updated.sftp,
                    seed=seed,
                    fault_rate=fault_rate,
                )
            )
        return site

    async def exchange(self, pollers: Sequence[InboundPoller]) -> int:
        """One round: agencies answer what they received, the gateway picks results up.
        Returns the number of files that moved (0 when both sides are quiet)."""
        written = sum(await asyncio.gather(*(s.process_once() for s in self.sandboxes)))
        taken = 0
        for poller in pollers:
            for outcome, n in (await poller.poll_once()).items():
                self.picked_up[outcome] = self.picked_up.get(outcome, 0) + n
                if outcome in ("done", "partial", "failed", "duplicate"):
                    taken += n
        return written + taken

    def stats_json(self) -> list[dict[str, object]]:
        return [s.stats_json() for s in self.sandboxes]

    async def aclose(self) -> None:
        for server in self.servers:
            await server.aclose()


__all__ = ["SftpSandboxes"]
