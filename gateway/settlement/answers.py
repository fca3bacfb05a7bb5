"""The agency's answer to a settlement statement: ``settlement.confirmed`` and
``settlement.disputed``, whatever channel they came by.

``problem`` says why an answer cannot be taken (read only: the webhook turns it into a 422
before storing the event); ``confirm_statement`` / ``dispute_statement`` apply one in the
caller's transaction (SettlementError when refused); ``on_arrival`` is the hook of
gateway.reconciliation.recorder: it applies each arriving answer that ``problem`` passes and
returns the ``settlement_disputed`` mismatches for the recorder to insert. A refused answer
changes nothing (the webhook already answered 422; on SFTP and email it stays an event row).
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.errors import SettlementError
from gateway.evidence.log import LeafInput, append_leaves
from gateway.reconciliation.kinds import MismatchDraft
from gateway.settlement.states import next_state
from gateway.store.settlement_tables import Attribution
from gateway.store.statement_tables import SettlementLine, SettlementStatement
from schemas.events import AgencyEvent, SettlementConfirmed, SettlementDisputed

STATEMENTS = SettlementStatement.__table__  # type: ignore[attr-defined]
LINES = SettlementLine.__table__  # type: ignore[attr-defined]
ATTRIBUTIONS = Attribution.__table__  # type: ignore[attr-defined]
S, L = STATEMENTS.c, LINES.c

MismatchRow = tuple[str, MismatchDraft, str, int | None, int | None]
"""(dedupe key, draft, agency id, event id, outbox id): what recorder.insert_mismatches takes."""

ANSWER_TYPES = frozenset({"settlement.confirmed", "settlement.disputed"})


async def _statement(conn: AsyncConnection, statement_id: int) -> dict[str, object] | None:
    row = (
        await conn.execute(
            sa.select(S.id, S.agency_id, S.revision, S.state, S.canonical_sha256).where(
                S.id == statement_id
            )
        )
    ).first()
    return dict(row._mapping) if row is not None else None


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an answer is refused: the event field at fault (``statement_id``, ``revision``,
    ``sha256`` or ``line_nos``) and the reason."""

    field: str
    reason: str


async def problem(
    conn: AsyncConnection,
    agency_id: str,
    statement_id: int,
    revision: int,
    action: str,
    *,
    sha256: str | None = None,
    line_nos: Sequence[int] = (),
) -> Refusal | None:
    """Why this answer is refused, or None when it can be applied."""
    st = await _statement(conn, statement_id)
    if st is None or st["agency_id"] != agency_id:
        return Refusal(
            "statement_id", f"agency {agency_id} has no settlement statement {statement_id}"
        )
    label = f"statement {statement_id} revision {revision}"
    if st["revision"] != revision:
        return Refusal(
            "revision",
            f"statement {statement_id} is at revision {st['revision']}, not {revision}: "
            f"{action} the revision you were last sent",
        )
    try:
        next_state(str(st["state"]), action, statement=label)
    except SettlementError as exc:
        return Refusal("statement_id", str(exc))
    if action == "confirm" and sha256 != st["canonical_sha256"]:
        return Refusal(
            "sha256",
            f"{label} has SHA-256 {st['canonical_sha256']}; the confirmation names {sha256}: "
            "confirm the statement as it was sent (its packet's sha256)",
        )
    if action == "dispute":
        known = {
            int(n)
            for n in (
                await conn.execute(sa.select(L.line_no).where(L.statement_id == statement_id))
            ).scalars()
        }
        unknown = sorted(set(line_nos) - known)
        if not line_nos:
            return Refusal("line_nos", "a dispute names at least one line")
        if unknown:
            return Refusal("line_nos", f"{label} has no line(s) {unknown}")
    return None


async def event_problem(
    conn: AsyncConnection, agency_id: str, event: AgencyEvent
) -> Refusal | None:
    """``problem`` for an arriving event (None for events that are not answers)."""
    if isinstance(event, SettlementConfirmed):
        d = event.data
        return await problem(
            conn, agency_id, d.statement_id, d.revision, "confirm", sha256=d.sha256
        )
    if isinstance(event, SettlementDisputed):
        dd = event.data
        return await problem(
            conn, agency_id, dd.statement_id, dd.revision, "dispute", line_nos=dd.line_nos
        )
    return None


async def confirm_statement(
    conn: AsyncConnection,
    agency_id: str,
    statement_id: int,
    revision: int,
    sha256: str,
    *,
    now: datetime,
) -> None:
    """Lock the statement and settle its lines' attributions; SettlementError if refused."""
    if why := await problem(conn, agency_id, statement_id, revision, "confirm", sha256=sha256):
        raise SettlementError(why.reason)
    attribution_ids = list(
        (
            await conn.execute(
                sa.select(L.attribution_id).where(
                    L.statement_id == statement_id, L.withheld.is_(False)
                )
            )
        ).scalars()
    )
    if attribution_ids:
        await conn.execute(
            sa.update(ATTRIBUTIONS)
            .where(ATTRIBUTIONS.c.id.in_(attribution_ids))
            .values(statement_id=statement_id, state="settled")
        )
    await conn.execute(
        sa.update(STATEMENTS)
        .where(S.id == statement_id)
        .values(state="confirmed", answered_at=now, updated_at=now)
    )
    await append_leaves(
        conn,
        [
            LeafInput(
                "settlement",
                f"settlement:{statement_id}",
                {
                    "action": "confirmed",
                    "agency_id": agency_id,
                    "revision": revision,
                    "sha256": sha256,
                    "attributions": len(attribution_ids),
                },
            )
        ],
        now=now,
    )


async def dispute_statement(
    conn: AsyncConnection,
    agency_id: str,
    statement_id: int,
    revision: int,
    line_nos: Sequence[int],
    *,
    reason: str,
    claimed_minor: int,
    now: datetime,
    event_id: int | None = None,
) -> MismatchRow:
    """Mark the statement disputed; return its ``settlement_disputed`` mismatch (the lines
    in question, our commission on them and what the agency claims) for the caller to
    insert. SettlementError if refused."""
    if why := await problem(conn, agency_id, statement_id, revision, "dispute", line_nos=line_nos):
        raise SettlementError(why.reason)
    wanted = sorted(set(line_nos))
    ours = {
        int(r.line_no): r
        for r in await conn.execute(
            sa.select(L.line_no, L.placement_id, L.commission_minor).where(
                L.statement_id == statement_id, L.line_no.in_(wanted)
            )
        )
    }
    ours_minor = sum(int(r.commission_minor or 0) for r in ours.values())
    theirs = {"line_nos": wanted, "reason": reason, "claimed_minor": claimed_minor}
    await conn.execute(
        sa.update(STATEMENTS)
        .where(S.id == statement_id)
        .values(
            state="disputed",
            dispute=json.dumps(theirs, ensure_ascii=False),
            answered_at=now,
            updated_at=now,
        )
    )
    await append_leaves(
        conn,
        [
            LeafInput(
                "settlement",
                f"settlement:{statement_id}",
                {"action": "disputed", "agency_id": agency_id, "revision": revision, **theirs},
            )
        ],
        now=now,
    )
    placements = {ours[n].placement_id for n in wanted}
    draft = MismatchDraft(
        kind="settlement_disputed",
        placement_id=next(iter(placements)) if len(placements) == 1 else None,
        detail=(
            f"{agency_id} disputes line(s) {', '.join(map(str, wanted))} of statement "
            f"{statement_id} revision {revision}: {reason}"
        )[:1000],
        ours={
            "statement_id": statement_id,
            "revision": revision,
            "lines": {str(n): ours[n].commission_minor for n in wanted},
            "commission_minor": ours_minor,
        },
        theirs=theirs,
        delta_minor=claimed_minor - ours_minor,
    )
    return (f"settlement_disputed:{statement_id}:{revision}", draft, agency_id, event_id, None)


async def on_arrival(
    conn: AsyncConnection,
    arrived: Sequence[tuple[str, int, AgencyEvent, bool]],
    *,
    now: datetime,
) -> list[MismatchRow]:
    """Apply the answers among ``arrived`` (agency id, event id, event, applied); refused
    ones change nothing. Returns the dispute mismatches for the caller to insert."""
    found: list[MismatchRow] = []
    for agency_id, event_id, event, _applied in arrived:
        if event.type not in ANSWER_TYPES or await event_problem(conn, agency_id, event):
            continue
        if isinstance(event, SettlementConfirmed):
            d = event.data
            await confirm_statement(conn, agency_id, d.statement_id, d.revision, d.sha256, now=now)
        elif isinstance(event, SettlementDisputed):
            dd = event.data
            found.append(
                await dispute_statement(
                    conn,
                    agency_id,
                    dd.statement_id,
                    dd.revision,
                    dd.line_nos,
                    reason=dd.reason,
                    claimed_minor=dd.claimed.amount_minor,
                    now=now,
                    event_id=event_id,
                )
            )
    return found


__all__ = [
    "ANSWER_TYPES",
    "MismatchRow",
    "Refusal",
    "confirm_statement",
    "dispute_statement",
    "event_problem",
    "on_arrival",
    "problem",
]
