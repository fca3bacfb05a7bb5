"""The sandbox agency's script: what a simulated agency reports for each placement (pure).

``EventPlanner`` has no sockets and no clock of its own. Accepted packets go in. For a new
placement it writes a *script*, a queue of ``Step``s drawn from ``seed`` and the placement id
alone, so the same seed always gives the same script. ``next_event`` renders the next step into
the exact bytes of one agency event, reading the case's state at that moment: an amendment, a
direct payment or a recall that arrives before a step is sent changes what the step says, or
drops it; a deletion request drops what is left and is answered with ``data.deleted``. An
expiry warning is noted on the case (``warned_for``) and changes nothing else; a renewal (an
amendment with ``return_by``) moves the case's end date.
Honest steps never report more money than the agency believes is outstanding.

Faults: with probability ``fault_rate`` a placement's script gets one event from
``PLACEMENT_FAULTS``, and with the same probability a recall is followed by a payment
(``activity_after_recall``). Faulty events are schema-valid; their meaning is wrong, and the
gateway's reconciliation must catch every one.
"""

import hashlib
import json
import random
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Final, Literal

from gateway.config.settings import ReconciliationSection
from gateway.reconciliation.contact_rules import ContactRules
from schemas.events import ContactChannel, ContactOutcome
from schemas.packets import (
    CasePacket,
    DataDeletionRequested,
    PaymentAttributed,
    PaymentDirect,
    PlacementAmended,
    PlacementCreated,
    PlacementCreatedData,
    PlacementExpiring,
    RequestDecided,
    SettlementStatement,
)

FaultKind = Literal[
    "unknown_placement",
    "over_payment",
    "conflicting_duplicate",
    "ack_balance_differs",
    "currency_mismatch",
    "activity_after_recall",
]
PLACEMENT_FAULTS: Final[tuple[FaultKind, ...]] = (
    "unknown_placement",
    "over_payment",
    "conflicting_duplicate",
    "ack_balance_differs",
    "currency_mismatch",
)
"""Faults planned with a new placement; ``activity_after_recall`` is planned on a recall."""

StepKind = Literal["ack", "contact", "promise", "payment", "return", "close", "delete"]
_CHANNELS: Final[tuple[ContactChannel, ...]] = ("call", "call", "sms", "app", "visit")
_MISSES: Final[tuple[ContactOutcome, ...]] = ("no_answer", "left_message", "wrong_number")
LENDER_RULES: Final = ContactRules.from_settings(ReconciliationSection())
"""The gateway's default ``[reconciliation]`` contact rules (quiet hours 22:00-08:00)."""
_OUTCOMES: Final = ("paid", "partial", "returned", "open")
_OUTCOME_WEIGHTS: Final = (30, 30, 15, 25)
_FAULT_STEP: Final[dict[FaultKind, StepKind]] = {
    "unknown_placement": "payment",
    "over_payment": "payment",
    "conflicting_duplicate": "ack",
    "currency_mismatch": "payment",
    "activity_after_recall": "payment",
}
_EVENT_TYPES: Final[dict[StepKind, str]] = {
    "ack": "placement.acknowledged",
    "contact": "contact.attempted",
    "promise": "promise.made",
    "payment": "payment.reported",
    "return": "case.returned",
    "close": "case.closed",
    "delete": "data.deleted",
}


def _token(text: str) -> str:
    """A piece of a webhook-id: ids may not contain '.', and must stay under 255 characters."""
    if "." in text or len(text) > 48:
        return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
    return text


def _excess(amount: int) -> int:
    return max(1, amount // 10)


def _money(amount: int, currency: str) -> dict[str, object]:
    return {"amount_minor": amount, "currency": currency}


@dataclass(frozen=True, slots=True)
class Step:
    """One scripted event of a case. Amounts are ``share`` percent of what is outstanding
    when the step is rendered (100 = all of it)."""

    kind: StepKind
    share: int = 0
    channel: ContactChannel = "call"
    outcome: ContactOutcome = "no_answer"
    days: int = 0
    fault: FaultKind | None = None


@dataclass(slots=True)
class CaseFile:
    """The agency's own record of one placement."""

    placement_id: str
    case_id: str
    debtor_id: str
    currency: str
    loaded_balance: int
    balance: int
    token: str
    agency_case_ref: str
    collected: int = 0
    credited: int = 0
    recalled: bool = False
    rendered: int = 0
    ack_event_id: str | None = None
    scripted: bool = False
    return_by: date | None = None
    warned_for: date | None = None
    """The ``return_by`` of the last expiry warning received."""
    decisions: dict[str, str] = field(default_factory=dict)
    """request id → the lender's decision on it (``request.decided``)."""
    steps: deque[Step] = field(default_factory=deque)

    @property
    def outstanding(self) -> int:
        return self.balance - self.collected - self.credited

    @property
    def remaining(self) -> int:
        """Steps still to render; a case not yet scripted counts as one."""
        return len(self.steps) + (not self.scripted)


@dataclass(frozen=True, slots=True)
class PlannedEvent:
    """One event ready for the wire: ``body`` is sent and signed byte for byte."""

    event_id: str
    placement_id: str
    type: str
    body: bytes
    fault: FaultKind | None = None
    expect_conflict: bool = False


class EventPlanner:
    """Pure planner: ``on_packet`` updates case files and scripts, ``next_event`` renders.

    Contacts are capped per debtor (``max_contacts_per_debtor``) so that a debtor holding
    several accounts at this agency does not trip the gateway's contact rules by accident,
    and inside the quiet hours of ``rules`` a planned call, text, visit or app message goes
    out as an email: the agency keeps the rules, whatever the time of day the sandbox runs.
    """

    def __init__(
        self,
        *,
        agency_id: str,
        seed: int,
        fault_rate: float,
        max_contacts_per_debtor: int = 3,
        rules: ContactRules = LENDER_RULES,
    ) -> None:
        self.agency_id = agency_id
        self.rules = rules
        self.seed = seed
        self.fault_rate = fault_rate
        self.max_contacts_per_debtor = max_contacts_per_debtor
        self.cases: dict[str, CaseFile] = {}
        self._agency_token = _token(agency_id)
        self._contacts: Counter[str] = Counter()

    def _rng(self, placement_id: str, salt: str) -> random.Random:
        # A str seed is hashed with SHA-512, so this is stable across processes and runs.
        return random.Random(f"{self.seed}|{self.agency_id}|{placement_id}|{salt}")

    def on_packet(self, packet: CasePacket) -> CaseFile | None:
        """Apply one accepted packet; return the case it concerns, or None if unknown."""
        if isinstance(packet, PlacementCreated):
            return self._created(packet.data)
        if isinstance(packet, SettlementStatement):
            return None  # an agency-wide statement, about no one case
        case = self.cases.get(packet.data.placement_id)
        if case is None:
            return None
        if isinstance(packet, PlacementAmended):
            case.balance = packet.data.balance.amount_minor
            if packet.data.return_by is not None:
                case.return_by = packet.data.return_by
        elif isinstance(packet, PlacementExpiring):
            case.warned_for = packet.data.return_by
        elif isinstance(packet, PaymentDirect):
            case.credited += packet.data.amount.amount_minor
        elif isinstance(packet, PaymentAttributed):
            pass  # commission news on an ended placement: nothing left to work
        elif isinstance(packet, RequestDecided):
            case.decisions[packet.data.request_id] = packet.data.decision
        elif isinstance(packet, DataDeletionRequested):
            # The case is over: whatever was still scripted is dropped, the data erased.
            case.scripted = True
            case.steps.clear()
            case.steps.append(Step("delete"))
        elif not case.recalled:  # PlacementRecalled, the remaining member
            case.recalled = True
            case.scripted = True
            case.steps.clear()
            if self._rng(case.placement_id, "recall").random() < self.fault_rate:
                case.steps.append(Step("payment", share=20, fault="activity_after_recall"))
        return case

    def _created(self, data: PlacementCreatedData) -> CaseFile | None:
        if data.placement_id in self.cases:
            return None
        token = _token(data.placement_id)
        ref = hashlib.blake2b(f"{self.agency_id}|{data.placement_id}".encode(), digest_size=6)
        case = CaseFile(
            placement_id=data.placement_id,
            case_id=data.case_id,
            debtor_id=data.debtor.debtor_id,
            currency=data.balance.currency,
            loaded_balance=data.balance.amount_minor,
            balance=data.balance.amount_minor,
            token=token,
            agency_case_ref="AC-" + ref.hexdigest().upper(),
            return_by=data.return_by,
        )
        self.cases[data.placement_id] = case
        return case

    def _script(self, placement_id: str) -> list[Step]:
        rng = self._rng(placement_id, "script")
        outcome = rng.choices(_OUTCOMES, weights=_OUTCOME_WEIGHTS)[0]
        steps = [Step("ack")]
        for _ in range(rng.randint(1, 3)):
            reached = rng.random() < 0.4
            miss = rng.choice(_MISSES)
            steps.append(
                Step(
                    "contact", channel=rng.choice(_CHANNELS), outcome="reached" if reached else miss
                )
            )
        if outcome in ("paid", "partial") and rng.random() < 0.5:
            steps.append(Step("promise", share=rng.choice((30, 50, 100)), days=rng.randint(3, 30)))
        if outcome == "paid":
            steps += [Step("payment", share=rng.randint(20, 60)) for _ in range(rng.randint(0, 2))]
            steps += [Step("payment", share=100), Step("close")]
        elif outcome == "partial":
            steps.append(Step("payment", share=rng.randint(10, 60)))
        elif outcome == "returned":
            steps.append(Step("return"))
        if rng.random() < self.fault_rate:
            kind = rng.choice(PLACEMENT_FAULTS)
            if kind == "ack_balance_differs":
                steps[0] = Step("ack", fault=kind)
            else:
                # After the acknowledgement, before a closing or returning step.
                last = len(steps) - 1 if outcome in ("paid", "returned") else len(steps)
                steps.insert(rng.randint(1, last), Step(_FAULT_STEP[kind], share=20, fault=kind))
        return steps

    def next_event(self, case: CaseFile, now: datetime) -> PlannedEvent | None:
        """Render the case's next step that still makes sense; None when the script ran out.

        Steps that became moot (a payment with nothing left to pay, for instance) are
        consumed silently. The script itself is written on the first call, which keeps that
        work off the path that receives packets.
        """
        if not case.scripted:
            case.steps.extend(self._script(case.placement_id))
            case.scripted = True
        while case.steps:
            event = self._render(case, case.steps.popleft(), now)
            if event is not None:
                return event
        return None

    def _render(self, case: CaseFile, step: Step, now: datetime) -> PlannedEvent | None:
        data = self._data(case, step, now)
        if data is None:
            return None
        etype = _EVENT_TYPES[step.kind]
        envelope = {"type": etype, "timestamp": now.isoformat(), "data": data}
        body = json.dumps(envelope, separators=(",", ":")).encode()
        if step.fault == "conflicting_duplicate" and case.ack_event_id is not None:
            return PlannedEvent(case.ack_event_id, case.placement_id, etype, body, step.fault, True)
        event_id = f"evt_{self._agency_token}_{case.token}_{case.rendered}"
        case.rendered += 1
        if step.kind == "ack":
            case.ack_event_id = event_id
        return PlannedEvent(event_id, case.placement_id, etype, body, step.fault)

    def _data(self, case: CaseFile, step: Step, now: datetime) -> dict[str, object] | None:
        """The ``data`` member of a step's event, or None when the step is moot."""
        pid, out, seq, currency = case.placement_id, case.outstanding, case.rendered, case.currency
        if step.kind == "ack":
            if step.fault == "conflicting_duplicate" and case.ack_event_id is None:
                return None
            ref = case.agency_case_ref + ("-R" if step.fault == "conflicting_duplicate" else "")
            extra = _excess(case.loaded_balance) if step.fault == "ack_balance_differs" else 0
            balance = _money(case.loaded_balance + extra, currency)
            return {"placement_id": pid, "agency_case_ref": ref, "balance": balance}
        if step.kind == "contact":
            if self._contacts[case.debtor_id] >= self.max_contacts_per_debtor:
                return None
            self._contacts[case.debtor_id] += 1
            if self.rules.quiet_at(now, step.channel):
                channel, outcome = "email", "left_message"
            else:
                channel, outcome = step.channel, step.outcome
            return {
                "placement_id": pid,
                "channel": channel,
                "outcome": outcome,
                "attempted_at": now.isoformat(),
                "effective": outcome == "reached",
            }
        if step.kind == "promise":
            amount = out * step.share // 100
            if amount <= 0:
                return None
            return {
                "placement_id": pid,
                "promise_id": f"prm_{case.token}_{seq}",
                "amount": _money(amount, currency),
                "promised_date": (now + timedelta(days=step.days)).date().isoformat(),
            }
        if step.kind == "payment":
            payment = self._payment(case, step, out)
            if payment is None:
                return None
            return {
                "placement_id": payment[0],
                "payment_id": f"pay_{case.token}_{seq}",
                "amount": _money(payment[1], payment[2]),
                "paid_at": now.isoformat(),
            }
        if step.kind == "delete":
            return {"placement_id": pid, "method": "deleted", "reference": f"DEL-{case.token}"}
        if step.kind == "return":
            balance = _money(max(out, 0), currency)
            return {"placement_id": pid, "reason": "uncollectable", "balance": balance}
        return None if out > 0 else {"placement_id": pid, "reason": "paid_in_full"}

    def _payment(self, case: CaseFile, step: Step, out: int) -> tuple[str, int, str] | None:
        """(placement id, amount, currency) of a payment step, or None if nothing is owed."""
        if step.fault is None:
            amount = out * step.share // 100
            if amount <= 0:
                return None
            case.collected += amount
            return case.placement_id, amount, case.currency
        if step.fault == "over_payment":
            amount = max(out, 0) + _excess(case.balance)
            case.collected += amount
            return case.placement_id, amount, case.currency
        amount = max(1, case.loaded_balance * step.share // 100)
        if step.fault == "unknown_placement":
            return f"ghost_{case.token}", amount, case.currency
        if step.fault == "currency_mismatch":
            return case.placement_id, amount, "CNY" if case.currency == "USD" else "USD"
        return case.placement_id, amount, case.currency


def plan_placement(
    packet: PlacementCreated, *, agency_id: str, seed: int, fault_rate: float, now: datetime
) -> list[PlannedEvent]:
    """Every event a fresh agency would send for one placement if nothing else arrived."""
    planner = EventPlanner(agency_id=agency_id, seed=seed, fault_rate=fault_rate)
    case = planner.on_packet(packet)
    events: list[PlannedEvent] = []
    while case is not None and (event := planner.next_event(case, now)) is not None:
        events.append(event)
    return events


__all__ = [
    "LENDER_RULES",
    "PLACEMENT_FAULTS",
    "CaseFile",
    "EventPlanner",
    "FaultKind",
    "PlannedEvent",
    "Step",
    "plan_placement",
]
