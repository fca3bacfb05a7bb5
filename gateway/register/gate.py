"""The register as allocation and renewals see it: which agencies may take cases today.

``RegisterGate`` is built once from ``[register]`` and the lender's time zone (the day a
contract ends is the lender's day) and handed to the placement service: each allocation
round reads the register in its snapshot and refuses the agencies ``standing`` refuses (the
refusal is the agency's verdict in the round's decision, so an unplaced case's reason names
the agency and why); the commit reads it again before each batch is written, so a status
change between the plan and the write still stops the placement; a renewal of a placement
asks ``require`` for its agency.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.errors import RegisterRefused
from gateway.register.standing import gate
from gateway.register.store import read_register


@dataclass(frozen=True, slots=True)
class RegisterGate:
    """``enforce``: an agency with no register entry is refused (``[register] enforce``);
    entries gate their agencies either way. ``zone``: the lender's time zone."""

    enforce: bool = True
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))

    def day(self, now: datetime) -> date:
        return now.astimezone(self.zone).date()

    async def check(
        self, conn: AsyncConnection, agency_ids: Iterable[str], now: datetime
    ) -> tuple[dict[str, str], dict[str, float]]:
        """(agency → why it may not take cases, agency → share factor) on ``now``'s day."""
        ids = sorted(set(agency_ids))
        entries = await read_register(conn, ids)
        return gate(entries, ids, self.day(now), enforce=self.enforce)

    async def require(self, conn: AsyncConnection, agency_id: str, now: datetime) -> None:
        """RegisterRefused naming the agency and why, unless it may take cases today."""
        barred, _ = await self.check(conn, [agency_id], now)
        if agency_id in barred:
            raise RegisterRefused(
                f"agency {agency_id} may not take cases now ({barred[agency_id]})"
            )


__all__ = ["RegisterGate"]
