"""Ops actions on a case from the console: put a hold on, release a hold, reopen, renew a
placement, approve or reject an escalation.

Theory of operation: each action runs in ONE transaction that does it through the case's
own service (gateway.cases.holds.CaseService, gateway.cases.expiry.ExpiryService,
gateway.cases.escalation.EscalationService, which record the case's history and their own
evidence) and appends an ``action`` evidence leaf about the case (``ref`` ``case:ID``) saying
which console user did what, why and what came of it, as mismatch actions are attested; a
refusal leaves nothing behind. Which actions a case offers is ``available``, a pure function
of what ``gateway.cases.views.case_detail`` returns. Operators and admins act; the page and
the JSON API (``POST /api/v1/cases/{id}/actions``) take the same fields.
"""

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.console.services import ConsoleServices
from gateway.errors import GatewayError, NotFound
from gateway.evidence.log import LeafInput, append_leaves_sequenced
from gateway.lifecycle import next_case_status
from gateway.store.case_tables import Escalation
from gateway.store.tables import Placement

PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
ESCALATIONS = Escalation.__table__  # type: ignore[attr-defined]

CASE_ACTIONS: Final = {
    "hold": "Put on hold",
    "release": "Release hold",
    "reopen": "Reopen",
    "renew": "Renew placement",
    "approve_escalation": "Approve escalation",
    "reject_escalation": "Reject escalation",
}
"""Action name → its label (the page's flash message says ``<label>: recorded``)."""
NOTE_OPTIONAL: Final = frozenset({"hold"})
"""Actions whose note may be empty (the hold's code says why); the others need one."""
_UNHOLDABLE: Final = frozenset({"closed", "written_off"})


@dataclass(frozen=True, slots=True)
class CaseActionRequest:
    """One case action as the form or the JSON body gives it."""

    action: str
    actor: str
    """The console user's name (the services record ``ops:NAME``)."""
    note: str | None = None
    code: str = ""
    placement_id: str = ""
    days: int | None = None
    escalation_id: int | None = None


def available(detail: Mapping[str, Any]) -> dict[str, Any]:
    """What the case allows now: ``hold`` (bool), ``release`` (active hold codes),
    ``reopen`` (bool), ``renew`` (open placement ids), ``escalations`` (proposed ids)."""
    status = detail["case"]["status"]
    return {
        "hold": status not in _UNHOLDABLE,
        "release": sorted({h["code"] for h in detail["holds"] if h["active"]}),
        "reopen": next_case_status(status, "reopen") is not None,
        "renew": [p["id"] for p in detail["placements"] if p["open"]],
        "escalations": [e["id"] for e in detail["escalations"] if e["state"] == "proposed"],
    }


def request_from(form: Mapping[str, str], actor: str) -> CaseActionRequest:
    """A request from form fields or a JSON body's strings; GatewayError when malformed."""

    def number(name: str) -> int | None:
        text = str(form.get(name, "")).strip()
        if not text:
            return None
        if not text.isdigit():
            raise GatewayError(f"{name}: {text!r} is not a whole number")
        return int(text)

    return CaseActionRequest(
        action=str(form.get("action", "")).strip(),
        actor=actor,
        note=str(form.get("note", "")).strip() or None,
        code=str(form.get("code", "")).strip(),
        placement_id=str(form.get("placement_id", "")).strip(),
        days=number("days"),
        escalation_id=number("escalation_id"),
    )


def _plain(outcome: Any) -> dict[str, Any]:
    """A service's outcome dataclass as JSON-ready data (days and times as ISO text)."""
    return {
        k: v.isoformat() if isinstance(v, date) else list(v) if isinstance(v, tuple) else v
        for k, v in asdict(outcome).items()
    }


async def _owner(conn: AsyncConnection, table: Any, key: object, what: str) -> str:
    found = (await conn.execute(sa.select(table.c.case_id).where(table.c.id == key))).first()
    if found is None:
        raise NotFound(f"{what} {key} does not exist")
    return str(found[0])


async def _effect(
    services: ConsoleServices,
    conn: AsyncConnection,
    case_id: str,
    request: CaseActionRequest,
    *,
    now: datetime,
) -> dict[str, Any]:
    """Do the action through its service; return what came of it."""
    actor, note = f"ops:{request.actor}", request.note
    name = request.action
    if name in ("hold", "release", "reopen"):
        if services.cases is None:
            raise GatewayError("this process cannot change holds (no case service)")
        if name == "reopen":
            status = await services.cases.reopen_in(conn, case_id, actor=actor, note=note, now=now)
            return {"status": status}
        if not request.code:
            raise GatewayError("code: name the hold (e.g. DISPUTE)")
        act = services.cases.hold_in if name == "hold" else services.cases.release_in
        return _plain(await act(conn, case_id, request.code, actor=actor, note=note, now=now))
    if name == "renew":
        if services.expiry is None:
            raise GatewayError("this process cannot renew placements (no expiry service)")
        if request.days is None:
            raise GatewayError("days: say by how many days to renew")
        if await _owner(conn, PLACEMENTS, request.placement_id, "placement") != case_id:
            raise GatewayError(f"placement {request.placement_id} is not case {case_id}'s")
        renewal = await services.expiry.renew_in(
            conn, request.placement_id, request.days, actor=actor, note=note, now=now
        )
        return _plain(renewal)
    if services.escalations is None:
        raise GatewayError("this process cannot decide escalations (no escalation service)")
    if request.escalation_id is None:
        raise GatewayError("escalation_id: name the escalation")
    if await _owner(conn, ESCALATIONS, request.escalation_id, "escalation") != case_id:
        raise GatewayError(f"escalation {request.escalation_id} is not case {case_id}'s")
    decide = (
        services.escalations.approve_in
        if name == "approve_escalation"
        else services.escalations.reject_in
    )
    view = await decide(conn, request.escalation_id, actor=actor, note=note, now=now)
    return _plain(view)


def check(request: CaseActionRequest) -> None:
    """GatewayError when the request is malformed, before anything is read."""
    if request.action not in CASE_ACTIONS:
        raise GatewayError(f"action: {request.action!r} is not one of {', '.join(CASE_ACTIONS)}")
    if request.note is None and request.action not in NOTE_OPTIONAL:
        raise GatewayError(f"note: say why ({CASE_ACTIONS[request.action].lower()})")


async def act(
    services: ConsoleServices, case_id: str, request: CaseActionRequest
) -> tuple[dict[str, Any], int]:
    """Do ``request`` on ``case_id`` and attest it, in one transaction; return what came of
    it and the seq of its ``action`` leaf. NotFound for an unknown case, placement or
    escalation; GatewayError for a malformed request (``check``) or an action the case does
    not allow (nothing is written)."""
    check(request)
    now = services.auth.now()
    async with services.db.transaction() as conn:
        details = await _effect(services, conn, case_id, request, now=now)
        [seq] = await append_leaves_sequenced(
            conn,
            [
                LeafInput(
                    kind="action",
                    ref=f"case:{case_id}",
                    fields={
                        "case_id": case_id,
                        "action": request.action,
                        "actor": request.actor,
                        "reason": request.note or "",
                        "details": details,
                        "at": now.isoformat(),
                    },
                )
            ],
            now=now,
        )
    return details, seq


__all__ = [
    "CASE_ACTIONS",
    "NOTE_OPTIONAL",
    "CaseActionRequest",
    "act",
    "available",
    "check",
    "request_from",
]
