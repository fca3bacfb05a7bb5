"""The register job: expiry reminders and lapses (run by ``serve`` under the schedulers
lease, so once across the cluster, and by ``register check``).

Theory of operation
-------------------
Reminders: every contract end and required-qualification expiry within the largest of
``[register] reminder_days`` is listed; when it has come within a threshold (60, 30 and 7
days by default) a reminder row is inserted for (agency, subject, expiry day, threshold);
the insert ignores a row that exists, so each threshold is logged once per expiry (a new
expiry day, after a renewal of the contract or a new document, starts again).

Lapses: an agency whose standing lapsed for good (``gateway.register.standing.lapse``:
terminated, blacklisted, contract ended, a required qualification expired) has its open
placements recalled with the lifecycle's recall (``PlacementService.recall_agency``, as
``agencies recall-all`` does) once ``recall_grace_days`` have passed since the lapse, with
the lapse's reason code, and the entry notes the lapse day it acted on
(``lapse_recalled_on``): the next run leaves it alone. A suspended agency is not a lapse: it
receives no new cases but keeps working the ones it holds.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from gateway.config.settings import RegisterSection
from gateway.register.gate import RegisterGate
from gateway.register.standing import Expiry, due_reminders, expiring, lapse
from gateway.register.store import mark_lapse_recalled, read_register
from gateway.store.database import Database, dialect_insert
from gateway.store.register_tables import AgencyRegisterReminderRow

if TYPE_CHECKING:
    from gateway.allocation.placements import PlacementService

log = logging.getLogger(__name__)

REMINDERS = AgencyRegisterReminderRow.__table__  # type: ignore[attr-defined]


@dataclass(slots=True)
class CheckReport:
    """What one run of the register job did."""

    reminded: list[tuple[Expiry, int]] = field(default_factory=list)
    """Reminders given this run: (expiry, threshold in days)."""
    recalled: dict[str, list[str]] = field(default_factory=dict)
    """Agency → the placements recalled for its lapse."""
    lapsed: dict[str, str] = field(default_factory=dict)
    """Agency → its lapse (code: why), for every lapsed agency seen."""

    def as_dict(self) -> dict[str, object]:
        return {
            "reminded": [
                {
                    "agency_id": e.agency_id,
                    "subject": e.subject,
                    "ends_on": e.ends_on.isoformat(),
                    "days_left": e.days_left,
                    "threshold": days,
                }
                for e, days in self.reminded
            ],
            "recalled": self.recalled,
            "lapsed": self.lapsed,
        }


async def check_register(
    db: Database,
    placements: "PlacementService",
    settings: RegisterSection,
    gate: RegisterGate,
    *,
    now: datetime,
) -> CheckReport:
    """One run of the register job (see the module docstring)."""
    report = CheckReport()
    day = gate.day(now)
    async with db.connect() as conn:
        entries = await read_register(conn)
    horizon = max(settings.reminder_days, default=0)
    due = due_reminders(expiring(entries.values(), day, horizon), settings.reminder_days)
    if due:
        async with db.transaction() as conn:
            for expiry, days in due:
                inserted = await conn.execute(
                    dialect_insert(conn, REMINDERS)
                    .values(
                        agency_id=expiry.agency_id,
                        subject=expiry.subject,
                        expires_on=expiry.ends_on,
                        days=days,
                        sent_at=now,
                    )
                    .on_conflict_do_nothing(
                        index_elements=["agency_id", "subject", "expires_on", "days"]
                    )
                )
                if inserted.rowcount == 1:
                    report.reminded.append((expiry, days))
                    log.warning(
                        "register: %s %s ends %s (%d day(s) left; the %d-day reminder)",
                        expiry.agency_id,
                        expiry.subject,
                        expiry.ends_on.isoformat(),
                        expiry.days_left,
                        days,
                    )
    for agency_id, entry in entries.items():
        found = lapse(entry, day)
        if found is None:
            continue
        report.lapsed[agency_id] = f"{found.code}: {found.why}"
        if settings.on_lapse != "recall" or entry.lapse_recalled_on == found.since:
            continue
        if day < found.since + timedelta(days=settings.recall_grace_days):
            continue
        recalled = await placements.recall_agency(agency_id, found.code, actor="register")
        async with db.transaction() as conn:
            await mark_lapse_recalled(conn, agency_id, found.since)
        report.recalled[agency_id] = recalled
        log.warning(
            "register: %s lapsed on %s (%s): recalled %d open placement(s) as %s",
            agency_id,
            found.since.isoformat(),
            found.why,
            len(recalled),
            found.code,
        )
    return report


__all__ = ["CheckReport", "check_register"]
