"""Ports: what the core needs from the outside world, as Protocols.

Channel adapters (``adapters/``) implement ``ChannelAdapter``. They translate third-party
errors into the gateway error tree at their edge and never retry: retries, backoff, leases
and circuit breaking live in the dispatcher.
"""

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

import aiohttp
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.config.agencies import EmailAgency, RetrySection
from gateway.config.settings import GatewaySettings
from gateway.errors import DeliveryError, DocumentError
from gateway.store.database import Database


@dataclass(frozen=True, slots=True)
class OutboundPacket:
    """One attempt to send one outbox item.

    Args:
        outbox_id: our row id.
        dedupe_key: stable across retries; the agency's idempotency key (``webhook-id``).
        agency_id: the receiving agency.
        packet_type: e.g. ``placement.created``.
        payload: the exact bytes to put on the wire.
        attempt_no: 1 for the first attempt.
    """

    outbox_id: int
    dedupe_key: str
    agency_id: str
    packet_type: str
    payload: bytes
    attempt_no: int


@dataclass(frozen=True, slots=True)
class Receipt:
    """What the agency's side answered when a packet was accepted.

    Args:
        request_timestamp: Unix seconds this attempt was signed with.
        status: channel status (HTTP status code, SMTP reply code), if any.
        response_sha256: hash of the response body as received.
        response_excerpt: the first characters of the response, for ops.
        details: channel-specific facts (remote path and size, Message-ID, queue id).
    """

    request_timestamp: int
    status: int | None = None
    response_sha256: str | None = None
    response_excerpt: str | None = None
    details: Mapping[str, str] = field(default_factory=dict)


class Recipient(Protocol):
    """Whom the dispatcher sends to: an agency (its config), or another receiver the outbox
    serves (the lender's messaging service, ``gateway.notices``). The dispatcher needs only
    the id and how hard to try."""

    @property
    def id(self) -> str: ...

    @property
    def retry(self) -> RetrySection: ...


class ChannelAdapter(Protocol):
    """Sends packets to one agency over its protocol.

    ``send`` returns a Receipt when the agency accepted the packet, and otherwise raises
    ``TransientDeliveryError`` (retry later), ``PermanentDeliveryError`` (never retry) or
    ``OutcomeUnknown`` (the bytes may have arrived). Each error carries a message that names
    the agency and says what happened; transient errors may carry ``retry_after`` seconds.
    """

    idempotent_receiver: bool
    """True when the receiver deduplicates on ``dedupe_key``, so resending after an unknown
    outcome is safe (webhooks). False for channels where a resend may be a visible duplicate."""

    async def send(self, packet: OutboundPacket) -> Receipt: ...

    async def aclose(self) -> None: ...


class DocumentSource(Protocol):
    """The lender's document store as the channels read it: the part of
    ``gateway.documents.store.DocumentStore`` they use (blocking; call from a worker
    thread). Declared here because the ports sit below the core that implements it."""

    def open(self, source: str) -> BinaryIO: ...

    def describe(self, source: str) -> str: ...


class NoDocumentStore:
    """Stands in for the store when none is configured: a pack's store documents cannot be
    read (its generated documents still can, from the database)."""

    def open(self, source: str) -> BinaryIO:
        raise DocumentError(
            f"{source}: no document store is configured ([documents] store), so the "
            "case's own documents cannot be sent"
        )

    def describe(self, source: str) -> str:
        return f"{source} (no document store configured)"


@dataclass(frozen=True, slots=True)
class AdapterContext:
    """What the composition root hands every adapter factory.

    Args:
        base_dir: where relative key-file paths resolve.
        http: the process's shared HTTP client session.
        clock: returns Unix time.
        db: the database, for channels that keep their own delivery records (email).
        documents: the lender's document store, for channels that deliver the placements'
            document packs themselves (SFTP batches, law-firm mail); None when none is
            configured (a pack's store documents then cannot be sent).
        settings: the lender's settings, for the rules channels judge events by as they
            arrive (quiet hours and caps, complaint deadlines); None leaves quiet hours and
            caps to the batch run and gives complaints the statutory default.
    """

    base_dir: Path
    http: aiohttp.ClientSession
    clock: Callable[[], float]
    db: Database | None = None
    documents: DocumentSource | None = None
    settings: GatewaySettings | None = None


class Clock(Protocol):
    """Wall-clock time, injectable for tests."""

    def now(self) -> float: ...


@dataclass(frozen=True, slots=True)
class BatchDelivered:
    """Every member of file batch ``batch_id`` (``file_batch_items``) is durably on the
    server in the data file ``remote_path`` (``size`` bytes, ``sha256`` as transmitted),
    next to ``manifest_path``. The dispatcher records the members in bulk from the batch's
    membership rows; it never builds an object per case."""

    batch_id: int
    request_timestamp: int
    remote_path: str
    size: int
    sha256: str
    manifest_path: str

    def receipt(self, record_no: int, line_no: int) -> Receipt:
        """The receipt of the member at ``record_no`` on file line ``line_no``."""
        return Receipt(
            request_timestamp=self.request_timestamp,
            response_sha256=self.sha256,
            response_excerpt=f"{self.remote_path} line {line_no}",
            details={
                "remote_path": self.remote_path,
                "size": str(self.size),
                "sha256": self.sha256,
                "record": str(record_no),
                "line": str(line_no),
                "manifest": self.manifest_path,
            },
        )


BatchReport = Sequence[tuple[int, Receipt | DeliveryError]] | BatchDelivered
"""What ``BatchBuilder.flush`` yields: per-item outcomes, or a whole delivered batch."""


class BatchBuilder(Protocol):
    """One batch under construction (see ``BatchChannelAdapter``)."""

    async def stage(self, packets: Sequence[OutboundPacket]) -> None:
        """Add claimed packets to the batch (written to local files, nothing sent yet)."""
        ...

    def flush(self) -> AsyncIterator[BatchReport]:
        """Deliver everything staged; yield a ``BatchDelivered`` per delivered file batch
        (only once its files are durably on the server under their final names) and
        (outbox id, error) chunks for the items that were not delivered."""
        ...

    async def aclose(self) -> None:
        """Release local files; safe to call after an error."""
        ...


@runtime_checkable
class BatchChannelAdapter(ChannelAdapter, Protocol):
    """A channel that delivers the due packets of one agency together, as one batch per
    dispatch cycle (SFTP files). The dispatcher claims the agency's items in chunks, stages
    them in one ``BatchBuilder`` and records the outcomes chunk by chunk as ``flush``
    yields them, so memory does not grow with the size of the batch."""

    batch_limit: int
    """The most items one batch carries."""

    lease_seconds: float
    """Claims for a batch last at least this long (large uploads take time)."""

    def open_batch(self) -> BatchBuilder: ...


@dataclass(frozen=True, slots=True)
class RemoteEntry:
    """A name in a remote folder, with the attributes the listing returned."""

    name: str
    size: int
    mtime: int
    is_file: bool


class RemoteSession(Protocol):
    """One connected session on an agency's file server.

    Every operation has a timeout. Failures are translated at the adapter edge:
    ``TransientDeliveryError`` (connection lost, timeout), ``EndpointGone`` (the server's
    host key is not the pinned one; never retried), ``PermanentDeliveryError`` (refused).
    """

    async def list(self, folder: str) -> list[RemoteEntry]: ...

    async def stat(self, path: str) -> RemoteEntry | None:
        """None when nothing has that name."""
        ...

    async def sha256(self, path: str) -> str:
        """SHA-256 of a remote file, streamed."""
        ...

    async def upload(self, local: Path, path: str, *, temp_path: str) -> bool:
        """Atomic upload: write ``temp_path``, check its size, rename it to ``path``.
        Never overwrites: returns False (and removes the temporary file) when ``path``
        already exists."""
        ...

    async def create_exclusive(self, path: str, data: bytes) -> bool:
        """Create ``path`` only if it does not exist (O_EXCL); False when it existed."""
        ...

    async def read_bytes(self, path: str, *, limit: int) -> bytes: ...

    async def download(self, path: str, local: Path) -> str:
        """Stream ``path`` into ``local``; return the SHA-256 of what was read."""
        ...

    async def rename(self, source: str, target: str) -> bool:
        """Move without overwriting; False when ``source`` is gone (taken by someone else)."""
        ...

    async def makedirs(self, path: str) -> None: ...

    async def remove(self, path: str) -> None: ...


class RemoteFolder(Protocol):
    """Opens sessions on one agency's file server (connect, authenticate, pin host key)."""

    def session(self) -> AbstractAsyncContextManager[RemoteSession]: ...


class InboundPoller(Protocol):
    """Fetches what an agency left for us (result files, mail) and records it."""

    name: str
    interval_seconds: float

    async def poll_once(self) -> Mapping[str, int]:
        """One pass; returns counts for logs and the CLI."""
        ...


class VouchedReplies(Protocol):
    """Reads a stored reply whose signature did not vouch for it, because ops has (they
    confirmed it with the firm). The email channel implements it; ops actions call it."""

    async def read(
        self, conn: AsyncConnection, agency: EmailAgency, inbound_id: int, *, now: datetime
    ) -> tuple[str, str, int]:
        """Open stored reply ``inbound_id`` and apply its events in the caller's transaction;
        (what it was read as, detail, events applied)."""
        ...


@runtime_checkable
class PollingChannel(Protocol):
    """A channel whose agency answers out of band; the runtime schedules its pollers."""

    def pollers(self) -> Sequence[InboundPoller]: ...


__all__ = [
    "AdapterContext",
    "BatchBuilder",
    "BatchChannelAdapter",
    "BatchDelivered",
    "BatchReport",
    "ChannelAdapter",
    "Clock",
    "DocumentSource",
    "InboundPoller",
    "NoDocumentStore",
    "OutboundPacket",
    "PollingChannel",
    "Receipt",
    "Recipient",
    "RemoteEntry",
    "RemoteFolder",
    "RemoteSession",
    "VouchedReplies",
]
