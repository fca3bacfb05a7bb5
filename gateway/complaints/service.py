"""Ops and the lender's channel acting on complaints: open, import, move, hold and release.

``ComplaintService`` holds what a complaint action needs (the database, the clock, the PII key
ring that seals summaries, the case service that holds and releases cases, the deadlines).
Each action runs in one transaction: it locks the complaint, checks the move against the
state table (gateway.complaints.states), writes the change with a bumped revision and appends
its ``complaint`` evidence leaf.

Holding collection reuses the case holds (gateway.cases.holds): a ``COMPLAINT`` hold on the
case. A case with an agency is recalled at once with reason code ``COMPLAINT``: the agency is
told by ``placement.recalled`` on its own channel (webhook, SFTP file, email) and stops
collecting; an unplaced case becomes ``held`` and is not allocated. Closing the complaint
(or ``release``) releases the hold unless another complaint on the case still holds it;
with no hold left the case is open and allocatable again.
"""

import asyncio
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.cases.holds import CaseService, active_holds
from gateway.clock import to_datetime
from gateway.complaints.lender_channel import LenderComplaint, RowProblem, read_csv
from gateway.complaints.states import (
    HOLD_CODE,
    SOURCES,
    checked_category,
    checked_outcome,
    next_state,
)
from gateway.complaints.store import (
    COMPLAINTS,
    ComplaintFilter,
    ComplaintRecord,
    DeadlinePolicy,
    E,
    K,
    NewComplaint,
    attribute,
    attribute_each,
    complaint_leaf,
    get_complaint,
    insert_complaints,
    list_complaints,
    overdue_count,
)
from gateway.errors import ComplaintRefused, GatewayError, NotFound
from gateway.evidence.log import append_leaves
from gateway.ports import Clock
from gateway.privacy.pii import PiiKeyRing
from gateway.store.database import Database

_NOTE = 500


def summary_binding(source: str, source_ref: str) -> str:
    """What a complaint's sealed summary is bound to (PiiKeyRing.seal)."""
    return f"complaint:{source}:{source_ref}"


@dataclass(frozen=True, slots=True)
class Opened:
    complaint: ComplaintRecord
    created: bool
    held: bool = False


@dataclass(slots=True)
class ImportReport:
    """What an import did: complaints opened, references already known, refused rows."""

    path: str
    opened: list[int] = field(default_factory=list)
    known: list[str] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "opened": self.opened,
            "known": self.known,
            "problems": [str(p) for p in self.problems],
        }


class ComplaintService:
    """Complaint actions for the CLI, the console and the lender's webhook.

    Args:
        db: the database.
        clock: time source.
        pii: seals and opens summaries.
        cases: holds and releases cases (and recalls a placed one).
        policy: ``[complaints]`` deadlines in the lender's time zone.
        hold_on_open: hold the case whenever ops or the lender's channel opens a complaint.
    """

    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        pii: PiiKeyRing,
        cases: CaseService,
        policy: DeadlinePolicy,
        hold_on_open: bool = False,
    ) -> None:
        self._db = db
        self._clock = clock
        self._pii = pii
        self._cases = cases
        self.policy = policy
        self._hold_on_open = hold_on_open

    def now(self) -> datetime:
        return to_datetime(self._clock.now())

    # -- reading --------------------------------------------------------------------------

    async def get(self, complaint_id: int) -> ComplaintRecord:
        async with self._db.snapshot() as conn:
            return await get_complaint(conn, complaint_id, now=self.now())

    async def find(self, where: ComplaintFilter) -> list[ComplaintRecord]:
        async with self._db.snapshot() as conn:
            return await list_complaints(conn, where, now=self.now())

    async def overdue(self) -> int:
        async with self._db.snapshot() as conn:
            return await overdue_count(conn, now=self.now())

    async def summary(self, complaint_id: int) -> str | None:
        """The complaint's summary in clear (personal data: show it, never log it). An agency's
        complaint's summary is its event's."""
        async with self._db.snapshot() as conn:
            row = (
                await conn.execute(
                    sa.select(K.source, K.source_ref, K.summary_enc, K.event_id).where(
                        K.id == complaint_id
                    )
                )
            ).first()
            if row is None:
                raise NotFound(f"complaint {complaint_id} does not exist")
            if row.summary_enc is not None:
                sealed = self._pii.unseal(
                    row.summary_enc, bound_to=summary_binding(row.source, row.source_ref)
                )
                return sealed.decode()
            if row.event_id is not None:
                data = (await conn.execute(sa.select(E.data).where(E.id == row.event_id))).scalar()
                if data:
                    text = json.loads(data).get("summary")
                    return text if isinstance(text, str) else None
        return None

    # -- opening --------------------------------------------------------------------------

    def _sealed(self, source: str, ref: str, summary: str | None) -> bytes | None:
        if not summary or not summary.strip():
            return None
        return self._pii.seal(summary.strip().encode(), bound_to=summary_binding(source, ref))

    def from_lender(self, item: LenderComplaint, *, source: str) -> NewComplaint:
        return NewComplaint(
            source=source,
            source_ref=item.complaint_id,
            channel=item.channel,
            category=item.category,
            received_at=item.received_at,
            case_id=item.case_id,
            placement_id=item.placement_id,
            collector_id=item.collector_id,
            contact_at=item.contact_at,
            summary_enc=self._sealed(source, item.complaint_id, item.summary),
        )

    async def open(
        self,
        *,
        case_id: str | None = None,
        placement_id: str | None = None,
        channel: str,
        category: str = "other",
        summary: str | None = None,
        received_at: datetime | None = None,
        contact_at: datetime | None = None,
        collector_id: str | None = None,
        source_ref: str | None = None,
        owner: str | None = None,
        hold: bool | None = None,
        actor: str,
    ) -> Opened:
        """Open a complaint by ops. ``source_ref`` (e.g. a hotline ticket) is its dedupe key
        (default: a fresh one); ``hold`` None follows ``hold_on_open``."""
        now = self.now()
        if not channel.strip():
            raise GatewayError("a complaint needs the channel it came by (--channel)")
        ref = source_ref or f"ops-{now:%Y%m%d}-{secrets.token_hex(5)}"
        item = NewComplaint(
            source="ops",
            source_ref=ref,
            channel=channel.strip(),
            category=checked_category(category),
            received_at=received_at or now,
            case_id=case_id,
            placement_id=placement_id,
            collector_id=collector_id,
            contact_at=contact_at,
            summary_enc=self._sealed("ops", ref, summary),
        )
        async with self._db.transaction() as conn:
            opened = await self.open_in(conn, [item], actor=actor, now=now, hold=hold)
            result = opened[0]
            if owner and result.created:
                record = await self._act_in(
                    conn, result.complaint.id, "assign", actor=actor, now=now, owner=owner
                )
                result = Opened(record, True, result.held)
        return result

    async def receive(self, item: LenderComplaint, *, actor: str) -> Opened:
        """The lender's webhook: open ``item`` (a known complaint_id returns the complaint it
        opened before, unchanged)."""
        now = self.now()
        async with self._db.transaction() as conn:
            new = self.from_lender(item, source="lender_webhook")
            return (await self.open_in(conn, [new], actor=actor, now=now))[0]

    async def import_file(self, path: Path, *, actor: str) -> ImportReport:
        """Open a complaint per row of the lender's CSV file, in one transaction. A row that
        cannot be read, or names an unknown case or placement, is reported and skipped; a
        known complaint_id is reported as known."""
        report = ImportReport(str(path))
        try:
            text = await asyncio.to_thread(path.read_text, encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise GatewayError(f"{path}: cannot read it as UTF-8 text: {exc}") from exc
        items: list[tuple[int, NewComplaint]] = []
        for parsed in read_csv(text):
            if isinstance(parsed, RowProblem):
                report.problems.append(parsed)
            else:
                line, row = parsed
                items.append((line, self.from_lender(row, source="lender_import")))
        now = self.now()
        async with self._db.transaction() as conn:
            good: list[NewComplaint] = []
            attributed = await attribute_each(conn, [item for _line, item in items])
            for (line, item), done in zip(items, attributed, strict=True):
                if isinstance(done, GatewayError):
                    field_name = "placement_id" if item.placement_id else "case_id"
                    report.problems.append(RowProblem(line, field_name, str(done)))
                else:
                    good.append(done)
            for result in await self.open_in(conn, good, actor=actor, now=now, attributed=True):
                if result.created:
                    report.opened.append(result.complaint.id)
                else:
                    report.known.append(result.complaint.source_ref)
        return report

    async def open_in(
        self,
        conn: AsyncConnection,
        items: Sequence[NewComplaint],
        *,
        actor: str,
        now: datetime,
        hold: bool | None = None,
        attributed: bool = False,
    ) -> list[Opened]:
        """Open ``items`` in the caller's transaction, holding the cases of the new ones
        when ``hold`` (None: ``hold_on_open``) says so."""
        for item in items:
            if item.source not in SOURCES:
                raise GatewayError(f"complaint source {item.source!r} is not one of {SOURCES}")
        done = list(items) if attributed else await attribute(conn, items)
        results = await insert_complaints(conn, done, policy=self.policy, actor=actor, now=now)
        want_hold = self._hold_on_open if hold is None else hold
        opened = []
        for record, created in results:
            if created and want_hold:
                try:
                    record = await self._hold_in(conn, record, actor=actor, now=now)
                except GatewayError as exc:
                    if hold:  # asked for by name: say why not, open nothing
                        raise
                    # hold_on_open on a case that cannot be held (closed, written off):
                    # refused before anything was written; the complaint opens without it.
                    leaf = complaint_leaf(record, "hold_skipped", actor, reason=str(exc)[:300])
                    await append_leaves(conn, [leaf], now=now)
            opened.append(Opened(record, created, record.hold_id is not None))
        return opened

    # -- actions --------------------------------------------------------------------------

    async def act(
        self,
        complaint_id: int,
        action: str,
        *,
        actor: str,
        outcome: str | None = None,
        note: str | None = None,
        owner: str | None = None,
        placement_id: str | None = None,
        collector_id: str | None = None,
        expected_revision: int | None = None,
    ) -> ComplaintRecord:
        """Do ``action`` (investigate, resolve, close, reopen, assign, extend, attribute,
        hold, release) on the complaint. Raises ComplaintRefused saying why not, NotFound for
        an unknown id."""
        now = self.now()
        async with self._db.transaction() as conn:
            return await self._act_in(
                conn,
                complaint_id,
                action,
                actor=actor,
                now=now,
                outcome=outcome,
                note=note,
                owner=owner,
                placement_id=placement_id,
                collector_id=collector_id,
                expected_revision=expected_revision,
            )

    async def _locked(
        self, conn: AsyncConnection, complaint_id: int, now: datetime
    ) -> ComplaintRecord:
        await conn.execute(sa.select(K.id).where(K.id == complaint_id).with_for_update())
        return await get_complaint(conn, complaint_id, now=now)

    async def _write(
        self,
        conn: AsyncConnection,
        record: ComplaintRecord,
        values: dict[str, object],
        *,
        actor: str,
        now: datetime,
    ) -> ComplaintRecord:
        done = await conn.execute(
            COMPLAINTS.update()
            .where(K.id == record.id, K.revision == record.revision)
            .values(**values, revision=record.revision + 1, updated_at=now, updated_by=actor[:64])
        )
        if done.rowcount != 1:
            raise ComplaintRefused(f"complaint {record.ref} was changed meanwhile; look again")
        return await get_complaint(conn, record.id, now=now)

    async def _act_in(
        self,
        conn: AsyncConnection,
        complaint_id: int,
        action: str,
        *,
        actor: str,
        now: datetime,
        outcome: str | None = None,
        note: str | None = None,
        owner: str | None = None,
        placement_id: str | None = None,
        collector_id: str | None = None,
        expected_revision: int | None = None,
    ) -> ComplaintRecord:
        record = await self._locked(conn, complaint_id, now)
        if expected_revision is not None and expected_revision != record.revision:
            raise ComplaintRefused(
                f"complaint {record.ref} changed since you looked (revision {record.revision}, "
                f"not {expected_revision}); look again"
            )
        after = next_state(record.state, action, ref=record.ref)
        note = note.strip()[:_NOTE] if note and note.strip() else None
        extra: dict[str, object] = {"note": note or ""}
        values: dict[str, object] = {"state": after}
        if action == "resolve":
            if outcome is None:
                raise ComplaintRefused(
                    f"complaint {record.ref}: resolving needs an outcome (upheld, "
                    "partly_upheld, not_upheld, withdrawn)"
                )
            values |= {
                "outcome": checked_outcome(outcome, ref=record.ref),
                "outcome_note": note,
                "resolved_at": now,
            }
        elif action == "close":
            values["closed_at"] = now
        elif action == "reopen":
            values |= {
                "outcome": None,
                "resolved_at": None,
                "closed_at": None,
                "reopened": record.reopened + 1,
            }
            extra["previous_outcome"] = record.outcome or ""
        elif action == "assign":
            if not owner or not owner.strip():
                raise ComplaintRefused(f"complaint {record.ref}: name the owner to assign")
            values["owner"] = owner.strip()[:64]
        elif action == "extend":
            if record.extended:
                raise ComplaintRefused(
                    f"complaint {record.ref}: its deadline was extended once already"
                )
            if self.policy.extension_days <= 0:
                raise ComplaintRefused(
                    "[complaints] extension_days is 0: deadlines cannot be extended"
                )
            if record.state not in ("open", "investigating"):
                raise ComplaintRefused(f"complaint {record.ref} is {record.state}: answered")
            if not note:
                raise ComplaintRefused(
                    f"complaint {record.ref}: an extension needs a reason (--note); the "
                    "debtor must be told it"
                )
            values |= {
                "extended": True,
                "deadline_at": record.deadline_at + timedelta(days=self.policy.extension_days),
            }
        elif action == "attribute":
            if placement_id is None and collector_id is None:
                raise ComplaintRefused(
                    f"complaint {record.ref}: give the placement and/or collector it is "
                    "attributed to"
                )
            if placement_id is not None:
                fixed = (
                    await attribute(
                        conn,
                        [
                            NewComplaint(
                                record.source,
                                record.source_ref,
                                record.channel,
                                record.category,
                                record.received_at,
                                case_id=record.case_id,
                                placement_id=placement_id,
                            )
                        ],
                    )
                )[0]
                values |= {"placement_id": fixed.placement_id, "agency_id": fixed.agency_id}
            if collector_id is not None:
                values["collector_id"] = collector_id.strip()[:64] or None
            extra |= {
                "from_placement_id": record.placement_id or "",
                "from_agency_id": record.agency_id or "",
                "from_collector_id": record.collector_id or "",
            }
        elif action == "hold":
            if record.hold_id is not None:
                raise ComplaintRefused(
                    f"complaint {record.ref} already holds case {record.case_id}"
                )
            return await self._hold_in(conn, record, actor=actor, now=now, note=note)
        elif action == "release":
            if record.hold_id is None:
                raise ComplaintRefused(f"complaint {record.ref} holds nothing")
            return await self._release_in(conn, record, actor=actor, now=now, note=note)
        moved = await self._write(conn, record, values, actor=actor, now=now)
        await append_leaves(conn, [complaint_leaf(moved, action, actor, **extra)], now=now)
        if action == "close" and moved.hold_id is not None:
            moved = await self._release_in(conn, moved, actor=actor, now=now, note="closed")
        return moved

    async def _hold_in(
        self,
        conn: AsyncConnection,
        record: ComplaintRecord,
        *,
        actor: str,
        now: datetime,
        note: str | None = None,
    ) -> ComplaintRecord:
        outcome = await self._cases.hold_in(
            conn,
            record.case_id,
            HOLD_CODE,
            actor=actor,
            note=f"complaint {record.ref}" + (f": {note}" if note else ""),
            now=now,
        )
        standing = (await active_holds(conn, [record.case_id])).get(record.case_id, [])
        hold_id = next(h.id for h in standing if h.code == HOLD_CODE)
        held = await self._write(conn, record, {"hold_id": hold_id}, actor=actor, now=now)
        await append_leaves(
            conn,
            [
                complaint_leaf(
                    held,
                    "hold",
                    actor,
                    case_status=outcome.status,
                    recalled_placement_id=outcome.recalled_placement_id or "",
                )
            ],
            now=now,
        )
        return held

    async def _release_in(
        self,
        conn: AsyncConnection,
        record: ComplaintRecord,
        *,
        actor: str,
        now: datetime,
        note: str | None = None,
    ) -> ComplaintRecord:
        others = (
            await conn.execute(
                sa.select(sa.func.count())
                .select_from(COMPLAINTS)
                .where(
                    K.case_id == record.case_id,
                    K.id != record.id,
                    K.hold_id.is_not(None),
                    K.state != "closed",
                )
            )
        ).scalar()
        status = ""
        standing = (await active_holds(conn, [record.case_id])).get(record.case_id, [])
        if not others and any(h.code == HOLD_CODE for h in standing):
            outcome = await self._cases.release_in(
                conn,
                record.case_id,
                HOLD_CODE,
                actor=actor,
                note=f"complaint {record.ref}" + (f": {note}" if note else ""),
                now=now,
            )
            status = outcome.status
        released = await self._write(conn, record, {"hold_id": None}, actor=actor, now=now)
        await append_leaves(
            conn,
            [
                complaint_leaf(
                    released,
                    "release",
                    actor,
                    case_status=status,
                    still_held_by_others=bool(others),
                )
            ],
            now=now,
        )
        return released


__all__ = ["ComplaintService", "ImportReport", "Opened", "summary_binding"]
