"""The demo's waivers: an agency asks for two (减免), the lender approves one and rejects the
other (``waiver_act``).

A webhook agency holding at least two worked placements signs two ``waiver.requested``
events with its sandbox keys; they go through the real inbound service like any agency's
events. A demo operator approves the first (a tenth of the balance, within the operator's
``[concessions.limits]``) and rejects the second with a reason; both decisions queue a
``request.decided`` packet the next dispatch delivers to the agency.
"""

import hashlib
import json
from dataclasses import dataclass

import sqlalchemy as sa

from gateway.bootstrap import Gateway
from gateway.clock import to_datetime
from gateway.concessions.requests import RequestRecord
from gateway.config.agencies import WebhookAgency
from gateway.keys import sandbox_keys
from gateway.signing import sign
from gateway.store.tables import Placement

PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
P = PLACEMENTS.c
WORKED = ("acknowledged", "active")
REJECT_REASON = "the debtor has assets: collect in full"


@dataclass(frozen=True, slots=True)
class DemoPerson:
    name: str
    role: str


DEMO_OPERATOR = DemoPerson("demo_operator", "operator")


@dataclass(frozen=True, slots=True)
class ConcessionAct:
    """What the act did: the approved and the rejected request (None when no webhook
    agency had two worked placements)."""

    agency_id: str | None
    approved: RequestRecord | None
    rejected: RequestRecord | None


async def post_event(
    gateway: Gateway, agency: WebhookAgency, event_type: str, data: dict[str, object]
) -> int:
    """Sign ``event_type`` with the sandbox agency's inbound key and hand it to the gateway's
    inbound service, as the agency's webhook would; the HTTP status it is answered with."""
    _verify, signing = sandbox_keys(agency, gateway.settings.base_dir)
    now = to_datetime(gateway.clock.now())
    body = json.dumps({"type": event_type, "timestamp": now.isoformat(), "data": data}).encode()
    msg_id = "demo_" + hashlib.sha256(body).hexdigest()[:24]
    ts = int(gateway.clock.now())
    headers = [
        ("content-type", "application/json"),
        ("webhook-id", msg_id),
        ("webhook-timestamp", str(ts)),
        ("webhook-signature", sign(msg_id, ts, body, signing)),
    ]
    return (await gateway.inbound.receive(agency.id, headers, body)).status


async def waiver_act(gateway: Gateway, *, person: DemoPerson = DEMO_OPERATOR) -> ConcessionAct:
    """Two waiver requests from the first webhook agency with two worked placements: one
    approved, one rejected (see the module docstring). The gateway's inbound service must be
    started."""
    for agency in gateway.agencies.values():
        if not isinstance(agency, WebhookAgency):
            continue
        async with gateway.db.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(P.id, P.balance_minor, P.currency)
                    .where(P.agency_id == agency.id, P.state.in_(WORKED))
                    .order_by(P.id)
                    .limit(2)
                )
            ).all()
        if len(rows) < 2:
            continue
        stamp = f"{to_datetime(gateway.clock.now()):%Y%m%d}"
        refs = []
        for n, (pid, balance, currency) in enumerate(rows, 1):
            request_id = f"DEMO-W{stamp}-{n}"
            status = await post_event(
                gateway,
                agency,
                "waiver.requested",
                {
                    "placement_id": pid,
                    "request_id": request_id,
                    "waive_amount": {
                        "amount_minor": max(min(balance // 10, 100_000), 1),
                        "currency": currency,
                    },
                    "reason": "debtor lost their job; can settle the rest this month",
                },
            )
            if status != 200:
                raise RuntimeError(f"the demo's waiver request on {pid} was answered {status}")
            refs.append(f"{agency.id}/{request_id}")
        service = gateway.concessions()
        approved = await service.decide(refs[0], approve=True, person=person, reason="demo")
        rejected = await service.decide(refs[1], approve=False, person=person, reason=REJECT_REASON)
        return ConcessionAct(agency.id, approved, rejected)
    return ConcessionAct(None, None, None)


__all__ = ["DEMO_OPERATOR", "ConcessionAct", "DemoPerson", "post_event", "waiver_act"]
