"""Resolutions: ops actions on mismatches that take effect, each in one transaction.

Theory of operation
-------------------
The rules (which action applies when, what accepting a figure means) are pure, in
gateway.resolutions.rules. An action here runs in ONE transaction: re-read the mismatch and
the records it points at (gateway.resolutions.facts; locked on PostgreSQL, SQLite's
``BEGIN IMMEDIATE`` serialises writers), ask ``refusal`` again (a page drawn before someone
else acted cannot act twice), apply the effect, move the state, write the audit row and
append an ``action`` evidence leaf with who, why and what changed. Effects:

* ``accept``: our placement record takes the agency's figure (``ACCEPT_RULES``);
* ``resend``: the dead or unknown packet goes back to the outbox with the same dedupe key
  (the agency deduplicates on it); the mismatch's own dedupe key is released, so the same
  failure, if it recurs, raises a new mismatch instead of vanishing;
* ``recall``: the placement is recalled (queues ``placement.recalled``);
* ``amend``: the placement is restated to the agency (queues ``placement.amended`` with the
  next version, optionally with a new balance);
* ``assign`` and ``comment`` write their own rows; the others only move the state.

Four eyes: a ``write_off`` or an ``accept`` whose difference is above ``[four_eyes]``'s amount,
or a bulk ``recall`` of more mismatches than ``bulk_recall`` allows, is not applied; a pending
approval request is stored instead (after the action's transaction rolled back) and
ApprovalRequired names it. Once a second person approved it, the same action
with ``approval_id`` runs, after checking that the mismatch is still what was approved.

Bulk actions apply one action to a filtered set in chunks, each mismatch in its own
savepoint: one refusal does not undo the others, and each gets its own audit row and leaf.
"""

import hashlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.allocation.placements import PlacementService
from gateway.approvals import store as approvals
from gateway.approvals.rules import needs_second_person
from gateway.clock import to_datetime
from gateway.config.agencies import AgencyConfig, EmailAgency
from gateway.config.settings import FourEyesSection
from gateway.dispatch import outbox
from gateway.dispatch.packets import render_amended
from gateway.dispatch.queue import queue_packets
from gateway.errors import ApprovalRequired, GatewayError, NotFound, SettlementError
from gateway.evidence.log import LeafInput, append_leaves_sequenced
from gateway.ports import Clock, VouchedReplies
from gateway.resolutions.facts import count_matching, load_facts, select_ids
from gateway.resolutions.rules import (
    ACCEPT_RULES,
    ACTING_ROLES,
    ACTIONS,
    ActionRefused,
    ActionRequest,
    MismatchFacts,
    MismatchFilter,
    refusal,
)
from gateway.settlement import disputes as attribution_disputes
from gateway.store.console_tables import (
    ConsoleUser,
    MismatchAction,
    MismatchAssignment,
    MismatchComment,
)
from gateway.store.database import Database, dialect_insert
from gateway.store.tables import AgencyEventRow, Mismatch, Placement

MISMATCHES = Mismatch.__table__  # type: ignore[attr-defined]
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
EVENTS = AgencyEventRow.__table__  # type: ignore[attr-defined]
USERS = ConsoleUser.__table__  # type: ignore[attr-defined]
ACTIONS_TABLE = MismatchAction.__table__  # type: ignore[attr-defined]
ASSIGNMENTS = MismatchAssignment.__table__  # type: ignore[attr-defined]
COMMENTS = MismatchComment.__table__  # type: ignore[attr-defined]
M, P = MISMATCHES.c, PLACEMENTS.c

MAX_BULK: Final = 1000
_CHUNK = 100
_DECIDED: Final = frozenset({"resolved", "dismissed", "written_off"})
"""Mismatch states that end a dispute of attribution (its rows count again)."""


@dataclass(frozen=True, slots=True)
class ActionResult:
    mismatch_id: int
    action: str
    from_state: str
    to_state: str
    evidence_seq: int
    details: dict[str, Any]


@dataclass
class BulkResult:
    batch: str
    done: list[ActionResult] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)
    matched: int = 0
    truncated: bool = False
    total: int = 0
    """How many mismatches the target held; more than ``matched`` when truncated."""


FOUR_EYES_ACTIONS: dict[str, str] = {"write_off": "write_off", "accept": "accept_agency_figure"}
"""Mismatch action → its ``[four_eyes]`` rule."""


class _NeedsApproval(ApprovalRequired):
    """Raised inside the action's transaction; the request is stored after it rolls back."""

    def __init__(
        self,
        action: str,
        subject: str,
        payload: dict[str, object],
        amount_minor: int | None,
        currency: str | None,
    ) -> None:
        super().__init__(f"{subject}: {action} needs a second person")
        self.action, self.subject, self.payload = action, subject, payload
        self.amount_minor, self.currency = amount_minor, currency


class ResolutionService:
    """Applies ops actions to mismatches (see the module docstring).

    Args:
        db: the database.
        placements: recalls placements inside the action's transaction.
        agencies: agency configs by id (retry policy of queued packets).
        clock: time source.
        vouched_replies: reads a law firm's reply that ops vouches for (the email channel).
        four_eyes: when a write-off or an accepted agency figure needs a second person
            (gateway.approvals); None: never.
    """

    def __init__(
        self,
        *,
        db: Database,
        placements: PlacementService,
        agencies: Mapping[str, AgencyConfig],
        clock: Clock,
        vouched_replies: VouchedReplies,
        four_eyes: FourEyesSection | None = None,
    ) -> None:
        self._db = db
        self._placements = placements
        self._agencies = agencies
        self._clock = clock
        self._vouched_replies = vouched_replies
        self._four_eyes = four_eyes

    async def act(self, mismatch_id: int, request: ActionRequest) -> ActionResult:
        """Apply one action; raise NotFound, or ActionRefused saying why it cannot apply."""
        if request.action not in ACTIONS:
            raise ActionRefused(f"unknown action {request.action!r}; one of {', '.join(ACTIONS)}")
        now = to_datetime(self._clock.now())
        try:
            async with self._db.transaction() as conn:
                await self._check_actor(conn, request.actor)
                return await self._act(conn, mismatch_id, request, now=now, batch=None)
        except _NeedsApproval as need:
            raise await self._ask(need, request.actor, now=now) from None

    async def bulk(
        self, target: MismatchFilter, request: ActionRequest, *, limit: int = MAX_BULK
    ) -> BulkResult:
        """Apply one action to every mismatch in ``target`` (at most ``limit``)."""
        if request.action not in ACTIONS:
            raise ActionRefused(f"unknown action {request.action!r}; one of {', '.join(ACTIONS)}")
        result = BulkResult(batch=secrets.token_hex(8))
        needs: list[tuple[int, _NeedsApproval]] = []
        async with self._db.snapshot() as conn:
            ids = await select_ids(conn, target, min(limit, MAX_BULK) + 1)
            result.total = await count_matching(conn, target)
        result.truncated = len(ids) > min(limit, MAX_BULK)
        ids = ids[: min(limit, MAX_BULK)]
        result.matched = len(ids)
        await self._bulk_recall_gate(ids, request)
        for start in range(0, len(ids), _CHUNK):
            now = to_datetime(self._clock.now())
            async with self._db.transaction() as conn:
                await self._check_actor(conn, request.actor)
                for mismatch_id in ids[start : start + _CHUNK]:
                    try:
                        async with conn.begin_nested():
                            done = await self._act(
                                conn, mismatch_id, request, now=now, batch=result.batch
                            )
                    except _NeedsApproval as need:
                        needs.append((mismatch_id, need))
                    except GatewayError as exc:
                        result.refused[mismatch_id] = str(exc)
                    else:
                        result.done.append(done)
            for mismatch_id, wanted in needs:
                result.refused[mismatch_id] = str(await self._ask(wanted, request.actor, now=now))
            needs.clear()
        return result

    async def _bulk_recall_gate(self, ids: list[int], request: ActionRequest) -> None:
        """Four eyes on recalling many placements at once (``[four_eyes] bulk_recall``): run
        under the approval the request names, for exactly these mismatches, or ask for one."""
        if request.action != "recall" or self._four_eyes is None:
            return
        now = to_datetime(self._clock.now())
        payload: dict[str, object] = {
            "action": "recall",
            "mismatches": ids,
            "recall_code": request.recall_code,
        }
        if request.approval_id is not None:
            async with self._db.transaction() as conn:
                await approvals.execute(
                    conn,
                    request.approval_id,
                    action="bulk_recall",
                    payload=payload,
                    now=now,
                    by=request.actor,
                )
        elif needs_second_person(self._four_eyes, "bulk_recall", len(ids)):
            need = _NeedsApproval("bulk_recall", "mismatches:recall", payload, None, None)
            raise await self._ask(need, request.actor, now=now, count=len(ids))

    async def _ask(
        self, need: "_NeedsApproval", maker: str, *, now: datetime, count: int = 1
    ) -> ApprovalRequired:
        """Store the request a second person must approve; the error that names it."""
        async with self._db.transaction() as conn:
            approval = await approvals.request(
                conn,
                action=need.action,
                subject=need.subject,
                payload=need.payload,
                maker=maker,
                now=now,
                count=count,
                amount_minor=need.amount_minor,
                currency=need.currency,
            )
        size = (
            f"{count} placements"
            if need.amount_minor is None
            else f"{need.amount_minor} minor units"
        )
        return ApprovalRequired(
            f"{need.subject}: {need.action} of {size} needs a second person: approval "
            f"#{approval.id} is pending; once another user approved it, act again with "
            f"approval {approval.id}",
            approval_id=approval.id,
        )

    async def _check_actor(self, conn: AsyncConnection, name: str) -> None:
        row = (
            await conn.execute(
                sa.select(USERS.c.role, USERS.c.disabled).where(USERS.c.name == name)
            )
        ).first()
        if row is None or row.disabled:
            raise ActionRefused(f"{name!r} is not an active console user (see `users add`)")
        if row.role not in ACTING_ROLES:
            raise ActionRefused(f"{name} is a {row.role}; only operators and admins act")

    async def _act(
        self,
        conn: AsyncConnection,
        mismatch_id: int,
        request: ActionRequest,
        *,
        now: datetime,
        batch: str | None,
    ) -> ActionResult:
        if conn.dialect.name == "postgresql":
            await conn.execute(sa.select(M.id).where(M.id == mismatch_id).with_for_update())
        facts = (await load_facts(conn, [mismatch_id])).get(mismatch_id)
        if facts is None:
            raise NotFound(f"mismatch {mismatch_id} does not exist")
        spec = ACTIONS[request.action]
        why_not = refusal(spec, facts, request)
        if why_not is not None:
            raise ActionRefused(f"mismatch {mismatch_id}: {why_not}")
        await self._second_person(conn, facts, request, now=now)
        details = await self._effect(conn, facts, request, now=now)
        to_state = spec.to_state or facts.state
        values: dict[str, object] = {"state": to_state, "updated_at": now}
        if spec.name == "resend":
            # Free the key (<= 128 chars) so the same failure, if it recurs, is raised again.
            suffix = f"#r{mismatch_id}@{now:%Y%m%d%H%M%S}"
            values["dedupe_key"] = sa.func.substr(M.dedupe_key, 1, 100) + suffix
        await conn.execute(MISMATCHES.update().where(M.id == mismatch_id).values(**values))
        if spec.name == "comment":
            row_id = await _insert_returning_id(
                conn,
                COMMENTS,
                {
                    "mismatch_id": mismatch_id,
                    "author": request.actor,
                    "body": request.reason,
                    "evidence_seq": -1,
                    "created_at": now,
                },
            )
            table, ref_field = COMMENTS, "comment_id"
        else:
            row_id = await _insert_returning_id(
                conn,
                ACTIONS_TABLE,
                {
                    "mismatch_id": mismatch_id,
                    "action": spec.name,
                    "actor": request.actor,
                    "reason": request.reason[:1000],
                    "from_state": facts.state,
                    "to_state": to_state,
                    "details": json.dumps(details, sort_keys=True, default=str),
                    "batch": batch,
                    "evidence_seq": -1,
                    "created_at": now,
                },
            )
            table, ref_field = ACTIONS_TABLE, "action_id"
        [seq] = await append_leaves_sequenced(
            conn,
            [
                LeafInput(
                    kind="action",
                    ref=f"mismatch:{mismatch_id}",
                    fields={
                        ref_field: row_id,
                        "mismatch_id": mismatch_id,
                        "action": spec.name,
                        "actor": request.actor,
                        "reason": request.reason if spec.name != "comment" else "",
                        "from_state": facts.state,
                        "to_state": to_state,
                        "details": details,
                        "at": now.isoformat(),
                    },
                )
            ],
            now=now,
        )
        await conn.execute(table.update().where(table.c.id == row_id).values(evidence_seq=seq))
        return ActionResult(mismatch_id, spec.name, facts.state, to_state, seq, details)

    async def _second_person(
        self, conn: AsyncConnection, f: MismatchFacts, request: ActionRequest, *, now: datetime
    ) -> None:
        """Four eyes on write-offs and accepted figures above ``[four_eyes]``'s amount: run
        under the approval the request names (it must match), or ask for one."""
        action = FOUR_EYES_ACTIONS.get(request.action)
        if action is None or self._four_eyes is None:
            return
        amount = abs(f.delta_minor or 0)
        payload = {
            "mismatch": f.id,
            "action": request.action,
            "kind": f.kind,
            "placement": f.placement_id,
            "delta_minor": f.delta_minor,
            "currency": f.currency,
        }
        if request.approval_id is not None:
            await approvals.execute(
                conn, request.approval_id, action=action, payload=payload, now=now, by=request.actor
            )
        elif needs_second_person(self._four_eyes, action, amount):
            raise _NeedsApproval(action, f"mismatch:{f.id}", payload, amount, f.currency)

    async def _effect(
        self, conn: AsyncConnection, f: MismatchFacts, request: ActionRequest, *, now: datetime
    ) -> dict[str, Any]:
        """Do what the action does besides the state change; return what changed."""
        name = request.action
        if name == "accept" and f.kind == "attribution_disputed":
            return await _move_attribution(conn, f, request, now=now)
        if name == "accept":
            if f.inbound_id is not None:
                return await self._vouch(conn, f, now=now)
            return await _accept(conn, f, now=now)
        if name == "resend":
            requeued = await outbox.requeue(conn, list(f.resendable), now=now)
            if requeued != len(f.resendable):
                raise ActionRefused(f"mismatch {f.id}: the packet changed state; reload and retry")
            return {"requeued_outbox_ids": list(f.resendable)}
        if name == "recall":
            assert f.case_id is not None
            placement_id = await self._placements.recall_in(
                conn, f.case_id, request.recall_code, now=now
            )
            return {"recalled_placement_id": placement_id, "recall_code": request.recall_code}
        if name == "amend":
            return await self._amend(conn, f, request, now=now)
        if name == "assign":
            return await _assign(conn, f, request, now=now)
        if name == "comment":
            return {"comment_sha256": _sha256(request.reason)}
        if f.kind == "attribution_disputed" and ACTIONS[name].to_state in _DECIDED:
            return {"released_attributions": await attribution_disputes.release_decided(conn, f.id)}
        return {}

    async def _vouch(
        self, conn: AsyncConnection, f: MismatchFacts, *, now: datetime
    ) -> dict[str, Any]:
        """Accepting an unverified reply: ops vouches for it; it is read like a signed one."""
        agency = self._agencies.get(f.agency_id)
        if not isinstance(agency, EmailAgency) or agency.email.imap is None:
            raise ActionRefused(f"mismatch {f.id}: {f.agency_id} has no mailbox we read")
        assert f.inbound_id is not None
        kind, detail, events = await self._vouched_replies.read(conn, agency, f.inbound_id, now=now)
        if not events:
            raise ActionRefused(f"mismatch {f.id}: nothing in the reply can be applied: {detail}")
        return {"inbound_id": f.inbound_id, "events_applied": events, "read_as": kind}

    async def _amend(
        self, conn: AsyncConnection, f: MismatchFacts, request: ActionRequest, *, now: datetime
    ) -> dict[str, Any]:
        assert f.placement_id and f.case_id and f.currency and f.version is not None
        assert f.balance_minor is not None
        balance = f.balance_minor if request.balance_minor is None else request.balance_minor
        version = f.version + 1
        packet = render_amended(
            agency_id=f.agency_id,
            placement_id=f.placement_id,
            case_id=f.case_id,
            version=version,
            balance_minor=balance,
            previous_balance_minor=f.balance_minor,
            currency=f.currency,
            reason=request.reason.strip()[:200],
            at=now,
        )
        changed = await conn.execute(
            PLACEMENTS.update()
            .where(P.id == f.placement_id, P.version == f.version)
            .values(version=version, balance_minor=balance, updated_at=now)
        )
        if changed.rowcount != 1:
            raise ActionRefused(f"placement {f.placement_id} changed meanwhile; reload and retry")
        await queue_packets(conn, [(self._agencies[f.agency_id], f.placement_id, packet)], now=now)
        return {
            "placement_id": f.placement_id,
            "version": version,
            "balance_minor": {"before": f.balance_minor, "after": balance},
            "packet_dedupe_key": packet.dedupe_key,
        }


async def _move_attribution(
    conn: AsyncConnection, f: MismatchFacts, request: ActionRequest, *, now: datetime
) -> dict[str, Any]:
    """Accepting an attribution dispute moves the receipt's unsettled shares to the
    placement the agency named (or the request's ``placement_id``)."""
    found = await attribution_disputes.disputed_receipt(conn, f.id)
    if found is None:
        raise ActionRefused(f"mismatch {f.id}: the dispute names no receipt to move")
    receipt, claimed = found
    try:
        moved = await attribution_disputes.move_share(
            conn,
            receipt,
            to_placement_id=request.placement_id or claimed,
            reason=request.reason,
            actor=request.actor,
            now=now,
        )
    except SettlementError as exc:
        raise ActionRefused(f"mismatch {f.id}: {exc}") from None
    return moved.as_dict()


async def _accept(conn: AsyncConnection, f: MismatchFacts, *, now: datetime) -> dict[str, Any]:
    adjustment = ACCEPT_RULES[f.kind](f)
    assert adjustment is not None and f.placement_id is not None
    values: dict[str, object] = {"updated_at": now}
    details: dict[str, Any] = {"placement_id": f.placement_id}
    if adjustment.balance_minor is not None:
        values["balance_minor"] = adjustment.balance_minor
        details["balance_minor"] = {"before": f.balance_minor, "after": adjustment.balance_minor}
    if adjustment.collected_minor is not None:
        values["collected_minor"] = adjustment.collected_minor
        details["collected_minor"] = {
            "before": f.collected_minor,
            "after": adjustment.collected_minor,
        }
    # Guarded by the figures we decided on: a concurrent change makes this a refusal.
    changed = await conn.execute(
        PLACEMENTS.update()
        .where(
            P.id == f.placement_id,
            P.balance_minor == f.balance_minor,
            P.collected_minor == f.collected_minor,
        )
        .values(**values)
    )
    if changed.rowcount != 1:
        raise ActionRefused(f"placement {f.placement_id} changed meanwhile; reload and retry")
    if adjustment.apply_event and f.event_id is not None:
        await conn.execute(EVENTS.update().where(EVENTS.c.id == f.event_id).values(applied=True))
        details["applied_event_id"] = f.event_id
    return details


async def _assign(
    conn: AsyncConnection, f: MismatchFacts, request: ActionRequest, *, now: datetime
) -> dict[str, Any]:
    assignee = (request.assignee or "").strip()
    await conn.execute(ASSIGNMENTS.delete().where(ASSIGNMENTS.c.mismatch_id == f.id))
    if assignee:
        known = (
            await conn.execute(
                sa.select(USERS.c.id).where(USERS.c.name == assignee, USERS.c.disabled.is_(False))
            )
        ).first()
        if known is None:
            raise ActionRefused(f"{assignee!r} is not an active console user")
        await conn.execute(
            dialect_insert(conn, ASSIGNMENTS).values(
                mismatch_id=f.id, assignee=assignee, assigned_by=request.actor, assigned_at=now
            )
        )
    return {"assignee": {"before": f.assignee, "after": assignee or None}}


async def _insert_returning_id(
    conn: AsyncConnection, table: sa.Table, row: dict[str, object]
) -> int:
    return int((await conn.execute(table.insert().returning(table.c.id), [row])).scalar_one())


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


__all__ = [
    "MAX_BULK",
    "ActionResult",
    "BulkResult",
    "ResolutionService",
]
