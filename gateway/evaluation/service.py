"""The annual evaluation as a service: generate and store reports, read them, and the
reviewer's decision under four eyes, which feeds the register.

Theory of operation
-------------------
A report's ``state`` follows ``TRANSITIONS``::

    generated --propose--> proposed --approve--> decided
                              |
                              +----reject----> generated  (a new proposal may follow)

``generate`` gathers (gateway.evaluation.gather), evaluates (gateway.evaluation.model),
renders the three documents (gateway.evaluation.documents) and stores the report, its
documents and an ``evaluation`` evidence leaf with the canonical SHA-256 and each document's.
``propose`` records the maker's decision (renew, reduce share, terminate, with a reason) as an
``approvals`` request (action ``evaluation_decision``); ``check`` is the second person's
approval or rejection (``[four_eyes] evaluation_decision.checker_roles``, never the maker).
An approval runs the decision in the same transaction: ``reduce_share`` calls the register's
``set_share``, ``terminate`` its ``set_status(..., "terminated")`` (the register's lapse job
then recalls the agency's cases), ``renew`` records the renewal and, when the decision names a
new contract end, extends the contract through the register. Every step is an ``evaluation``
leaf.
"""

import asyncio
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.approvals import store as approvals
from gateway.approvals.rules import Person
from gateway.config.agencies import AgencyConfig
from gateway.config.settings import EvaluationSection, FourEyesSection
from gateway.errors import EvaluationRefused, NotFound
from gateway.evaluation import documents
from gateway.evaluation.gather import gather, performance
from gateway.evaluation.model import DECISIONS, canonical, evaluate
from gateway.evidence.log import LeafInput, append_leaves
from gateway.letters.signing import LetterSigner
from gateway.register.store import read_register, set_share, set_status, update_details
from gateway.store.database import Database
from gateway.store.evaluation_tables import DataIncident, EvaluationDocument, EvaluationReport

REPORTS = EvaluationReport.__table__  # type: ignore[attr-defined]
DOCUMENTS = EvaluationDocument.__table__  # type: ignore[attr-defined]
INCIDENTS = DataIncident.__table__  # type: ignore[attr-defined]
R, DOC, INC = REPORTS.c, DOCUMENTS.c, INCIDENTS.c
ACTION: Final = "evaluation_decision"
TRANSITIONS: Final[dict[tuple[str, str], str]] = {
    ("generated", "propose"): "proposed",
    ("proposed", "approve"): "decided",
    ("proposed", "reject"): "generated",
}
"""(state, event) → next state; anything else is refused."""
SEVERITIES: Final = ("low", "medium", "high")
TRIGGERS: Final = ("on_demand", "contract_end", "demo")


def next_state(state: str, event: str, *, report_id: int) -> str:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise EvaluationRefused(
            f"evaluation #{report_id} is {state}: it cannot be {event}d now"
            + ("; its decision was approved" if state == "decided" else "")
        ) from None


def year_before(end: date) -> date:
    """The evaluation year ending at ``end`` (exclusive): the same day a year earlier."""
    try:
        return end.replace(year=end.year - 1)
    except ValueError:  # 29 February
        return end.replace(year=end.year - 1, day=28)


def leaf(report_id: int, event: str, **fields: object) -> LeafInput:
    return LeafInput(
        kind="evaluation", ref=f"evaluation:{report_id}", fields={"event": event, **fields}
    )


@dataclass(frozen=True, slots=True)
class Proposal:
    """The maker's decision as the approval request carries it."""

    report_id: int
    agency_id: str
    report_sha256: str
    decision: str
    reason: str
    share_bps: int | None
    extend_to: date | None

    def payload(self) -> dict[str, object]:
        return {
            "report_id": self.report_id,
            "agency_id": self.agency_id,
            "report_sha256": self.report_sha256,
            "decision": self.decision,
            "reason": self.reason,
            "share_bps": self.share_bps,
            "extend_to": None if self.extend_to is None else self.extend_to.isoformat(),
        }


def _row(row: Any) -> dict[str, Any]:
    out = dict(row._mapping)
    for key in ("period_start", "period_end", "extend_to"):
        if out.get(key) is not None:
            out[key] = out[key].isoformat()
    for key in ("generated_at", "decided_at"):
        if out.get(key) is not None:
            out[key] = out[key].isoformat()
    out["reasons"] = json.loads(out["reasons"])
    out.pop("figures", None)
    return out


class EvaluationService:
    """Annual evaluations (``evaluation`` commands, the console, the demo)."""

    def __init__(
        self,
        db: Database,
        *,
        rules: EvaluationSection,
        four_eyes: FourEyesSection,
        signer: LetterSigner | None = None,
        currency: str = "CNY",
        agencies: Mapping[str, AgencyConfig] | None = None,
    ) -> None:
        self.db = db
        self.agencies = agencies
        self.rules = rules
        self.four_eyes = four_eyes
        self.signer = signer
        self.currency = currency

    async def generate(
        self,
        agency_ids: Iterable[str],
        *,
        end: date,
        start: date | None = None,
        trigger: str = "on_demand",
        actor: str,
        now: datetime,
    ) -> list[int]:
        """Generate and store the evaluation of each agency over ``[start, end)`` (a year
        by default); returns the report ids in the order given."""
        since = start if start is not None else year_before(end)
        if since >= end:
            raise EvaluationRefused(f"the period starts ({since}) on or after it ends ({end})")
        ids = list(agency_ids)
        async with self.db.snapshot() as conn:
            peers = await performance(conn, start=since, end=end, agencies=self.agencies)
            inputs = [
                await gather(conn, a, start=since, end=end, currency=self.currency, peers=peers)
                for a in ids
            ]
        out: list[int] = []
        for one in inputs:
            report = evaluate(one, self.rules)
            figures = report.figures()
            sha = hashlib.sha256(canonical(figures).encode()).hexdigest()
            docs = await asyncio.to_thread(documents.render, figures, sha, self.signer)
            async with self.db.transaction() as conn:
                report_id = (
                    await conn.execute(
                        REPORTS.insert()
                        .values(
                            agency_id=one.agency_id,
                            period_start=since,
                            period_end=end,
                            trigger=trigger,
                            recommendation=report.recommendation,
                            reasons=json.dumps(figures["reasons"], sort_keys=True),
                            figures=canonical(figures),
                            canonical_sha256=sha,
                            state="generated",
                            generated_by=actor[:64],
                            generated_at=now,
                        )
                        .returning(R.id)
                    )
                ).scalar_one()
                await conn.execute(
                    DOCUMENTS.insert(),
                    [
                        {
                            "report_id": report_id,
                            "kind": kind,
                            "name": name,
                            "sha256": hashlib.sha256(body).hexdigest(),
                            "body": body,
                            "created_at": now,
                        }
                        for kind, name, body in docs
                    ],
                )
                await append_leaves(
                    conn,
                    [
                        leaf(
                            int(report_id),
                            "generate",
                            agency_id=one.agency_id,
                            period=f"{since}..{end}",
                            trigger=trigger,
                            recommendation=report.recommendation,
                            canonical_sha256=sha,
                            documents={k: hashlib.sha256(b).hexdigest() for k, _, b in docs},
                            actor=actor,
                            signed=self.signer is not None,
                        )
                    ],
                    now=now,
                )
            out.append(int(report_id))
        return out

    async def listing(self, *, agency_id: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(REPORTS).order_by(R.id.desc())
        if agency_id is not None:
            query = query.where(R.agency_id == agency_id)
        async with self.db.snapshot() as conn:
            return [_row(r) for r in await conn.execute(query)]

    async def show(self, report_id: int) -> dict[str, Any]:
        """The report row with its figures and its documents' names and SHA-256."""
        async with self.db.snapshot() as conn:
            row = await _get(conn, report_id)
            docs = await conn.execute(
                sa.select(DOC.kind, DOC.name, DOC.sha256)
                .where(DOC.report_id == report_id)
                .order_by(DOC.kind)
            )
            out = _row(row)
            out["figures"] = json.loads(row.figures)
            out["documents"] = [dict(d._mapping) for d in docs]
        return out

    async def document(self, report_id: int, kind: str) -> tuple[str, bytes]:
        """(file name, bytes) of one of the report's documents (``pdf_zh``, ``pdf_en``,
        ``xlsx``)."""
        async with self.db.snapshot() as conn:
            found = (
                await conn.execute(
                    sa.select(DOC.name, DOC.body).where(
                        DOC.report_id == report_id, DOC.kind == kind
                    )
                )
            ).first()
        if found is None:
            raise NotFound(
                f"evaluation #{report_id} has no {kind} document; "
                f"kinds: {', '.join(documents.KINDS)}"
            )
        return str(found.name), bytes(found.body)

    async def propose(
        self,
        report_id: int,
        decision: str,
        *,
        reason: str,
        maker: Person,
        now: datetime,
        share_bps: int | None = None,
        extend_to: date | None = None,
    ) -> approvals.ApprovalRecord:
        """The maker's decision on the report, waiting for a second person."""
        if decision not in DECISIONS:
            raise EvaluationRefused(f"decision {decision!r}: one of {', '.join(DECISIONS)}")
        if not reason.strip():
            raise EvaluationRefused("a decision needs a reason")
        if decision == "reduce_share":
            share_bps = self.rules.reduce_share_bps if share_bps is None else share_bps
            if not 0 <= share_bps < 10_000:
                raise EvaluationRefused(
                    f"reduce share to {share_bps} bps: give a share below 10000 (the full share)"
                )
        elif share_bps is not None:
            raise EvaluationRefused(f"--share-bps is for reduce_share, not {decision}")
        if extend_to is not None and decision != "renew":
            raise EvaluationRefused(f"--extend-to is for renew, not {decision}")
        async with self.db.transaction() as conn:
            row = await _get(conn, report_id, lock=True)
            after = next_state(row.state, "propose", report_id=report_id)
            proposal = Proposal(
                report_id=report_id,
                agency_id=row.agency_id,
                report_sha256=row.canonical_sha256,
                decision=decision,
                reason=reason.strip()[:500],
                share_bps=share_bps,
                extend_to=extend_to,
            )
            approval = await approvals.request(
                conn,
                action=ACTION,
                subject=f"evaluation:{report_id}",
                payload=proposal.payload(),
                maker=maker.name,
                now=now,
            )
            await conn.execute(
                REPORTS.update()
                .where(R.id == report_id)
                .values(
                    state=after,
                    decision=decision,
                    decision_reason=proposal.reason,
                    decision_share_bps=share_bps,
                    extend_to=extend_to,
                    approval_id=approval.id,
                    proposed_by=maker.name[:64],
                )
            )
            await append_leaves(
                conn,
                [
                    leaf(
                        report_id,
                        "propose",
                        agency_id=row.agency_id,
                        decision=decision,
                        reason=proposal.reason,
                        share_bps=share_bps,
                        extend_to=None if extend_to is None else extend_to.isoformat(),
                        recommendation=row.recommendation,
                        approval_id=approval.id,
                        maker=maker.name,
                    )
                ],
                now=now,
            )
        return approval

    async def check(
        self,
        report_id: int,
        *,
        approve: bool,
        checker: Person,
        now: datetime,
        note: str | None = None,
    ) -> dict[str, Any]:
        """The second person's approval (which runs the decision) or rejection."""
        async with self.db.transaction() as conn:
            row = await _get(conn, report_id, lock=True)
            after = next_state(row.state, "approve" if approve else "reject", report_id=report_id)
            assert row.approval_id is not None
            approval = await approvals.decide(
                conn,
                row.approval_id,
                approve=approve,
                checker=checker.name,
                checker_role=checker.role,
                four_eyes=self.four_eyes,
                now=now,
                note=note,
            )
            if approve:
                applied = await self._apply(conn, row, checker=checker.name, now=now)
                await approvals.execute(
                    conn,
                    approval.id,
                    action=ACTION,
                    now=now,
                    by=checker.name,
                )
                values: dict[str, object] = {
                    "state": after,
                    "decided_by": checker.name[:64],
                    "decided_at": now,
                }
            else:
                applied = {}
                values = {
                    "state": after,
                    "decision": None,
                    "decision_reason": None,
                    "decision_share_bps": None,
                    "extend_to": None,
                    "approval_id": None,
                    "proposed_by": None,
                }
            await conn.execute(REPORTS.update().where(R.id == report_id).values(**values))
            await append_leaves(
                conn,
                [
                    leaf(
                        report_id,
                        "approve" if approve else "reject",
                        agency_id=row.agency_id,
                        decision=row.decision,
                        approval_id=row.approval_id,
                        maker=row.proposed_by,
                        checker=checker.name,
                        note=note or "",
                        register=applied,
                    )
                ],
                now=now,
            )
        return await self.show(report_id)

    async def _apply(
        self, conn: AsyncConnection, row: Any, *, checker: str, now: datetime
    ) -> dict[str, object]:
        """What the approved decision changes in the register (see the module)."""
        actor = f"{row.proposed_by}+{checker}"
        reason = f"annual evaluation #{row.id}: {row.decision_reason}"
        if row.decision == "reduce_share":
            share = int(row.decision_share_bps)
            await set_share(conn, row.agency_id, share, reason=reason, actor=actor, now=now)
            return {"share_bps": share}
        if row.decision == "terminate":
            await set_status(conn, row.agency_id, "terminated", reason=reason, actor=actor, now=now)
            return {"status": "terminated"}
        if row.extend_to is not None:
            await update_details(
                conn,
                row.agency_id,
                {"contract_end": row.extend_to},
                reason=reason,
                actor=actor,
                now=now,
                action="renew",
            )
            return {"renewed": True, "contract_end": row.extend_to.isoformat()}
        return {"renewed": True}

    async def due(self, agency_ids: Iterable[str], *, today: date) -> list[str]:
        """Agencies whose contract ends within ``[evaluation] before_contract_end_days`` of
        ``today`` and that have no report generated in that window yet (the automatic
        evaluation before contract end)."""
        horizon = today + timedelta(days=self.rules.before_contract_end_days)
        async with self.db.snapshot() as conn:
            entries = await read_register(conn)
            recent = {
                str(a)
                for (a,) in await conn.execute(
                    sa.select(R.agency_id).where(
                        R.period_end >= today - timedelta(days=self.rules.before_contract_end_days)
                    )
                )
            }
        out = []
        for agency_id in agency_ids:
            entry = entries.get(agency_id)
            end = getattr(entry, "contract_end", None)
            if end is None or agency_id in recent:
                continue
            if today <= end <= horizon:
                out.append(agency_id)
        return out

    async def add_incident(
        self,
        agency_id: str,
        *,
        occurred_on: date,
        severity: str,
        summary: str,
        ref: str | None,
        actor: str,
        now: datetime,
    ) -> int:
        """Record a data incident against an agency (``evaluation incident add``)."""
        if severity not in SEVERITIES:
            raise EvaluationRefused(f"severity {severity!r}: one of {', '.join(SEVERITIES)}")
        async with self.db.transaction() as conn:
            new_id = (
                await conn.execute(
                    INCIDENTS.insert()
                    .values(
                        agency_id=agency_id,
                        occurred_on=occurred_on,
                        severity=severity,
                        summary=summary[:500],
                        ref=ref,
                        recorded_by=actor[:64],
                        recorded_at=now,
                    )
                    .returning(INC.id)
                )
            ).scalar_one()
            await append_leaves(
                conn,
                [
                    LeafInput(
                        kind="evaluation",
                        ref=f"data_incident:{new_id}",
                        fields={
                            "event": "incident",
                            "agency_id": agency_id,
                            "occurred_on": occurred_on.isoformat(),
                            "severity": severity,
                            "summary_sha256": hashlib.sha256(summary.encode()).hexdigest(),
                            "actor": actor,
                        },
                    )
                ],
                now=now,
            )
        return int(new_id)


async def _get(conn: AsyncConnection, report_id: int, *, lock: bool = False) -> Any:
    query = sa.select(REPORTS).where(R.id == report_id)
    if lock:
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    if row is None:
        raise NotFound(f"evaluation #{report_id} does not exist; `evaluation list` shows them")
    return row


__all__ = [
    "ACTION",
    "TRANSITIONS",
    "EvaluationService",
    "Proposal",
    "next_state",
    "year_before",
]
