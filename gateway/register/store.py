"""The register's store side: read entries, and change them, each change in the caller's
transaction with its history row and evidence leaf, bumping the entry's revision.

Every change goes through ``_record``: it compares the new values with the stored row,
writes only what differs (nothing at all when nothing does), raises ``revision`` by one,
keeps the change as JSON ``{field: [before, after]}`` in ``agency_register_history`` with
who, when and why, and appends a ``register`` leaf holding the same, so the register's
whole history is provable from the evidence log alone.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.errors import NotFound, RegisterRefused
from gateway.evidence.log import LeafInput, append_leaves
from gateway.register.standing import (
    FULL_SHARE_BPS,
    STATUSES,
    Qualification,
    RegisterEntry,
    Status,
    transition,
)
from gateway.store.register_tables import (
    AgencyQualificationRow,
    AgencyRegisterHistoryRow,
    AgencyRegisterRow,
)

REGISTER = AgencyRegisterRow.__table__  # type: ignore[attr-defined]
QUALIFICATIONS = AgencyQualificationRow.__table__  # type: ignore[attr-defined]
HISTORY = AgencyRegisterHistoryRow.__table__  # type: ignore[attr-defined]
R, Q = REGISTER.c, QUALIFICATIONS.c

DETAIL_FIELDS = (
    "legal_name",
    "registration_number",
    "business_scope",
    "licence",
    "contract_ref",
    "contract_start",
    "contract_end",
    "dpa_ref",
    "dpa_signed_on",
    "deposit_minor",
    "deposit_currency",
    "review_by",
    "review_on",
    "review_conclusion",
    "review_ref",
)
"""The fields ``update_details`` may change (status and share have their own calls)."""


@dataclass(frozen=True, slots=True)
class Change:
    """One revision of an entry, as the history keeps it."""

    agency_id: str
    revision: int
    action: str
    changes: dict[str, list[object]]
    reason: str | None
    actor: str
    at: datetime


def _qualification(row: RowMapping) -> Qualification:
    return Qualification(
        kind=row["kind"],
        sha256=row["sha256"],
        issued_on=row["issued_on"],
        expires_on=row["expires_on"],
        required=bool(row["required"]),
        reference=row["reference"],
        file_name=row["file_name"],
        id=row["id"],
        recorded_at=row["recorded_at"],
        recorded_by=row["recorded_by"],
    )


def _entry(row: RowMapping, qualifications: tuple[Qualification, ...]) -> RegisterEntry:
    return RegisterEntry(
        agency_id=row["agency_id"],
        legal_name=row["legal_name"],
        registration_number=row["registration_number"],
        business_scope=row["business_scope"],
        licence=row["licence"],
        contract_ref=row["contract_ref"],
        contract_start=row["contract_start"],
        contract_end=row["contract_end"],
        dpa_ref=row["dpa_ref"],
        dpa_signed_on=row["dpa_signed_on"],
        deposit_minor=int(row["deposit_minor"]),
        deposit_currency=row["deposit_currency"],
        review_by=row["review_by"],
        review_on=row["review_on"],
        review_conclusion=row["review_conclusion"],
        review_ref=row["review_ref"],
        status=cast(Status, row["status"]),
        status_reason=row["status_reason"],
        status_since=row["status_since"],
        share_bps=int(row["share_bps"]),
        revision=int(row["revision"]),
        lapse_recalled_on=row["lapse_recalled_on"],
        updated_at=row["updated_at"],
        updated_by=row["updated_by"],
        qualifications=qualifications,
    )


async def read_register(
    conn: AsyncConnection, agency_ids: list[str] | None = None
) -> dict[str, RegisterEntry]:
    """Every register entry (or those of ``agency_ids``) with its qualifications, by agency
    id: two queries, whatever the number of agencies."""
    entries = sa.select(REGISTER)
    docs = sa.select(QUALIFICATIONS).order_by(Q.id)
    if agency_ids is not None:
        entries = entries.where(R.agency_id.in_(agency_ids))
        docs = docs.where(Q.agency_id.in_(agency_ids))
    held: dict[str, list[Qualification]] = {}
    for row in (await conn.execute(docs)).mappings():
        held.setdefault(row["agency_id"], []).append(_qualification(row))
    return {
        row["agency_id"]: _entry(row, tuple(held.get(row["agency_id"], ())))
        for row in (await conn.execute(entries.order_by(R.agency_id))).mappings()
    }


async def read_entry(conn: AsyncConnection, agency_id: str) -> RegisterEntry:
    """One entry; NotFound naming the agency when it has none."""
    found = await read_register(conn, [agency_id])
    if agency_id not in found:
        raise NotFound(
            f"agency {agency_id} is not in the register (add it with `register import` or "
            "`register admit`)"
        )
    return found[agency_id]


async def read_history(conn: AsyncConnection, agency_id: str) -> list[Change]:
    """An entry's changes, newest first."""
    rows = await conn.execute(
        sa.select(HISTORY)
        .where(HISTORY.c.agency_id == agency_id)
        .order_by(HISTORY.c.revision.desc())
    )
    return [
        Change(
            r["agency_id"],
            int(r["revision"]),
            r["action"],
            json.loads(r["changes"]),
            r["reason"],
            r["actor"],
            r["at"],
        )
        for r in rows.mappings()
    ]


def _plain(value: object) -> object:
    return value.isoformat() if isinstance(value, date | datetime) else value


async def _record(
    conn: AsyncConnection,
    agency_id: str,
    revision: int,
    action: str,
    changes: Mapping[str, list[object]],
    *,
    reason: str | None,
    actor: str,
    now: datetime,
) -> None:
    """The history row and the evidence leaf of revision ``revision``."""
    plain = {k: [_plain(v) for v in pair] for k, pair in changes.items()}
    text = json.dumps(plain, ensure_ascii=False, sort_keys=True)
    await conn.execute(
        HISTORY.insert().values(
            agency_id=agency_id,
            revision=revision,
            action=action,
            changes=text,
            reason=None if reason is None else reason[:500],
            actor=actor[:64],
            at=now,
        )
    )
    await append_leaves(
        conn,
        [
            LeafInput(
                kind="register",
                ref=f"agency:{agency_id}",
                fields={
                    "action": action,
                    "revision": revision,
                    "changes": plain,
                    "reason": reason or "",
                    "actor": actor,
                },
            )
        ],
        now=now,
    )


async def _update(
    conn: AsyncConnection,
    entry: RegisterEntry,
    action: str,
    values: Mapping[str, Any],
    *,
    reason: str | None,
    actor: str,
    now: datetime,
) -> RegisterEntry:
    """Write what differs in ``values`` as the entry's next revision (nothing when nothing
    differs). A concurrent change in between is refused rather than overwritten."""
    changes: dict[str, list[object]] = {
        k: [getattr(entry, k), v] for k, v in values.items() if getattr(entry, k) != v
    }
    if not changes:
        return entry
    revision = entry.revision + 1
    columns = {k: v for k, v in values.items() if k in changes}
    result = await conn.execute(
        REGISTER.update()
        .where(R.agency_id == entry.agency_id, R.revision == entry.revision)
        .values(**columns, revision=revision, updated_at=now, updated_by=actor[:64])
    )
    if result.rowcount != 1:
        raise RegisterRefused(
            f"agency {entry.agency_id}: the register entry changed meanwhile (revision "
            f"{entry.revision} is no longer current); look again and retry"
        )
    await _record(
        conn, entry.agency_id, revision, action, changes, reason=reason, actor=actor, now=now
    )
    return await read_entry(conn, entry.agency_id)


async def create_entry(
    conn: AsyncConnection,
    agency_id: str,
    details: Mapping[str, Any],
    *,
    status: Status = "admitted",
    share_bps: int = FULL_SHARE_BPS,
    reason: str | None,
    actor: str,
    now: datetime,
) -> RegisterEntry:
    """Admit a new agency (revision 1, action ``admit``); RegisterRefused if it has an entry."""
    unknown = set(details) - set(DETAIL_FIELDS)
    if unknown:
        raise ValueError(f"not register details: {', '.join(sorted(unknown))}")
    if status not in STATUSES:
        raise RegisterRefused(f"unknown status {status!r} (one of {', '.join(STATUSES)})")
    exists = (await conn.execute(sa.select(R.agency_id).where(R.agency_id == agency_id))).first()
    if exists is not None:
        raise RegisterRefused(f"agency {agency_id} is already in the register")
    row: dict[str, Any] = {
        "business_scope": "",
        "deposit_minor": 0,
        "deposit_currency": "CNY",
        **details,
        "agency_id": agency_id,
        "status": status,
        "status_reason": reason if status != "admitted" else None,
        "status_since": now,
        "share_bps": share_bps,
        "revision": 1,
        "updated_at": now,
        "updated_by": actor[:64],
    }
    await conn.execute(REGISTER.insert().values(**row))
    await _record(
        conn,
        agency_id,
        1,
        "admit",
        {
            k: [None, v]
            for k, v in row.items()
            if k not in {"agency_id", "revision", "updated_at", "updated_by", "status_since"}
        },
        reason=reason,
        actor=actor,
        now=now,
    )
    return await read_entry(conn, agency_id)


async def update_details(
    conn: AsyncConnection,
    agency_id: str,
    details: Mapping[str, Any],
    *,
    reason: str | None,
    actor: str,
    now: datetime,
    action: str = "update",
) -> RegisterEntry:
    """Change an entry's details (contract, agreement, deposit, review, identity)."""
    unknown = set(details) - set(DETAIL_FIELDS)
    if unknown:
        raise ValueError(f"not register details: {', '.join(sorted(unknown))}")
    entry = await read_entry(conn, agency_id)
    return await _update(conn, entry, action, details, reason=reason, actor=actor, now=now)


async def set_status(
    conn: AsyncConnection,
    agency_id: str,
    status: str,
    *,
    reason: str,
    actor: str,
    now: datetime,
) -> RegisterEntry:
    """Move the agency's status along the transition table (gateway.register.standing);
    RegisterRefused for a move the table does not allow (e.g. out of blacklisted)."""
    entry = await read_entry(conn, agency_id)
    try:
        action = transition(entry.status, status)
    except ValueError as exc:
        raise RegisterRefused(f"agency {agency_id}: {exc}") from None
    return await _update(
        conn,
        entry,
        action,
        {"status": status, "status_reason": reason, "status_since": now},
        reason=reason,
        actor=actor,
        now=now,
    )


async def set_share(
    conn: AsyncConnection,
    agency_id: str,
    share_bps: int,
    *,
    reason: str,
    actor: str,
    now: datetime,
) -> RegisterEntry:
    """Set the agency's allocation share (basis points of its contract weight; 10000 = full,
    0 = no new cases), e.g. an annual evaluation's "reduce share"."""
    if not 0 <= share_bps <= FULL_SHARE_BPS:
        raise RegisterRefused(
            f"agency {agency_id}: share {share_bps} bps is outside 0..{FULL_SHARE_BPS}"
        )
    entry = await read_entry(conn, agency_id)
    return await _update(
        conn, entry, "share", {"share_bps": share_bps}, reason=reason, actor=actor, now=now
    )


async def add_qualification(
    conn: AsyncConnection,
    agency_id: str,
    qualification: Qualification,
    *,
    reason: str | None,
    actor: str,
    now: datetime,
) -> RegisterEntry:
    """Record a qualification document (it stands for its kind from now on). Recording the
    same document again (same kind, hash and dates) changes nothing."""
    entry = await read_entry(conn, agency_id)
    q = qualification
    if len(q.sha256) != 64 or any(c not in "0123456789abcdef" for c in q.sha256):
        raise RegisterRefused(f"agency {agency_id}: {q.kind}: sha256 must be 64 hex digits")
    if q.issued_on and q.expires_on and q.expires_on < q.issued_on:
        raise RegisterRefused(
            f"agency {agency_id}: {q.kind} expires {q.expires_on} before it was issued "
            f"({q.issued_on})"
        )
    standing_doc = next((d for d in reversed(entry.qualifications) if d.kind == q.kind), None)
    if standing_doc is not None and (
        standing_doc.sha256,
        standing_doc.issued_on,
        standing_doc.expires_on,
        standing_doc.required,
    ) == (q.sha256, q.issued_on, q.expires_on, q.required):
        return entry
    await conn.execute(
        QUALIFICATIONS.insert().values(
            agency_id=agency_id,
            kind=q.kind,
            reference=q.reference,
            sha256=q.sha256,
            file_name=q.file_name,
            issued_on=q.issued_on,
            expires_on=q.expires_on,
            required=q.required,
            recorded_at=now,
            recorded_by=actor[:64],
        )
    )
    before = (
        None
        if standing_doc is None
        else {
            "sha256": standing_doc.sha256,
            "expires_on": _plain(standing_doc.expires_on),
        }
    )
    after = {
        "sha256": q.sha256,
        "issued_on": _plain(q.issued_on),
        "expires_on": _plain(q.expires_on),
        "required": q.required,
    }
    return await _qualified(conn, entry, q.kind, before, after, reason, actor, now)


async def _qualified(
    conn: AsyncConnection,
    entry: RegisterEntry,
    kind: str,
    before: object,
    after: object,
    reason: str | None,
    actor: str,
    now: datetime,
) -> RegisterEntry:
    revision = entry.revision + 1
    result = await conn.execute(
        REGISTER.update()
        .where(R.agency_id == entry.agency_id, R.revision == entry.revision)
        .values(revision=revision, updated_at=now, updated_by=actor[:64])
    )
    if result.rowcount != 1:
        raise RegisterRefused(
            f"agency {entry.agency_id}: the register entry changed meanwhile; retry"
        )
    await _record(
        conn,
        entry.agency_id,
        revision,
        "qualify",
        {f"qualification:{kind}": [before, after]},
        reason=reason,
        actor=actor,
        now=now,
    )
    return await read_entry(conn, entry.agency_id)


async def mark_lapse_recalled(conn: AsyncConnection, agency_id: str, day: date) -> None:
    """Note that the lapse of ``day`` has been acted on (not a register change: no revision)."""
    await conn.execute(
        REGISTER.update().where(R.agency_id == agency_id).values(lapse_recalled_on=day)
    )


__all__ = [
    "DETAIL_FIELDS",
    "Change",
    "add_qualification",
    "create_entry",
    "mark_lapse_recalled",
    "read_entry",
    "read_history",
    "read_register",
    "set_share",
    "set_status",
    "update_details",
]
