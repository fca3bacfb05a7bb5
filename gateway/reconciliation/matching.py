"""Matching agency-reported payments against the money the lender received (pure).

Theory of operation
-------------------
Two sides meet here. An ``AgencyPayment`` is what an agency says it collected (a
``payment.reported`` event, net of its reversals). A ``LenderReceipt`` is what the lender's
bank feed shows: money from the debtor (``debtor``) or an agency's remittance for a period
(``remittance``). ``match`` runs passes in priority order, highest confidence first. A record
matched in one pass is consumed; no later pass sees it.

1. ``exact``: the receipt names the agency's payment (agency + payment ref), exactly one
   payment and one receipt carry that key, and currency, amount and date agree (amount
   within tolerance, date within the window).
2. ``keyed``: the same unique key pair, but the currency, the amount (beyond tolerance) or
   the date (outside the window) disagrees. The key says it is the same payment, so the pair
   is matched and the disagreement is a finding (``currency_mismatch``, ``amount_mismatch``,
   ``date_out_of_window``) with its delta.
3. ``tolerance``: receipts that name no payment (or name one nobody reported), blocked by
   (placement, currency). A payment is a candidate when the amounts agree within tolerance
   and the dates within the window. A pair is matched only when each is the other's only
   candidate. A record with two or more candidates is *ambiguous*: it is reported and
   nothing is consumed, because the rule is never to guess.
4. ``grouped``:
   * one-to-many: two or more receipts carrying one payment's key (a split settlement),
     whose sum agrees with the payment within tolerance;
   * many-to-one: a remittance from an agency for a period against every still-unmatched
     payment of that agency paid in the period, summed as one virtual payment and netted of
     the contract's commission when the agency remits net. The group is consumed; a sum
     that disagrees beyond tolerance is a ``remittance_short`` finding with the delta.
     Remittances of one agency whose periods overlap are ambiguous.

Tolerance (gateway.reconciliation.match_inputs): ``|received - expected| <= max(amount_minor,
expected * amount_bps / 10_000)``, whichever allows more. Blocking is by dict (a hash join); within
a block, amount candidates are found by bisection, never by comparing every pair. The outcome
does not depend on input order: candidates are computed for a whole pass before anything is
consumed, and records are visited in (key, id) order.
"""

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from gateway.reconciliation.match_inputs import AgencyPayment, Contract, LenderReceipt, Tolerance

PassName = Literal["exact", "keyed", "tolerance", "grouped"]
PASSES: tuple[PassName, ...] = ("exact", "keyed", "tolerance", "grouped")


@dataclass(frozen=True, slots=True)
class Finding:
    """A disagreement inside a match: the records are paired, but something differs."""

    kind: str
    detail: str
    delta_minor: int | None = None


@dataclass(frozen=True, slots=True)
class Match:
    pass_name: PassName
    lender_ids: tuple[int, ...]
    agency_ids: tuple[int, ...]
    expected_minor: int
    """What the lender should have received for these payments."""
    received_minor: int
    findings: tuple[Finding, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.pass_name}:L{self.lender_ids[0]}:A{self.agency_ids[0]}"


@dataclass(frozen=True, slots=True)
class Ambiguity:
    """A record with two or more equally good counterparts; nothing was consumed."""

    side: Literal["lender", "agency"]
    id: int
    candidates: tuple[int, ...]
    pass_name: PassName


@dataclass(slots=True)
class MatchResult:
    matches: list[Match] = field(default_factory=list)
    ambiguities: list[Ambiguity] = field(default_factory=list)
    unmatched_agency: list[AgencyPayment] = field(default_factory=list)
    unmatched_lender: list[LenderReceipt] = field(default_factory=list)

    def ambiguous_ids(self, side: Literal["lender", "agency"]) -> frozenset[int]:
        """Records involved in an ambiguity on ``side``, as subject or candidate."""
        other = "agency" if side == "lender" else "lender"
        ids = {a.id for a in self.ambiguities if a.side == side}
        ids.update(c for a in self.ambiguities if a.side == other for c in a.candidates)
        return frozenset(ids)


class _State:
    """The records still unconsumed, by id, and those held back by an ambiguity: a held
    record is never matched by a later pass (that would be breaking the tie by guessing)."""

    def __init__(self, payments: Iterable[AgencyPayment], receipts: Iterable[LenderReceipt]):
        self.payments = {p.id: p for p in payments}
        self.receipts = {r.id: r for r in receipts}
        self.held_payments: set[int] = set()
        self.held_receipts: set[int] = set()
        self.result = MatchResult()

    def consume(self, match: Match) -> None:
        for i in match.lender_ids:
            del self.receipts[i]
        for i in match.agency_ids:
            del self.payments[i]
        self.result.matches.append(match)

    def ambiguous(self, ambiguity: Ambiguity) -> None:
        self.result.ambiguities.append(ambiguity)
        subject, others = (
            (self.held_receipts, self.held_payments)
            if ambiguity.side == "lender"
            else (self.held_payments, self.held_receipts)
        )
        subject.add(ambiguity.id)
        others.update(ambiguity.candidates)

    def available_payments(self) -> list[AgencyPayment]:
        return [self.payments[i] for i in sorted(self.payments) if i not in self.held_payments]

    def available_receipts(self) -> list[LenderReceipt]:
        return [self.receipts[i] for i in sorted(self.receipts) if i not in self.held_receipts]


def match(
    payments: Iterable[AgencyPayment],
    receipts: Iterable[LenderReceipt],
    *,
    tolerance: Tolerance,
    contracts: Mapping[str, Contract],
) -> MatchResult:
    """Run the passes of the module docstring; every input record ends in exactly one of
    ``matches``, ``unmatched_agency`` or ``unmatched_lender``."""
    state = _State(payments, receipts)
    _keyed_passes(state, tolerance)
    _tolerance_pass(state, tolerance)
    _one_to_many_pass(state, tolerance)
    _remittance_pass(state, tolerance, contracts)
    result = state.result
    result.unmatched_agency = [state.payments[i] for i in sorted(state.payments)]
    result.unmatched_lender = [state.receipts[i] for i in sorted(state.receipts)]
    rank = {name: n for n, name in enumerate(PASSES)}
    result.matches.sort(key=lambda m: (rank[m.pass_name], m.lender_ids, m.agency_ids))
    result.ambiguities.sort(key=lambda a: (rank[a.pass_name], a.side, a.id))
    return result


def _key_index(
    state: _State,
) -> tuple[dict[tuple[str, str], list[AgencyPayment]], dict[tuple[str, str], list[LenderReceipt]]]:
    """Receipts that name a payment, and the payments they could name, by (agency, ref)."""
    by_key_r: dict[tuple[str, str], list[LenderReceipt]] = defaultdict(list)
    for r in state.available_receipts():
        if r.ref is not None and r.agency_id is not None:
            by_key_r[(r.agency_id, r.ref)].append(r)
    by_key_p: dict[tuple[str, str], list[AgencyPayment]] = defaultdict(list)
    for p in state.available_payments():
        key = (p.agency_id, p.ref)
        if key in by_key_r:
            by_key_p[key].append(p)
    return by_key_p, by_key_r


def _keyed_passes(state: _State, tol: Tolerance) -> None:
    by_key_p, by_key_r = _key_index(state)
    # Keys touch disjoint records and the result is sorted at the end, so any order will
    # do: this one is the receipts' (by id).
    for key, receipts in by_key_r.items():
        candidates = by_key_p.get(key, [])
        if len(candidates) > 1:
            for r in receipts:
                state.ambiguous(Ambiguity("lender", r.id, tuple(p.id for p in candidates), "exact"))
            continue
        if len(candidates) != 1 or len(receipts) != 1:
            continue  # nobody reported it (tolerance pass), or a split (grouped pass)
        p, r = candidates[0], receipts[0]
        findings = _pair_findings(p, r, tol)
        state.consume(
            Match(
                "keyed" if findings else "exact",
                (r.id,),
                (p.id,),
                p.amount_minor,
                r.amount_minor,
                findings,
            )
        )


def _pair_findings(p: AgencyPayment, r: LenderReceipt, tol: Tolerance) -> tuple[Finding, ...]:
    if (
        p.currency == r.currency
        and abs(p.day - r.day) <= tol.days
        and abs(r.amount_minor - p.amount_minor) <= tol.allowance(p.amount_minor)
    ):
        return ()
    findings: list[Finding] = []
    if p.currency != r.currency:
        findings.append(
            Finding(
                "currency_mismatch",
                f"the agency reported {p.currency}, the lender received {r.currency}",
            )
        )
    elif not tol.amount_ok(p.amount_minor, r.amount_minor):
        findings.append(
            Finding(
                "amount_mismatch",
                f"the agency reported {p.amount_minor}, the lender received {r.amount_minor} "
                f"(minor units, {p.currency}); tolerance {tol.allowance(p.amount_minor)}",
                r.amount_minor - p.amount_minor,
            )
        )
    if not tol.days_ok(p.day, r.day):
        findings.append(
            Finding(
                "date_out_of_window",
                f"paid on day {p.day}, received on day {r.day}: {abs(r.day - p.day)} days "
                f"apart, the window is {tol.days}",
            )
        )
    return tuple(findings)


def _tolerance_pass(state: _State, tol: Tolerance) -> None:
    available = [
        r for r in state.available_receipts() if r.kind == "debtor" and r.placement_id is not None
    ]
    wanted = {(r.placement_id, r.currency) for r in available}
    blocks: dict[tuple[str, str], list[AgencyPayment]] = defaultdict(list)
    for p in state.available_payments():
        key = (p.placement_id, p.currency)
        if key in wanted:
            blocks[key].append(p)
    for block in blocks.values():
        if len(block) > 1:
            block.sort(key=lambda p: (p.amount_minor, p.id))
    amounts = {k: [p.amount_minor for p in b] for k, b in blocks.items()}
    receipt_candidates: dict[int, list[int]] = {}
    payment_candidates: dict[int, list[int]] = defaultdict(list)
    amount_ok, days_ok = tol.amount_ok, tol.days_ok
    for r in available:
        key = (r.placement_id or "", r.currency)
        group = blocks.get(key)
        if group is None:
            continue
        low, high = tol.expected_range(r.amount_minor)
        amt = amounts[key]
        found = [
            p.id
            for p in group[bisect_left(amt, low) : bisect_right(amt, high)]
            if amount_ok(p.amount_minor, r.amount_minor) and days_ok(p.day, r.day)
        ]
        if found:
            if len(found) > 1:
                found.sort()
            receipt_candidates[r.id] = found
            for pid in found:
                payment_candidates[pid].append(r.id)
    for rid in sorted(receipt_candidates):
        found = receipt_candidates[rid]
        if len(found) > 1:
            state.ambiguous(Ambiguity("lender", rid, tuple(found), "tolerance"))
            continue
        pid = found[0]
        rivals = payment_candidates[pid]
        if len(rivals) > 1:
            continue  # reported once, below, from the payment's side
        p, r = state.payments[pid], state.receipts[rid]
        state.consume(Match("tolerance", (rid,), (pid,), p.amount_minor, r.amount_minor))
    for pid in sorted(payment_candidates):
        rivals = payment_candidates[pid]
        if len(rivals) > 1:
            state.ambiguous(Ambiguity("agency", pid, tuple(sorted(rivals)), "tolerance"))


def _one_to_many_pass(state: _State, tol: Tolerance) -> None:
    by_key_p, by_key_r = _key_index(state)
    for key in sorted(by_key_r):
        receipts = by_key_r[key]
        candidates = by_key_p.get(key, [])
        if len(receipts) < 2 or len(candidates) != 1:
            continue
        p = candidates[0]
        if any(r.currency != p.currency for r in receipts):
            continue
        total = sum(r.amount_minor for r in receipts)
        if tol.amount_ok(p.amount_minor, total) and all(
            tol.days_ok(p.day, r.day) for r in receipts
        ):
            state.consume(
                Match("grouped", tuple(r.id for r in receipts), (p.id,), p.amount_minor, total)
            )
        else:
            state.ambiguous(Ambiguity("agency", p.id, tuple(r.id for r in receipts), "grouped"))


def _remittance_pass(state: _State, tol: Tolerance, contracts: Mapping[str, Contract]) -> None:
    remittances: dict[tuple[str, str], list[LenderReceipt]] = defaultdict(list)
    for r in state.available_receipts():
        if r.kind == "remittance" and r.agency_id is not None and r.period is not None:
            remittances[(r.agency_id, r.currency)].append(r)
    by_key: dict[tuple[str, str], list[AgencyPayment]] = defaultdict(list)
    for p in state.available_payments():
        by_key[(p.agency_id, p.currency)].append(p)
    for key in sorted(remittances):
        group = sorted(by_key.get(key, []), key=lambda p: (p.day, p.id))
        days = [p.day for p in group]
        items = sorted(remittances[key], key=lambda r: (r.period or (0, 0), r.id))
        clashes = _overlapping(items)
        contract = contracts.get(key[0], Contract())
        for r in items:
            assert r.period is not None
            members = [
                p
                for p in group[bisect_left(days, r.period[0]) : bisect_right(days, r.period[1])]
                if p.id in state.payments and p.id not in state.held_payments
            ]
            if r.id in clashes:
                state.ambiguous(Ambiguity("lender", r.id, tuple(p.id for p in members), "grouped"))
                continue
            if members:
                state.consume(_remittance_match(r, members, contract, tol))


def _remittance_match(
    r: LenderReceipt, members: Sequence[AgencyPayment], contract: Contract, tol: Tolerance
) -> Match:
    gross = sum(p.amount_minor for p in members)
    commission = sum(contract.commission(p.amount_minor) for p in members)
    expected = gross - commission if contract.remittance == "net" else gross
    findings: tuple[Finding, ...] = ()
    if not tol.amount_ok(expected, r.amount_minor):
        delta = r.amount_minor - expected
        findings = (
            Finding(
                "remittance_short",
                f"{r.agency_id} remitted {r.amount_minor} for {len(members)} payment(s) of "
                f"{gross} gross, {commission} commission ({contract.remittance}): expected "
                f"{expected}, {'short' if delta < 0 else 'over'} by {abs(delta)} "
                f"(minor units, {r.currency})",
                delta,
            ),
        )
    return Match(
        "grouped", (r.id,), tuple(p.id for p in members), expected, r.amount_minor, findings
    )


def _overlapping(items: Sequence[LenderReceipt]) -> dict[int, set[int]]:
    """Remittances (sorted by period start) whose periods overlap another's (a sweep)."""
    clashes: dict[int, set[int]] = defaultdict(set)
    active: list[LenderReceipt] = []
    for r in items:
        assert r.period is not None
        active = [a for a in active if a.period is not None and a.period[1] >= r.period[0]]
        for a in active:
            clashes[a.id].add(r.id)
            clashes[r.id].add(a.id)
        active.append(r)
    return clashes


__all__ = [
    "PASSES",
    "Ambiguity",
    "Finding",
    "Match",
    "MatchResult",
    "PassName",
    "match",
]
