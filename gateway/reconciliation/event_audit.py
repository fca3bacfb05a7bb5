"""The batch check of stored agency events against our placements (pure, set-based).

Theory of operation
-------------------
``gateway.reconciliation.event_rules.assess`` judges each event as it arrives. This module
re-derives the same judgements for a whole period from the stored facts, as a hash join: placements
are a dict keyed by id, events stream past in id order, and each placement keeps a small
state (payments by ref, amount collected, the status the agency reported). Nothing
compares every event with every placement.

Rules, in order (the first of 1-4 that fires refuses the event; 5-9 are raised on events
that are applied), with the incremental rule each one mirrors:

1. ``unknown_placement``: the placement does not exist.
2. ``wrong_agency``: another agency holds it.
3. ``currency_mismatch``: an amount in another currency.
4. ``activity_after_recall``: work that *happened* after our recall took effect (times, not
   arrival order: a payment collected before the recall but reported after it is fine).
5. ``conflicting_duplicate``: a payment ref reported again with another amount (refused);
   the same amount again is a harmless repeat.
6. ``unmatched_reversal``: a reversal of an unknown payment or of more than was paid.
7. ``over_collection``: payments so far exceed the balance placed.
8. ``date_out_of_window``: a payment dated before the placement, or a day after the report.
9. ``status_conflict``: a payment on a case the agency reported disputed; a close as paid in
   full with less collected than placed; a return "recalled" that we never recalled.

Breaks carry the dedupe key ``<kind>:event:<event id>``, the key the incremental path uses,
so a batch run never raises what arrival already raised. ``illegal_transition`` and
``ack_balance_differs`` depend on the order of our own actions and stay incremental.

``EventAudit.feed`` takes events in chunks and may be told not to emit: a resumed run
replays the events before its checkpoint to rebuild the state, then emits from there on.

The batch engine runs these rules as set-based queries in DuckDB
(gateway.reconciliation.columnar); this module is their pure reference, the specification
those queries are tested against (tests/integration/test_recon_columnar.py).
"""

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from gateway.lifecycle import ACTIVITY_EVENTS, AGENCY_WIDE_EVENTS
from gateway.reconciliation.event_rules import PLACEMENT_DATE_GRACE
from gateway.reconciliation.kinds import MismatchDraft
from gateway.reconciliation.match_inputs import AgencyPayment

PlacementFacts = tuple[str, str, str, int, int, int | None, str]
"""(id, agency_id, currency, balance_minor, placed_s, recalled_s, debtor_id); times are
seconds since the epoch."""

EventFacts = tuple[
    int, str, str, str, str | None, int | None, str | None, int, int | None, int | None, str | None
]
"""(id, agency_id, placement_id ("" for none), type, ref, amount_minor, currency, occurred_s,
at_s, contact, reason): ``at_s`` is ``paid_at`` of a payment or ``attempted_at`` of a
contact; ``contact`` codes a contact attempt's channel and outcome as
``2 * channel number + effective`` (see gateway.reconciliation.contact_rules.CHANNELS); ``reason``
is a close's or return's reason."""

ContactFacts = tuple[int, str, str, int, int]
"""(event id, agency_id, placement_id, at_s, contact code) of a contact attempt: what the
contact rules read of it (gateway.reconciliation.contact_rules), kept instead of the whole event
row."""

SKEW_SECONDS: Final = 86_400
_NO_STATE: Final = frozenset(
    {
        "placement.acknowledged",
        "placement.rejected",
        "contact.attempted",
        "promise.made",
        "complaint.received",
        "waiver.requested",
        "instalment.requested",
        "pause.requested",
        "attribution.disputed",
    }
)
_STATUS: Final = {
    "dispute.opened": "disputed",
    "legal.action": "legal",
    "case.returned": "ended",
    "case.closed": "ended",
}


@dataclass(frozen=True, slots=True)
class Break:
    """A judgement to record: the draft mismatch and the event it is about."""

    event_id: int | None
    agency_id: str
    draft: MismatchDraft
    rule: str = ""
    """Which rule of a kind fired, when one event can break several (contact rules)."""

    @property
    def dedupe_key(self) -> str:
        key = f"{self.draft.kind}:event:{self.event_id}"
        return f"{key}:{self.rule}" if self.rule else key


class _Book:
    """What one placement's agency has reported so far."""

    __slots__ = ("collected", "payments", "status")

    def __init__(self) -> None:
        self.collected = 0
        self.payments: dict[str, int] = {}
        self.status = ""


_Found = tuple[str, str, dict[str, object], dict[str, object], int | None]
"""(kind, detail, ours, theirs, delta) of a break on an applied event."""


class EventAudit:
    """Classifies events (in id order) against placements; see the module docstring.

    Args:
        placements: placement facts by placement id.
    """

    def __init__(self, placements: Mapping[str, PlacementFacts]) -> None:
        self._placements = placements
        self._books: dict[str, _Book] = {}
        self.counts: Counter[str] = Counter()
        self.contacts: list[ContactFacts] = []
        """Contact attempts on known placements of their own agency that say when and how
        they were made (for the contact rules)."""
        self.payments: dict[tuple[str, str], AgencyPayment] = {}
        """Applied payments by (placement, ref), net of reversals (for matching with the
        lender's receipts)."""

    def knows(self, placement_id: str) -> bool:
        return placement_id in self._placements

    def feed(self, events: Iterable[EventFacts], *, emit: bool = True) -> list[Break]:
        """Classify ``events``; return the breaks (none when ``emit`` is false)."""
        # The hot loop: most events are fine and cost a dict lookup and a few compares;
        # nothing is built for an event that breaks no rule.
        places = self._placements
        books = self._books
        activity = ACTIVITY_EVENTS
        no_state = _NO_STATE
        contact = self.contacts.append
        apply = self._apply
        breaks: list[Break] = []
        ok = 0
        for row in events:
            etype = row[3]
            p = places.get(row[2])
            if p is None:
                if etype in AGENCY_WIDE_EVENTS:
                    continue
                found = self._refused("unknown_placement", row, None)
            elif p[1] != row[1]:
                found = self._refused("wrong_agency", row, p)
            elif row[5] is not None and row[6] != p[2]:
                found = self._refused("currency_mismatch", row, p)
            elif p[5] is not None and etype in activity and row[7] > p[5]:
                found = self._refused("activity_after_recall", row, p)
            elif etype == "contact.attempted":
                if row[8] is not None and row[9] is not None:
                    contact((row[0], row[1], row[2], row[8], row[9]))
                ok += 1
                continue
            elif etype in no_state:
                ok += 1
                continue
            else:
                book = books.get(row[2])
                if book is None:
                    book = books[row[2]] = _Book()
                applied = apply(row, p, book)
                if applied is None:
                    continue
                if not applied:
                    ok += 1
                    continue
                found = applied
            if emit:
                breaks.extend(found)
        self.counts["ok"] += ok
        return breaks

    def _refused(self, kind: str, row: EventFacts, p: PlacementFacts | None) -> list[Break]:
        self.counts[kind] += 1
        _eid, agency, pid, etype, _ref, amount, currency, occurred, *_rest = row
        theirs: dict[str, object] = {"type": etype, "placement_id": pid, "agency_id": agency}
        if amount is not None:
            theirs.update(amount_minor=amount, currency=currency)
        if p is None:
            detail = f"{agency} reported {etype} for placement {pid}, which we never placed"
            return [_break(kind, row, detail, {"placement": None}, theirs)]
        ours = _ours(p)
        delta = None
        if kind == "wrong_agency":
            detail = f"{agency} reported {etype} for {pid}, which is held by {p[1]}"
        elif kind == "currency_mismatch":
            detail = f"{etype} in {currency} on a {p[2]} placement"
        else:
            detail = f"{agency} reported {etype} on {pid}, which happened after its recall"
            ours["recalled_s"] = p[5]
            theirs["occurred_s"] = occurred
            delta = amount if etype == "payment.reported" else None
        return [_break(kind, row, detail, ours, theirs, delta)]

    def _apply(self, row: EventFacts, p: PlacementFacts, book: _Book) -> list[Break] | None:
        """The breaks of an applied event that changes the placement's state: ``None`` for
        a harmless repeat (counted apart), an empty list when it is fine."""
        etype = row[3]
        if etype == "payment.reported":
            found = self._payment(row, p, book)
        elif etype == "payment.reversed":
            found = self._reversal(row, p, book)
        else:
            found = self._status(row, p, book)
        if found is None:
            return None
        if not found:
            return _NO_BREAKS
        theirs: dict[str, object] = {"type": etype, "placement_id": row[2]}
        if etype == "payment.reported" or etype == "payment.reversed":
            theirs.update(payment_id=row[4] or "", amount_minor=row[5] or 0)
        for kind, *_ in found:
            self.counts[kind] += 1
        return [
            _break(kind, row, detail, {**_ours(p), **ours}, {**theirs, **more}, delta)
            for kind, detail, ours, more, delta in found
        ]

    def _payment(self, row: EventFacts, p: PlacementFacts, book: _Book) -> list[_Found] | None:
        _eid, agency, pid, _etype, ref, amount, _cur, occurred, at_s, _eff, _reason = row
        ref = ref or ""
        amount = amount or 0
        paid = book.payments
        previous = paid.get(ref)
        if previous is not None:
            if previous == amount:
                self.counts["repeat"] += 1
                return None
            detail = f"payment {ref} reported again with another amount"
            return [
                ("conflicting_duplicate", detail, {"amount_minor": previous}, {}, amount - previous)
            ]
        paid[ref] = amount
        collected = book.collected = book.collected + amount
        self.payments[(pid, ref)] = AgencyPayment(
            row[0],
            agency,
            pid,
            ref,
            amount,
            row[6] or "",
            (occurred if at_s is None else at_s) // 86_400,
        )
        if (
            collected <= p[3]
            and book.status != "disputed"
            and (at_s is None or (p[4] - _GRACE_SECONDS <= at_s <= occurred + SKEW_SECONDS))
        ):
            return _FINE
        found: list[_Found] = []
        if at_s is not None and at_s < p[4] - _GRACE_SECONDS:
            detail = f"{agency} reports payment {ref} paid before the case was placed"
            found.append(("date_out_of_window", detail, {"placed_s": p[4]}, {"paid_s": at_s}, None))
        elif at_s is not None and at_s > occurred + SKEW_SECONDS:
            detail = f"{agency} reports payment {ref} paid in the future"
            found.append(
                ("date_out_of_window", detail, {}, {"paid_s": at_s, "occurred_s": occurred}, None)
            )
        if book.status == "disputed":
            detail = f"{agency} reports a payment on {pid}, which it reported disputed"
            found.append(("status_conflict", detail, {}, {}, amount))
        if collected > p[3]:
            detail = (
                f"{agency} reports {collected} collected on a balance of {p[3]} "
                f"(minor units, {p[2]})"
            )
            ours: dict[str, object] = {"collected_minor": collected - amount}
            found.append(("over_collection", detail, ours, {}, collected - p[3]))
        return found

    def _reversal(self, row: EventFacts, p: PlacementFacts, book: _Book) -> list[_Found]:
        pid, ref, amount = row[2], row[4] or "", row[5] or 0
        paid = book.payments.get(ref)
        if paid is None or amount > paid:
            detail = f"reversal of payment {ref} " + (
                "which was never reported" if paid is None else f"exceeds its {paid}"
            )
            ours: dict[str, object] = {"payment_minor": paid}
            return [("unmatched_reversal", detail, ours, {}, amount - (paid or 0))]
        left = paid - amount
        if left:
            book.payments[ref] = left
        else:
            del book.payments[ref]
        book.collected -= amount
        reported = self.payments.get((pid, ref))
        if reported is not None:
            self.payments[(pid, ref)] = reported._replace(amount_minor=left)
        return _FINE

    def _status(self, row: EventFacts, p: PlacementFacts, book: _Book) -> list[_Found]:
        etype, occurred, reason = row[3], row[7], row[10]
        found = _FINE
        if reason is not None:
            recalled_before = p[5] is not None and occurred >= p[5]
            if etype == "case.closed" and reason == "paid_in_full":
                if not recalled_before and book.collected < p[3]:
                    agency, pid = row[1], row[2]
                    detail = (
                        f"{agency} closed {pid} as paid in full with {book.collected} of "
                        f"{p[3]} collected (minor units, {p[2]})"
                    )
                    ours: dict[str, object] = {"collected_minor": book.collected}
                    found = [
                        ("status_conflict", detail, ours, {"reason": reason}, book.collected - p[3])
                    ]
            elif etype == "case.returned" and reason == "recalled" and not recalled_before:
                detail = f"{row[1]} returned {row[2]} as recalled, but we never recalled it"
                found = [("status_conflict", detail, {}, {"reason": reason}, None)]
        status = _STATUS.get(etype)
        # As in gateway.lifecycle, a dispute does not take a case out of legal action.
        if status is not None and not (status == "disputed" and book.status == "legal"):
            book.status = status
        return found


_FINE: Final[list[_Found]] = []
_NO_BREAKS: Final[list[Break]] = []
"""What a check returns when it finds nothing (shared: never appended to)."""
_GRACE_SECONDS: Final = int(PLACEMENT_DATE_GRACE.total_seconds())


def _ours(p: PlacementFacts) -> dict[str, object]:
    return {"agency_id": p[1], "currency": p[2], "balance_minor": p[3]}


def _break(
    kind: str,
    row: EventFacts,
    detail: str,
    ours: dict[str, object],
    theirs: dict[str, object],
    delta: int | None = None,
) -> Break:
    return Break(row[0], row[1], MismatchDraft(kind, row[2], detail, ours, theirs, delta))


__all__ = [
    "SKEW_SECONDS",
    "Break",
    "ContactFacts",
    "EventAudit",
    "EventFacts",
    "PlacementFacts",
]
