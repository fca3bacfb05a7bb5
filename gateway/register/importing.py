"""``register import``: load the register file into the register, in one transaction.

A new agency is admitted with the file's details, status and share; a known one has what
differs updated (action ``import``), its status moved along the transition table (a move
the table refuses, e.g. out of ``blacklisted``, fails the whole import) and its share set;
each qualification is recorded unless the same document (kind, hash, dates) already stands.
Running the same file twice changes nothing the second time: no revision, no leaf.
"""

import asyncio
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.config.settings import GatewaySettings
from gateway.register.register_file import AgencySpec, qualification_of, read_register_file
from gateway.register.standing import Qualification
from gateway.register.store import (
    add_qualification,
    create_entry,
    read_register,
    set_share,
    set_status,
    update_details,
)
from gateway.store.database import Database


@dataclass(slots=True)
class ImportReport:
    admitted: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    unconfigured: list[str] = field(default_factory=list)
    """Agencies in the file with no agency config (kept in the register all the same)."""

    def as_dict(self) -> dict[str, list[str]]:
        return {
            "admitted": self.admitted,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "unconfigured": self.unconfigured,
        }


def configured_file(settings: GatewaySettings) -> Path | None:
    """``[register] file``, relative paths against the base directory (None: not set)."""
    name = settings.agency_register.file
    if name is None:
        return None
    path = Path(name)
    return path if path.is_absolute() else settings.base_dir / path


async def import_register(
    db: Database,
    path: Path,
    *,
    actor: str,
    now: datetime,
    configured: Collection[str] = (),
) -> ImportReport:
    """Load ``path`` (gateway.register.register_file) into the register."""
    parsed = read_register_file(path)
    base = path.parent

    def hashed() -> list[tuple[AgencySpec, list[Qualification]]]:
        return [(a, [qualification_of(q, base) for q in a.qualifications]) for a in parsed.agencies]

    specs = await asyncio.to_thread(hashed)
    report = ImportReport()
    reason = f"register import {path.name}"
    async with db.transaction() as conn:
        for spec, docs in specs:
            outcome = await _apply(conn, spec, docs, reason=reason, actor=actor, now=now)
            getattr(report, outcome).append(spec.id)
            if configured and spec.id not in configured:
                report.unconfigured.append(spec.id)
    return report


async def _apply(
    conn: AsyncConnection,
    spec: AgencySpec,
    docs: list[Qualification],
    *,
    reason: str,
    actor: str,
    now: datetime,
) -> str:
    known = (await read_register(conn, [spec.id])).get(spec.id)
    if known is None:
        await create_entry(
            conn,
            spec.id,
            spec.details(),
            status=spec.status,
            share_bps=spec.share_bps,
            reason=spec.status_reason or reason,
            actor=actor,
            now=now,
        )
        before = 1
    else:
        before = known.revision
        await update_details(
            conn, spec.id, spec.details(), reason=reason, actor=actor, now=now, action="import"
        )
        if spec.status != known.status:
            await set_status(
                conn,
                spec.id,
                spec.status,
                reason=spec.status_reason or reason,
                actor=actor,
                now=now,
            )
        if spec.share_bps != known.share_bps:
            await set_share(conn, spec.id, spec.share_bps, reason=reason, actor=actor, now=now)
    entry = None
    for doc in docs:
        entry = await add_qualification(conn, spec.id, doc, reason=reason, actor=actor, now=now)
    if known is None:
        return "admitted"
    after = (
        entry.revision
        if entry is not None
        else (await read_register(conn, [spec.id]))[spec.id].revision
    )
    return "changed" if after != before else "unchanged"


__all__ = ["ImportReport", "configured_file", "import_register"]
