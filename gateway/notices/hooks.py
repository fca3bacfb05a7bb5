"""Delivery hooks for notices: the dispatcher's outcomes of ``lender.notices`` items mark their
``borrower_notices`` rows; every other item goes on to the agencies' hooks (reconciliation).

A notice given up (attempts exhausted, or refused with a permanent error) is ``failed``: the
flag ``notices list --failed``, the console and ``/metrics`` show. It is not a mismatch with an
agency: the agency did nothing wrong.
"""

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.dispatch.outbox import ClaimedItem
from gateway.dispatch.records import DeliveryHooks
from gateway.notices.content import NOTICE_SENDER
from gateway.notices.scan import NOTICES, N


class NoticeHooks:
    """``DeliveryHooks`` that take the notices' outcomes and pass the rest to ``inner``."""

    def __init__(self, inner: DeliveryHooks) -> None:
        self._inner = inner

    async def on_delivered(
        self, conn: AsyncConnection, items: Sequence[ClaimedItem], *, now: datetime
    ) -> None:
        notices = [i.id for i in items if i.agency_id == NOTICE_SENDER]
        others = [i for i in items if i.agency_id != NOTICE_SENDER]
        if notices:
            await conn.execute(
                NOTICES.update()
                .where(N.outbox_id.in_(notices))
                .values(state="delivered", delivered_at=now, failed_at=None, error=None)
            )
        if others:
            await self._inner.on_delivered(conn, others, now=now)

    async def on_delivered_rows(
        self,
        conn: AsyncConnection,
        agency_id: str,
        delivered: sa.Select[tuple[str, str]],
        *,
        now: datetime,
    ) -> None:
        # Only batch channels (agencies' file drops) record in sets.
        await self._inner.on_delivered_rows(conn, agency_id, delivered, now=now)

    async def on_dead(
        self, conn: AsyncConnection, items: Sequence[tuple[ClaimedItem, str]], *, now: datetime
    ) -> None:
        others = [(i, e) for i, e in items if i.agency_id != NOTICE_SENDER]
        for item, error in items:
            if item.agency_id == NOTICE_SENDER:
                await conn.execute(
                    NOTICES.update()
                    .where(N.outbox_id == item.id)
                    .values(state="failed", failed_at=now, error=error[:500])
                )
        if others:
            await self._inner.on_dead(conn, others, now=now)

    async def on_dead_batch(
        self,
        conn: AsyncConnection,
        batch: str,
        items: Sequence[tuple[ClaimedItem, str]],
        *,
        now: datetime,
    ) -> None:
        await self._inner.on_dead_batch(conn, batch, items, now=now)


__all__ = ["NoticeHooks"]
