"""A year of demo history (``insert_history``), so the annual evaluation, the strata and the
vintage curves have something to say about the demo's agencies.

Generated deterministically from the seed, for each agency given (with the buckets it may
take), over the twelve whole months before the current one:

* placements spread over the months, in the agency's buckets and the scorecards' balance
  bands, each on its own case; all have ended (closed when paid in full, else returned) and
  their cases are ``closed``, so no allocation round, expiry, SLA check or deletion sweep
  touches them;
* repayments the lender received on them, attributed (``attributions``, rule ``held``) and
  settled on a monthly confirmed statement per agency (``settlement_statements``, a summary
  row without lines, commission at a flat 10%);
* the SLA record (``ack`` and ``first_activity`` expectations met or breached) and deletion
  confirmations (``deletion`` expectations met);
* conduct violations as the arrival rules raise them (``mismatches`` of the conduct kinds,
  resolved) and complaints with their outcomes (``complaints``, closed; no summary, so no
  personal data).

Each agency has a profile (``PROFILES``, by the agencies' sorted order): the first recovers
above its peers with a clean record, the second about as its peers, the third well below
with more violations and upheld complaints, so the three reports recommend differently.

Every row is marked as history: ids start with ``HIST-`` (cases, placements, mismatch dedupe
keys, complaint references), attributions' receipt ids start at ``RECEIPT_BASE`` (no
``lender_payments`` row: the feed of a past year is not replayed), statements are created by
``demo-history``. The evidence log gets one ``demo_history`` leaf per agency with the counts
and the SHA-256 of its placement ids, not a leaf per row. Inserted in bulk with SQLAlchemy
Core, one statement per table and batch.
"""

import hashlib
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

from gateway.evidence.log import LeafInput, append_leaves
from gateway.privacy.pii import PiiKeyRing
from gateway.store.complaint_tables import Complaint
from gateway.store.database import Database
from gateway.store.settlement_tables import Attribution
from gateway.store.statement_tables import SettlementStatement
from gateway.store.tables import Case, Expectation, Mismatch, Placement

PREFIX: Final = "HIST-"
RECEIPT_BASE: Final = 1_900_000_000
ACTOR: Final = "demo-history"
COMMISSION_BPS: Final = 1_000
DPD = {"M1": (1, 30), "M2": (31, 60), "M3": (61, 90), "M4-6": (91, 180), "M6+": (181, 359)}
BALANCES = ((150_000, 499_999), (500_000, 1_999_999), (2_000_000, 4_999_999))
RECOVERY = {"M1": 0.55, "M2": 0.40, "M3": 0.28, "M4-6": 0.18, "M6+": 0.10}
"""The share of placements that pay something, by bucket, before the agency's profile."""


@dataclass(frozen=True, slots=True)
class Profile:
    quality: float
    """multiplies the chance of a repayment"""
    violations: tuple[str, ...]
    complaints_upheld: int
    complaints_not_upheld: int
    breach_share: float
    """share of ack / first-activity expectations breached"""


PROFILES: Final = (
    Profile(1.25, ("contact_rule_violation",), 0, 2, 0.02),
    Profile(1.0, ("contact_rule_violation", "third_party_contact"), 1, 2, 0.06),
    Profile(
        0.55,
        (
            "third_party_contact",
            "third_party_contact",
            "contact_during_hold",
            "contact_rule_violation",
            "contact_rule_violation",
        ),
        4,
        3,
        0.12,
    ),
)


@dataclass
class HistoryAct:
    """What the history inserted, per agency (the demo summary's ``history`` block)."""

    months: list[str] = field(default_factory=list)
    placements: dict[str, int] = field(default_factory=dict)
    placed_minor: dict[str, int] = field(default_factory=dict)
    recovered_minor: dict[str, int] = field(default_factory=dict)
    violations: dict[str, int] = field(default_factory=dict)
    complaints: dict[str, int] = field(default_factory=dict)
    statements: int = 0

    def as_json(self) -> dict[str, object]:
        return {
            "months": self.months,
            "placements": self.placements,
            "placed_minor": self.placed_minor,
            "recovered_minor": self.recovered_minor,
            "violations": self.violations,
            "complaints": self.complaints,
            "statements": self.statements,
        }


def _months(today: date) -> list[date]:
    """The first days of the twelve whole months before ``today``'s month, oldest first."""
    first = today.replace(day=1)
    out = []
    for back in range(12, 0, -1):
        y, m = divmod(first.year * 12 + first.month - 1 - back, 12)
        out.append(date(y, m + 1, 1))
    return out


def _at(day: date, hour: int = 9) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=UTC)


async def insert_history(
    db: Database,
    pii: PiiKeyRing,
    buckets: Mapping[str, Sequence[str]],
    *,
    today: date,
    seed: int,
    per_month: int = 30,
    currency: str = "CNY",
) -> HistoryAct:
    """Insert a year of history for the agencies of ``buckets`` (agency id → buckets it
    takes; see the module). ``today`` bounds it: nothing is dated in the current month."""
    rng = random.Random(seed)
    months = _months(today)
    first_of_month = today.replace(day=1)
    now = _at(today, 0)
    act = HistoryAct(months=[f"{m:%Y-%m}" for m in months])
    cases: list[dict[str, Any]] = []
    placements: list[dict[str, Any]] = []
    attributions: list[dict[str, Any]] = []
    expectations: list[dict[str, Any]] = []
    mismatches: list[dict[str, Any]] = []
    complaints: list[dict[str, Any]] = []
    statements: dict[tuple[str, str], int] = defaultdict(int)
    ids_by_agency: dict[str, list[str]] = defaultdict(list)
    receipt = RECEIPT_BASE
    for index, agency_id in enumerate(sorted(buckets)):
        profile = PROFILES[index % len(PROFILES)]
        allowed = [b for b in buckets[agency_id] if b in DPD] or ["M2"]
        placed_total = recovered_total = 0
        for month in months:
            for n in range(per_month):
                bucket = rng.choice(allowed)
                balance = rng.randint(*rng.choice(BALANCES))
                placed_on = month + timedelta(days=rng.randrange(0, 28))
                ref = f"{agency_id}-{month:%Y%m}-{n:03d}"
                case_id, placement_id = f"{PREFIX}C-{ref}", f"{PREFIX}P-{ref}"
                dpd = rng.randint(*DPD[bucket])
                paid = 0
                pays = rng.random() < min(0.95, RECOVERY[bucket] * profile.quality)
                if pays:
                    # One to three repayments in the months after placement, never later than
                    # the end of last month.
                    share = rng.choice((0.25, 0.5, 1.0))
                    parts = rng.randint(1, 3)
                    for part in range(parts):
                        paid_on = placed_on + timedelta(days=rng.randint(5, 45) + part * 30)
                        if paid_on >= first_of_month:
                            break
                        amount = int(balance * share) // parts
                        if part == parts - 1:
                            amount = int(balance * share) - amount * (parts - 1)
                        if amount <= 0:
                            continue
                        receipt += 1
                        paid += amount
                        attributions.append(
                            {
                                "receipt_id": receipt,
                                "case_id": case_id,
                                "placement_id": placement_id,
                                "agency_id": agency_id,
                                "amount_minor": amount,
                                "currency": currency,
                                "share_bps": 10_000,
                                "paid_on": paid_on,
                                "rule": "held",
                                "reason": None,
                                "state": "settled",
                                "statement_id": None,
                                "run_id": None,
                                "created_at": _at(paid_on, 23),
                            }
                        )
                        statements[(agency_id, f"{paid_on:%Y-%m}")] += amount
                ended_on = min(placed_on + timedelta(days=90), first_of_month - timedelta(days=1))
                full = paid >= balance
                debtor = f"{PREFIX}D-{ref}"
                cases.append(
                    {
                        "id": case_id,
                        "debtor_id": debtor,
                        "debtor_key": pii.debtor_key(debtor),
                        "pii": pii.encrypt({"name": "历史样例", "phones": []}, bound_to=case_id),
                        "content_mac": pii.mac(case_id.encode()),
                        "region": "CN-31",
                        "product": "consumer",
                        "currency": currency,
                        "principal_minor": balance,
                        "balance_minor": balance - paid,
                        "dpd": dpd,
                        "credit_grade": rng.choice("BCD"),
                        "due_date": placed_on - timedelta(days=dpd),
                        "bucket": bucket,
                        "status": "closed",
                        "created_at": _at(placed_on, 8),
                        "updated_at": _at(ended_on, 18),
                    }
                )
                placements.append(
                    {
                        "id": placement_id,
                        "case_id": case_id,
                        "agency_id": agency_id,
                        "state": "closed" if full else "returned",
                        "version": 1,
                        "currency": currency,
                        "balance_minor": balance,
                        "acked_balance_minor": balance,
                        "collected_minor": paid,
                        "placed_at": _at(placed_on),
                        "return_by": placed_on + timedelta(days=90),
                        "strategy": "champion",
                        "renewals": 0,
                        "updated_at": _at(ended_on, 18),
                    }
                )
                ids_by_agency[agency_id].append(placement_id)
                placed_total += balance
                recovered_total += paid
                for kind, hours in (("ack", 24), ("first_activity", 72)):
                    breached = rng.random() < profile.breach_share
                    expectations.append(
                        {
                            "placement_id": placement_id,
                            "agency_id": agency_id,
                            "kind": kind,
                            "ref": "",
                            "due_at": _at(placed_on) + timedelta(hours=hours),
                            "state": "breached" if breached else "met",
                            "created_at": _at(placed_on),
                        }
                    )
                expectations.append(
                    {
                        "placement_id": placement_id,
                        "agency_id": agency_id,
                        "kind": "deletion",
                        "ref": "",
                        "due_at": _at(ended_on) + timedelta(days=15),
                        "state": "met",
                        "created_at": _at(ended_on, 18),
                    }
                )
        act.placements[agency_id] = len(months) * per_month
        act.placed_minor[agency_id] = placed_total
        act.recovered_minor[agency_id] = recovered_total
        own = ids_by_agency[agency_id]
        for k, kind in enumerate(profile.violations):
            placement_id = own[rng.randrange(len(own))]
            seen = _at(months[rng.randrange(len(months))] + timedelta(days=rng.randrange(28)), 21)
            mismatches.append(
                {
                    "dedupe_key": f"{PREFIX}{agency_id}-{kind}-{k}",
                    "kind": kind,
                    "severity": "high",
                    "state": "resolved",
                    "agency_id": agency_id,
                    "placement_id": placement_id,
                    "rule": "demo_history",
                    "rule_version": 1,
                    "ours": "{}",
                    "theirs": "{}",
                    "detail": f"{kind} (demo history)",
                    "created_at": seen,
                    "updated_at": seen + timedelta(days=2),
                }
            )
        act.violations[agency_id] = len(profile.violations)
        outcomes = ["upheld"] * profile.complaints_upheld + (
            ["not_upheld"] * profile.complaints_not_upheld
        )
        for k, outcome in enumerate(outcomes):
            placement_id = own[rng.randrange(len(own))]
            received = _at(months[rng.randrange(len(months))] + timedelta(days=rng.randrange(28)))
            complaints.append(
                {
                    "source": "lender_import",
                    "source_ref": f"{PREFIX}{agency_id}-{k}",
                    "case_id": placement_id.replace(f"{PREFIX}P-", f"{PREFIX}C-"),
                    "placement_id": placement_id,
                    "agency_id": agency_id,
                    "channel": "hotline",
                    "category": "conduct",
                    "received_at": received,
                    "deadline_at": received + timedelta(days=15),
                    "state": "closed",
                    "outcome": outcome,
                    "resolved_at": received + timedelta(days=8),
                    "closed_at": received + timedelta(days=9),
                    "created_at": received,
                    "updated_at": received + timedelta(days=9),
                    "updated_by": ACTOR,
                }
            )
        act.complaints[agency_id] = len(outcomes)
    async with db.transaction() as conn:
        await conn.execute(Case.__table__.insert(), cases)  # type: ignore[attr-defined]
        await conn.execute(Placement.__table__.insert(), placements)  # type: ignore[attr-defined]
        statement_ids: dict[tuple[str, str], int] = {}
        for (agency_id, month_label), recovered in sorted(statements.items()):
            commission = recovered * COMMISSION_BPS // 10_000
            day = date.fromisoformat(f"{month_label}-01")
            at = _at((day + timedelta(days=40)).replace(day=5))
            statement_ids[(agency_id, month_label)] = (
                await conn.execute(
                    SettlementStatement.__table__.insert()  # type: ignore[attr-defined]
                    .values(
                        agency_id=agency_id,
                        month=month_label,
                        revision=1,
                        state="confirmed",
                        currency=currency,
                        rule_period="demo history",
                        tier=None,
                        recovered_minor=recovered,
                        lines_minor=commission,
                        floor_topup_minor=0,
                        ceiling_cut_minor=0,
                        adjustments_minor=0,
                        fees_minor=0,
                        total_minor=commission,
                        withheld_minor=0,
                        created_by=ACTOR,
                        issued_by=ACTOR,
                        created_at=at,
                        issued_at=at,
                        answered_at=at + timedelta(days=2),
                        updated_at=at + timedelta(days=2),
                    )
                    .returning(SettlementStatement.__table__.c.id)  # type: ignore[attr-defined]
                )
            ).scalar_one()
        for row in attributions:
            row["statement_id"] = statement_ids[(row["agency_id"], f"{row['paid_on']:%Y-%m}")]
        act.statements = len(statement_ids)
        if attributions:
            await conn.execute(Attribution.__table__.insert(), attributions)  # type: ignore[attr-defined]
        await conn.execute(Expectation.__table__.insert(), expectations)  # type: ignore[attr-defined]
        if mismatches:
            await conn.execute(Mismatch.__table__.insert(), mismatches)  # type: ignore[attr-defined]
        if complaints:
            await conn.execute(Complaint.__table__.insert(), complaints)  # type: ignore[attr-defined]
        await append_leaves(
            conn,
            [
                LeafInput(
                    kind="demo_history",
                    ref=f"demo_history:{agency_id}",
                    fields={
                        "agency_id": agency_id,
                        "months": f"{act.months[0]}..{act.months[-1]}",
                        "placements": act.placements[agency_id],
                        "placed_minor": act.placed_minor[agency_id],
                        "recovered_minor": act.recovered_minor[agency_id],
                        "violations": act.violations[agency_id],
                        "complaints": act.complaints[agency_id],
                        "placement_ids_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
                    },
                )
                for agency_id, ids in sorted(ids_by_agency.items())
            ],
            now=now,
        )
    return act


__all__ = ["PREFIX", "PROFILES", "RECEIPT_BASE", "HistoryAct", "insert_history"]
