"""File drop: due packets of one agency → one delivered file batch per type on its server.

Theory of operation
-------------------
``FileDrop.open_batch()`` returns a ``FileDropBatch`` (the dispatcher's ``BatchBuilder``).

1. ``stage(packets)`` looks up the batches that ever carried each packet. A packet carried
   by an open batch (preparing, staged, delivered) resumes that batch: a crash between
   upload and recording never produces a second file. Other packets join the new batch of
   their file type. Opening a batch takes the next sequence number and inserts the batch
   row in one transaction; rows are then rendered to a local spool file chunk by chunk (in a
   worker thread, while the dispatcher claims the next chunk) and each chunk's members are
   recorded with their line numbers before the next chunk is rendered. A packet
   the layout cannot carry gets a permanent error; the rest of the chunk goes on.
2. ``flush()`` hands each batch to adapters.sftp.upload: it finishes and records the files
   (``staged``) before a byte leaves, uploads them without ever overwriting a final name
   (the done marker last), and marks the batch ``delivered`` with one evidence leaf per
   file; a name already there with other content is a conflict (permanent error; the batch
   stops). A delivered batch is reported as one ``BatchDelivered``: the dispatcher records
   its members in bulk (gateway.dispatch.batch_records), each with a receipt naming its file and
   line.
3. A resumed batch is re-rendered from the stored packets in record order (listing the same
   documents in the same order); the same layout gives the same bytes (encrypted bytes do
   not: adapters.sftp.upload keeps the recorded hash once the final name exists on the
   server).

Nothing of the file is held in memory: rows stream to disk and uploads stream from disk.
"""

import asyncio
import contextlib
import logging
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from datetime import date, datetime
from pathlib import Path
from typing import NamedTuple

from adapters.sftp import batch_store as store
from adapters.sftp.batches import (
    FILE_TYPES,
    PACKET_TYPES,
    BatchNames,
    batch_names,
)
from adapters.sftp.layouts import RecordWriter
from adapters.sftp.spool import SpoolBatch
from adapters.sftp.upload import BatchUpload, PgpProvider
from gateway.clock import to_datetime
from gateway.config.agencies import SftpAgency
from gateway.errors import (
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from gateway.ports import (
    BatchDelivered,
    BatchReport,
    DocumentSource,
    OutboundPacket,
    Receipt,
    RemoteFolder,
    RemoteSession,
)
from gateway.store.database import Database

log = logging.getLogger(__name__)

PAGE = 2000
"""Members per page when re-rendering or reporting a batch."""

Result = tuple[int, Receipt | DeliveryError]
Rendered = tuple[list[tuple[int, int, int]], list[tuple[int, str]]]


class _Rendering(NamedTuple):
    """A chunk being appended to a batch's data file in a worker thread."""

    batch: SpoolBatch
    group: list[OutboundPacket]
    rendering: "asyncio.Future[Rendered]"


class FileDrop:
    """Builds and delivers file batches for one SFTP agency (see module docstring).

    Args:
        db: the database (batch records, evidence).
        agency: the agency's config (naming, folders, layout, OpenPGP).
        remote: opens sessions on the agency's server.
        spool_dir: where batch files are rendered before upload.
        clock: returns Unix time (business dates and timestamps are UTC).
        pgp: returns the agency's OpenPGP keys, or None when files go unencrypted.
        documents: the lender's document store, for the documents the packets list.
    """

    def __init__(
        self,
        *,
        db: Database,
        agency: SftpAgency,
        remote: RemoteFolder,
        spool_dir: Path,
        clock: Callable[[], float],
        pgp: PgpProvider,
        documents: DocumentSource | None = None,
    ) -> None:
        self.db = db
        self.agency = agency
        self.remote = remote
        self.spool_dir = spool_dir
        self.clock = clock
        self.pgp = pgp
        self.documents = documents

    def now(self) -> datetime:
        return to_datetime(self.clock())

    def open_batch(self) -> "FileDropBatch":
        return FileDropBatch(self)


class FileDropBatch:
    """The batch of one dispatch cycle (``gateway.ports.BatchBuilder``)."""

    def __init__(self, drop: FileDrop) -> None:
        self._drop = drop
        self._agency = drop.agency
        self._cfg = drop.agency.sftp
        self._fresh: dict[str, SpoolBatch] = {}
        self._resume: list[int] = []
        self._resends: dict[str, set[str]] = {}
        self._rejected: list[Result] = []
        self._spooled: list[SpoolBatch] = []
        self._rendering: _Rendering | None = None
        self._upload = BatchUpload(
            db=drop.db, agency=drop.agency, pgp=drop.pgp, now=drop.now, documents=drop.documents
        )

    # -- staging ---------------------------------------------------------------------------

    async def stage(self, packets: Sequence[OutboundPacket]) -> None:
        async with self._drop.db.snapshot() as conn:
            history = await store.memberships(conn, [p.outbox_id for p in packets])
        groups: dict[str, list[OutboundPacket]] = {}
        for packet in packets:
            seen = history.get(packet.outbox_id, [])
            carrier = next((m for m in seen if m.state in store.OPEN_STATES), None)
            if carrier is not None:
                if carrier.batch_id not in self._resume:
                    self._resume.append(carrier.batch_id)
                continue
            if packet.packet_type not in FILE_TYPES:
                self._rejected.append(
                    (
                        packet.outbox_id,
                        PermanentDeliveryError(
                            f"{self._agency.id}: the SFTP channel has no file type for "
                            f"{packet.packet_type}",
                            agency_id=self._agency.id,
                        ),
                    )
                )
                continue
            groups.setdefault(packet.packet_type, []).append(packet)
            # Carried before by a batch that failed or conflicted: this is a resend.
            resent = self._resends.setdefault(packet.packet_type, set())
            resent.update(m.data_name or m.base_name for m in seen)
        for packet_type, group in groups.items():
            batch = self._fresh.get(packet_type) or await self._open(packet_type)
            await self._settle()
            # Rendered in a worker thread while the caller claims the next chunk; its members
            # are recorded when the next chunk is staged or the batch is flushed.
            rendering = asyncio.ensure_future(
                asyncio.to_thread(batch.append, [p.payload for p in group])
            )
            self._rendering = _Rendering(batch, group, rendering)

    async def _settle(self) -> None:
        """Wait for the chunk being rendered and record its members (with their record and
        line numbers) in one transaction; rows the layout refused become permanent errors."""
        if self._rendering is None:
            return
        batch, group, rendering = self._rendering
        # Shielded: a cancelled caller leaves the thread's write for aclose to wait for.
        written, errors = await asyncio.shield(rendering)
        self._rendering = None
        async with self._drop.db.transaction() as conn:
            await store.add_members(
                conn, batch.id, [(group[i].outbox_id, rec, line) for i, rec, line in written]
            )
        for i, reason in errors:
            self._rejected.append(
                (
                    group[i].outbox_id,
                    PermanentDeliveryError(
                        f"{self._agency.id}: {batch.names.data} {reason}; the packet "
                        "cannot be written in this agency's layout (fix sftp.layout)",
                        agency_id=self._agency.id,
                    ),
                )
            )

    async def _open(self, packet_type: str) -> SpoolBatch:
        now = self._drop.now()
        business_date = now.date()
        file_type = FILE_TYPES[packet_type]
        async with self._drop.db.transaction() as conn:
            seq = await store.next_sequence(
                conn,
                agency_id=self._agency.id,
                file_type=file_type,
                business_date=business_date,
                now=now,
            )
            if seq > self._cfg.naming.max_seq:
                raise TransientDeliveryError(
                    f"{self._agency.id}: all {self._cfg.naming.max_seq} sequence numbers of "
                    f"{file_type} for {business_date} are used; the batch waits for tomorrow",
                    agency_id=self._agency.id,
                    retry_after=3600,
                )
            names = self._names(file_type, business_date, seq)
            batch_id = await store.insert_batch(
                conn,
                agency_id=self._agency.id,
                file_type=file_type,
                business_date=business_date,
                seq=seq,
                base_name=names.base,
                resend_of=(),
                now=now,
            )
        batch = await self._spool(batch_id, packet_type, names, business_date, seq, now)
        self._fresh[packet_type] = batch
        return batch

    def _names(self, file_type: str, business_date: date, seq: int) -> BatchNames:
        return batch_names(
            self._cfg.naming,
            receiver=self._agency.id,
            file_type=file_type,
            business_date=business_date,
            seq=seq,
            extension=self._cfg.layout.extension,
            encrypted=self._cfg.pgp is not None and self._cfg.pgp.encrypt,
        )

    async def _spool(
        self,
        batch_id: int,
        packet_type: str,
        names: BatchNames,
        business_date: date,
        seq: int,
        created_at: datetime,
    ) -> SpoolBatch:
        batch = await asyncio.to_thread(
            SpoolBatch.create,
            batch_id=batch_id,
            packet_type=packet_type,
            names=names,
            business_date=business_date,
            seq=seq,
            created_at=created_at,
            writer=RecordWriter(self._cfg.layout, packet_type),  # type: ignore[arg-type]
            folder=self._drop.spool_dir / names.base,
        )
        self._spooled.append(batch)
        return batch

    # -- delivery ----------------------------------------------------------------------------

    async def flush(self) -> AsyncIterator[BatchReport]:
        await self._settle()
        async with AsyncExitStack() as stack:
            session: RemoteSession | None = None

            async def connected() -> RemoteSession:
                nonlocal session
                if session is None:
                    session = await stack.enter_async_context(self._drop.remote.session())
                return session

            failure: DeliveryError | None = None
            batches: list[int | SpoolBatch] = [*self._fresh.values(), *self._resume]
            for entry in batches:
                batch_id = entry.id if isinstance(entry, SpoolBatch) else entry
                if failure is None:
                    try:
                        delivered = await self._deliver(entry, connected)
                    except DeliveryError as exc:
                        failure = exc
                    else:
                        yield self._delivered(batch_id, delivered)
                        continue
                    log.warning("batch %d to %s failed: %s", batch_id, self._agency.id, failure)
                async for page in self._failures(batch_id, failure):
                    yield page
        if self._rejected:
            yield self._rejected

    async def _deliver(
        self, entry: "int | SpoolBatch", connected: Callable[[], Awaitable[RemoteSession]]
    ) -> dict[str, store.RemoteFileRow]:
        """Put the batch's files on the server; return its recorded files."""
        if isinstance(entry, SpoolBatch):
            batch, recorded = entry, {}
        else:
            async with self._drop.db.snapshot() as conn:
                row = await store.load_batch(conn, entry)
                recorded = await store.remote_files(conn, entry)
            if row.state == "delivered":
                return recorded
            batch = await self._rerender(row)
        if batch.records == 0:
            error = PermanentDeliveryError(
                f"{self._agency.id}: batch {batch.names.base} has no row the layout could "
                "write; nothing was sent and its sequence number stays unused",
                agency_id=self._agency.id,
            )
            async with self._drop.db.transaction() as conn:
                await store.set_state(
                    conn, batch.id, "failed", now=self._drop.now(), error=str(error)
                )
            raise error
        resend = sorted(batch.resend_of | self._resends.get(batch.packet_type, set()))
        return await self._upload.deliver(batch, recorded, connected, resend_of=resend)

    async def _rerender(self, row: store.BatchRow) -> SpoolBatch:
        names = self._names(row.file_type, row.business_date, row.seq)
        batch = await self._spool(
            row.id, PACKET_TYPES[row.file_type], names, row.business_date, row.seq, row.created_at
        )
        batch.resend_of.update(row.resend_of)
        after = 0
        while True:
            async with self._drop.db.snapshot() as conn:
                page = await store.member_page(
                    conn, row.id, after_record=after, limit=PAGE, with_payload=True
                )
            if not page:
                return batch
            written, errors = await asyncio.to_thread(batch.append, [p for _, _, _, p in page])
            if errors or [(r, ln) for _, r, ln in written] != [(r, ln) for _, r, ln, _ in page]:
                raise PermanentDeliveryError(
                    f"{self._agency.id}: batch {row.base_name} no longer renders as it was "
                    "staged (was sftp.layout changed?); resend its cases",
                    agency_id=self._agency.id,
                )
            after = page[-1][1]

    def _delivered(self, batch_id: int, files: dict[str, store.RemoteFileRow]) -> BatchDelivered:
        data, manifest = files["data"], files.get("manifest")
        return BatchDelivered(
            batch_id=batch_id,
            request_timestamp=int(self._drop.clock()),
            remote_path=data.remote_path,
            size=data.size,
            sha256=data.sha256,
            manifest_path=manifest.remote_path if manifest else "",
        )

    async def _failures(self, batch_id: int, error: DeliveryError) -> AsyncIterator[list[Result]]:
        after = 0
        while True:
            async with self._drop.db.snapshot() as conn:
                page = await store.member_page(
                    conn, batch_id, after_record=after, limit=PAGE, with_payload=False
                )
            if not page:
                return
            after = page[-1][1]
            yield [(outbox_id, error) for outbox_id, _, _, _ in page]

    async def aclose(self) -> None:
        if self._rendering is not None:
            # A chunk still being written must finish before its file is closed and removed;
            # its members were never recorded, so nothing refers to the file.
            rendering, self._rendering = self._rendering.rendering, None
            with contextlib.suppress(Exception):
                await rendering
        for batch in self._spooled:
            if not batch.fh.closed:
                await asyncio.to_thread(batch.fh.close)
            await asyncio.to_thread(shutil.rmtree, batch.folder, True)


__all__ = ["FileDrop", "FileDropBatch"]
