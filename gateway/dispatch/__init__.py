"""Dispatch: packets leave through the transactional outbox, and every send is on record.

``packets`` renders a case packet to its exact bytes; ``queue`` puts it in the ``outbox`` with
its evidence leaf, in the transaction of the business row; ``outbox`` claims due items with a
fenced lease and completes them; ``dispatcher`` drains the outbox
through each agency's channel adapter (``gateway.ports.ChannelAdapter``), with ``retry`` and a
per-agency ``circuit``; batch channels are drained by ``batches`` and recorded in bulk by
``batch_records``; ``records`` writes the outcome of every send, and ``hooks`` the
reconciliation expectations a delivery opens.
"""

from typing import TYPE_CHECKING

from gateway.exports import lazy_exports

if TYPE_CHECKING:
    from gateway.dispatch.dispatcher import Dispatcher, DrainStats
    from gateway.dispatch.packets import RenderedPacket
    from gateway.dispatch.queue import queue_packets

__all__ = ["Dispatcher", "DrainStats", "RenderedPacket", "queue_packets"]

__getattr__ = lazy_exports(
    __name__,
    {
        "Dispatcher": "gateway.dispatch.dispatcher",
        "DrainStats": "gateway.dispatch.dispatcher",
        "RenderedPacket": "gateway.dispatch.packets",
        "queue_packets": "gateway.dispatch.queue",
    },
)
