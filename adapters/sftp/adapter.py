"""SFTP channel: placement files to the agency's server, result files back.

``SftpAdapter`` is what the registry builds for ``channel = "sftp"``: a
``BatchChannelAdapter`` (the dispatcher stages each cycle's due packets into one batch per
file type and records the outcomes as the batch reports them) and a ``PollingChannel``
(result pickup runs on a timer under ``serve``). The batch logic (what goes in which file,
manifests, crash recovery) is the core's (``adapters.sftp.drop``), as is result pickup
(``adapters.sftp.pickup``); the wire is ``adapters.sftp.session`` (asyncssh, pinned host
keys, key auth, timeouts, never-overwrite uploads).
"""

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path

import asyncssh
from sqlalchemy.exc import NoResultFound

from adapters.sftp.batch_store import member_line
from adapters.sftp.drop import FileDrop
from adapters.sftp.pgp import Pgp
from adapters.sftp.pickup import ResultPickup
from adapters.sftp.session import SftpRemote
from gateway.config.agencies import AgencyConfig, SftpAgency
from gateway.errors import (
    ConfigError,
    DeliveryError,
    TransientDeliveryError,
)
from gateway.ports import (
    AdapterContext,
    BatchBuilder,
    BatchDelivered,
    DocumentSource,
    InboundPoller,
    OutboundPacket,
    Receipt,
)
from gateway.reconciliation.recorder import ArrivalPolicy
from gateway.store.database import Database

_READ_CHUNK = 256 * 1024


class SftpAdapter:
    """The SFTP channel of one agency: batches out (``BatchChannelAdapter``), result files
    in (``PollingChannel``). ``send`` delivers a batch of one."""

    idempotent_receiver = False

    def __init__(
        self,
        *,
        agency: SftpAgency,
        remote: SftpRemote,
        db: Database,
        spool_dir: Path,
        clock: Callable[[], float],
        pgp_keys: dict[str, str | None] | None = None,
        documents: DocumentSource | None = None,
        arrival: ArrivalPolicy | None = None,
    ) -> None:
        cfg = agency.sftp
        self.agency = agency
        self.remote = remote
        self.batch_limit = cfg.max_cases_per_batch
        self.lease_seconds = cfg.batch_lease_seconds
        self._spool_dir = spool_dir
        self._pgp_keys = pgp_keys
        self._pgp: Pgp | None = None
        self._pgp_lock = asyncio.Lock()
        self.drop = FileDrop(
            db=db,
            agency=agency,
            remote=remote,
            spool_dir=spool_dir / "out",
            clock=clock,
            pgp=self.pgp,
            documents=documents,
        )
        self.pickup = ResultPickup(
            db=db,
            agency=agency,
            remote=remote,
            spool_dir=spool_dir / "in",
            clock=clock,
            pgp=self.pgp,
            arrival=arrival,
        )

    async def pgp(self) -> Pgp | None:
        """The agency's OpenPGP keys, imported on first use; None without ``[sftp.pgp]``."""
        cfg = self.agency.sftp.pgp
        if cfg is None or self._pgp_keys is None:
            return None
        async with self._pgp_lock:
            if self._pgp is None:
                keys = self._pgp_keys
                recipient = keys["recipient_key"]
                assert recipient is not None
                self._pgp = await Pgp.open(
                    recipient_fingerprint=cfg.recipient_fingerprint,
                    recipient_key=recipient,
                    secret_fingerprint=cfg.secret_fingerprint,
                    secret_key=keys.get("secret_key"),
                    passphrase=keys.get("passphrase"),
                )
            return self._pgp

    def open_batch(self) -> BatchBuilder:
        return self.drop.open_batch()

    def pollers(self) -> Sequence[InboundPoller]:
        return [self.pickup]

    async def send(self, packet: OutboundPacket) -> Receipt:
        builder = self.drop.open_batch()
        try:
            await builder.stage([packet])
            async for results in builder.flush():
                if isinstance(results, BatchDelivered):
                    async with self.drop.db.snapshot() as conn:
                        try:
                            record, line = await member_line(
                                conn, results.batch_id, packet.outbox_id
                            )
                        except NoResultFound:
                            continue
                    return results.receipt(record, line)
                for outbox_id, result in results:
                    if outbox_id != packet.outbox_id:
                        continue
                    if isinstance(result, DeliveryError):
                        raise result
                    return result
        finally:
            await builder.aclose()
        raise TransientDeliveryError(
            f"{self.agency.id}: the batch did not report packet {packet.outbox_id}",
            agency_id=self.agency.id,
        )

    async def aclose(self) -> None:
        if self._pgp is not None:
            await self._pgp.aclose()


def build_sftp_adapter(agency: AgencyConfig, context: AdapterContext) -> SftpAdapter:
    """The registry's factory: load the agency's keys and build its adapter."""
    if not isinstance(agency, SftpAgency):
        raise ConfigError(f"{agency.id}: channel {agency.channel} has no sftp settings")
    if context.db is None:
        raise ConfigError(f"{agency.id}: the SFTP channel needs the database in its context")
    cfg = agency.sftp
    base = context.base_dir
    passphrase = cfg.client_key_passphrase.resolve(base) if cfg.client_key_passphrase else None
    try:
        client_key = asyncssh.import_private_key(cfg.client_key.resolve(base), passphrase)
        host_keys = [asyncssh.import_public_key(line) for line in cfg.pinned_key_lines(base)]
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise ConfigError(f"{agency.source}: sftp keys: {exc}") from exc
    pgp_keys: dict[str, str | None] | None = None
    if cfg.pgp is not None:
        pgp_keys = {
            "recipient_key": cfg.pgp.recipient_key.resolve(base),
            "secret_key": cfg.pgp.secret_key.resolve(base) if cfg.pgp.secret_key else None,
            "passphrase": cfg.pgp.passphrase.resolve(base) if cfg.pgp.passphrase else None,
        }
    spool = Path(cfg.spool_dir)
    spool = (spool if spool.is_absolute() else base / spool) / agency.id
    remote = SftpRemote(
        agency_id=agency.id,
        section=cfg,
        client_key=client_key,
        host_keys=host_keys,
        clock=context.clock,
    )
    return SftpAdapter(
        agency=agency,
        remote=remote,
        db=context.db,
        spool_dir=spool,
        clock=context.clock,
        pgp_keys=pgp_keys,
        documents=context.documents,
        arrival=None if context.settings is None else ArrivalPolicy.of(context.settings),
    )


__all__ = ["SftpAdapter", "build_sftp_adapter"]
