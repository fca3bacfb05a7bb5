"""Ports: what the core needs from the outside world, as Protocols.

Channel adapters (``adapters/``) implement ``ChannelAdapter``. They translate third-party
errors into the gateway error tree at their edge and never retry: retries, backoff, leases
and circuit breaking live in the dispatcher.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import aiohttp


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


@dataclass(frozen=True, slots=True)
class AdapterContext:
    """What the composition root hands every adapter factory.

    Args:
        base_dir: where relative key-file paths resolve.
        http: the process's shared HTTP client session.
        clock: returns Unix time.
    """

    base_dir: Path
    http: aiohttp.ClientSession
    clock: Callable[[], float]


class Clock(Protocol):
    """Wall-clock time, injectable for tests."""

    def now(self) -> float: ...


__all__ = ["AdapterContext", "ChannelAdapter", "Clock", "OutboundPacket", "Receipt"]
