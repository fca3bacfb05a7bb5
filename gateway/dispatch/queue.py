"""Queuing packets: each new outbox item with its ``packet`` evidence leaf, in the caller's
transaction, so a packet never waits in the outbox without its proof. Allocation, recalls,
amendments, deletion requests and direct-pay notices all queue through here."""

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.config.agencies import AgencyConfig
from gateway.dispatch import outbox
from gateway.dispatch.packets import RenderedPacket
from gateway.evidence.log import LeafInput, append_leaves


def packet_leaf(
    item_id: int, agency_id: str, placement_id: str, packet: RenderedPacket
) -> LeafInput:
    return LeafInput(
        kind="packet",
        ref=f"outbox:{item_id}",
        fields={
            "outbox_id": item_id,
            "sha256": packet.sha256,
            "agency_id": agency_id,
            "placement_id": placement_id,
            "packet_type": packet.packet_type,
            "dedupe_key": packet.dedupe_key,
        },
    )


async def queue_packets(
    conn: AsyncConnection,
    entries: Sequence[tuple[AgencyConfig, str, RenderedPacket]],
    *,
    now: datetime,
) -> int:
    """Enqueue (agency, placement id, packet) and append a ``packet`` leaf for each new item."""
    ids = await outbox.enqueue(
        conn,
        [outbox.NewItem(a.id, pid, pkt, a.retry.max_attempts) for a, pid, pkt in entries],
        now=now,
    )
    await append_leaves(
        conn,
        [
            packet_leaf(ids[pkt.dedupe_key], a.id, pid, pkt)
            for a, pid, pkt in entries
            if pkt.dedupe_key in ids
        ],
        now=now,
    )
    return len(ids)


__all__ = ["packet_leaf", "queue_packets"]
