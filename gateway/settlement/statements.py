"""Monthly settlement statements (佣金结算单): build, adjust, issue, confirm, dispute.

Theory of operation
-------------------
A statement is one agency's month, one revision at a time, built from the ``attributions``
rows of that agency whose ``paid_on`` is in the month: ``active`` rows become commission
lines rated by the agency's ``[commission]`` schedule (gateway.settlement.commission);
``disputed`` rows are listed apart (``withheld``) and not paid until resolved. Legal fees
ops entered for the month (``settlement fee add``) are reimbursed at cost or capped, and ops
adjustments (signed, with reason and person) are added. Totals are in the schedule's one
currency: total = lines + minimum top-up - maximum cut + adjustments + fees.

States and what moves them: the transition table in gateway.settlement.states; the
agency's answers (confirm, dispute) are applied by gateway.settlement.answers.
A confirmed statement accepts no change at all. The canonical JSON is the statement as the
agency sees it (sorted keys, no whitespace, UTF-8); its SHA-256 is what a confirmation names.
"""

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.clock import to_datetime
from gateway.config.agencies import AgencyConfig
from gateway.config.commission import FEE_KINDS, CommissionPeriod
from gateway.errors import FourEyesRefused, NotFound, SettlementError
from gateway.evidence.log import LeafInput, append_leaves
from gateway.ports import Clock
from gateway.reconciliation.recorder import insert_mismatches
from gateway.settlement import answers
from gateway.settlement.commission import LineFacts, compute_month
from gateway.settlement.states import STATES, TRANSITIONS, next_state
from gateway.settlement.views import (
    AD,
    ADJUSTMENTS,
    DOCUMENTS,
    FEES,
    LINES,
    STATEMENTS,
    SUMMARY,
    D,
    F,
    L,
    MonthLine,
    S,
    StatementView,
    canonical,
    canonical_bytes,
    fees_of,
    get_statement,
    latest,
    month_bounds,
    month_lines,
    row_dict,
    view_of,
)
from gateway.store.database import Database

Renderer = Callable[[StatementView, str], Sequence[tuple[str, str, bytes]]]
"""(view, canonical sha256) -> [(kind, file name, bytes)]: the statement's documents."""

Sender = Callable[[AsyncConnection, AgencyConfig, StatementView, datetime], Awaitable[None]]
"""Queues the ``settlement.statement`` packet in the issuing transaction."""


class StatementService:
    """The statement actions over the store; each one is one transaction."""

    def __init__(
        self,
        db: Database,
        agencies: Mapping[str, AgencyConfig],
        clock: Clock,
        *,
        legal_tier: str = "legal",
        renderer: Renderer | None = None,
        sender: Sender | None = None,
    ) -> None:
        self._db = db
        self._agencies = agencies
        self._clock = clock
        self._legal_tier = legal_tier
        self._renderer = renderer
        self._sender = sender

    def _now(self) -> datetime:
        return to_datetime(self._clock.now())

    def _agency(self, agency_id: str) -> AgencyConfig:
        agency = self._agencies.get(agency_id)
        if agency is None:
            raise NotFound(f"no agency {agency_id!r} in config/agencies")
        return agency

    def _period(self, agency: AgencyConfig, month: str) -> CommissionPeriod:
        first, _ = month_bounds(month)
        period = agency.commission.period_for(first)
        if period is None:
            raise SettlementError(
                f"{agency.source or agency.id}: commission.periods: no period covers {month}; "
                "add a [[commission.periods]] for it"
            )
        return period

    # -- build ---------------------------------------------------------------------------

    async def build(self, agency_id: str, month: str, *, actor: str) -> int:
        """Build (or rebuild) the month's draft; returns its statement id."""
        agency = self._agency(agency_id)
        period = self._period(agency, month)
        now = self._now()
        async with self._db.transaction() as conn:
            current = await latest(conn, agency_id, month)
            adjustments: list[dict[str, object]] = []
            if current is None:
                sid = await self._new(conn, agency_id, month, 1, period, actor, now, None)
            elif current["state"] == "draft":
                next_state(str(current["state"]), "build")
                sid = int(str(current["id"]))
                await conn.execute(sa.delete(LINES).where(L.statement_id == sid))
            else:
                label = f"statement {current['id']} ({agency_id} {month} r{current['revision']})"
                next_state(str(current["state"]), "build", statement=label)
                old = int(str(current["id"]))
                adjustments = [
                    dict(r._mapping)
                    for r in await conn.execute(
                        sa.select(AD.amount_minor, AD.reason, AD.actor).where(
                            AD.statement_id == old
                        )
                    )
                ]
                await conn.execute(
                    sa.update(STATEMENTS)
                    .where(S.id == old)
                    .values(state="superseded", updated_at=now)
                )
                sid = await self._new(
                    conn,
                    agency_id,
                    month,
                    int(str(current["revision"])) + 1,
                    period,
                    actor,
                    now,
                    old,
                )
                if adjustments:
                    await conn.execute(
                        sa.insert(ADJUSTMENTS),
                        [{**a, "statement_id": sid, "created_at": now} for a in adjustments],
                    )
            await self._fill(conn, agency, sid, month, period, now)
        return sid

    async def _new(
        self,
        conn: AsyncConnection,
        agency_id: str,
        month: str,
        revision: int,
        period: CommissionPeriod,
        actor: str,
        now: datetime,
        supersedes: int | None,
    ) -> int:
        zero = dict.fromkeys(
            (
                "recovered_minor",
                "lines_minor",
                "floor_topup_minor",
                "ceiling_cut_minor",
                "adjustments_minor",
                "fees_minor",
                "total_minor",
                "withheld_minor",
            ),
            0,
        )
        result = await conn.execute(
            sa.insert(STATEMENTS)
            .values(
                agency_id=agency_id,
                month=month,
                revision=revision,
                state="draft",
                currency=period.currency,
                rule_period=f"{period.start}..{period.end}",
                supersedes_id=supersedes,
                created_by=actor[:64],
                created_at=now,
                updated_at=now,
                **zero,
            )
            .returning(S.id)
        )
        return int(result.scalar_one())

    async def _fill(
        self,
        conn: AsyncConnection,
        agency: AgencyConfig,
        sid: int,
        month: str,
        period: CommissionPeriod,
        now: datetime,
    ) -> None:
        first, last = month_bounds(month)
        rows = await month_lines(conn, agency.id, first, last, legal_tier=self._legal_tier)
        paid = [r for r in rows if r.state != "disputed"]
        withheld = [r for r in rows if r.state == "disputed"]
        facts = [
            LineFacts(
                line_no=i,
                amount_minor=r.amount_minor,
                currency=r.currency,
                paid_on=r.paid_on,
                bucket=r.bucket,
                dpd_at_placement=r.dpd_at_placement,
                age_days=r.age_days,
                legal=r.legal,
            )
            for i, r in enumerate(paid, start=1)
        ]
        month_result = compute_month(period, facts)
        inserts: list[dict[str, object]] = []
        for rated, r in zip(month_result.lines, paid, strict=True):
            inserts.append(
                _line_row(sid, rated.facts.line_no, r, False)
                | {
                    "rule": rated.rule,
                    "rate_bps": rated.rate_bps,
                    "commission_minor": rated.commission_minor,
                    "capped": rated.capped,
                }
            )
        for i, r in enumerate(withheld, start=len(paid) + 1):
            inserts.append(_line_row(sid, i, r, True))
        if inserts:
            await conn.execute(sa.insert(LINES), inserts)
        fees = await fees_of(conn, agency, agency.id, first, last)
        for fee in fees:
            if fee["currency"] != period.currency:
                raise SettlementError(
                    f"fee {fee['id']} of {agency.id} is in {fee['currency']}, the schedule "
                    f"settles {period.currency}"
                )
        fees_minor = sum(int(str(f["reimbursed_minor"])) for f in fees)
        adjustments_minor = (
            await conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(AD.amount_minor), 0)).where(
                    AD.statement_id == sid
                )
            )
        ).scalar_one()
        commission = month_result.commission_minor
        await conn.execute(
            sa.update(STATEMENTS)
            .where(S.id == sid)
            .values(
                tier=(month_result.tier.name or f"from {month_result.tier.from_minor}")
                if month_result.tier is not None
                else None,
                recovered_minor=month_result.recovered_minor,
                lines_minor=month_result.lines_minor,
                floor_topup_minor=month_result.floor_topup_minor,
                ceiling_cut_minor=month_result.ceiling_cut_minor,
                adjustments_minor=int(adjustments_minor),
                fees_minor=fees_minor,
                total_minor=commission + int(adjustments_minor) + fees_minor,
                withheld_minor=sum(r.amount_minor for r in withheld),
                updated_at=now,
            )
        )

    # -- ops actions on a draft ----------------------------------------------------------

    async def adjust(
        self, statement_id: int, amount_minor: int, reason: str, *, actor: str
    ) -> None:
        """Add a signed adjustment to a draft (reason required) and recompute its totals."""
        if not reason.strip():
            raise SettlementError("an adjustment needs a reason")
        now = self._now()
        async with self._db.transaction() as conn:
            st = await get_statement(conn, statement_id)
            next_state(str(st["state"]), "adjust", statement=f"statement {statement_id}")
            await conn.execute(
                sa.insert(ADJUSTMENTS).values(
                    statement_id=statement_id,
                    amount_minor=amount_minor,
                    reason=reason.strip()[:500],
                    actor=actor[:64],
                    created_at=now,
                )
            )
            await conn.execute(
                sa.update(STATEMENTS)
                .where(S.id == statement_id)
                .values(
                    adjustments_minor=S.adjustments_minor + amount_minor,
                    total_minor=S.total_minor + amount_minor,
                    updated_at=now,
                )
            )

    async def add_fee(
        self,
        agency_id: str,
        case_id: str,
        kind: str,
        advanced_minor: int,
        *,
        receipt_ref: str,
        incurred_on: date,
        actor: str,
        currency: str = "CNY",
    ) -> int:
        """Record a legal fee a firm advanced; the month's statement reimburses it."""
        self._agency(agency_id)
        if kind not in FEE_KINDS:
            raise SettlementError(f"fee kind {kind!r} is not one of {', '.join(FEE_KINDS)}")
        if advanced_minor <= 0:
            raise SettlementError("a fee's amount must be positive")
        if not receipt_ref.strip():
            raise SettlementError("a fee needs its receipt reference (--receipt-ref)")
        now = self._now()
        async with self._db.transaction() as conn:
            month = incurred_on.strftime("%Y-%m")
            current = await latest(conn, agency_id, month)
            if current is not None and current["state"] in ("issued", "confirmed"):
                raise SettlementError(
                    f"{agency_id} {month} is {current['state']}: a fee for that month can no "
                    "longer be added"
                )
            result = await conn.execute(
                sa.insert(FEES)
                .values(
                    agency_id=agency_id,
                    case_id=case_id,
                    kind=kind,
                    advanced_minor=advanced_minor,
                    currency=currency,
                    receipt_ref=receipt_ref.strip()[:128],
                    incurred_on=incurred_on,
                    actor=actor[:64],
                    created_at=now,
                )
                .returning(F.id)
            )
            return int(result.scalar_one())

    async def issue(self, statement_id: int, *, actor: str) -> str:
        """Issue a draft: hash its canonical JSON, make its documents, attest and send it.
        Returns the SHA-256. Above ``[commission] four_eyes_above_minor`` the issuer must not
        be the person who built the draft."""
        now = self._now()
        async with self._db.transaction() as conn:
            st = await get_statement(conn, statement_id)
            next_state(str(st["state"]), "issue", statement=f"statement {statement_id}")
            agency = self._agency(str(st["agency_id"]))
            limit = agency.commission.four_eyes_above_minor
            total = int(str(st["total_minor"]))
            if limit is not None and total > limit and actor == st["created_by"]:
                raise FourEyesRefused(
                    f"statement {statement_id} totals {total} minor units, above "
                    f"{agency.id}'s four_eyes_above_minor {limit}: another person must issue "
                    f"it (it was built by {st['created_by']})"
                )
            view = await view_of(conn, statement_id, self._agencies)
            view.statement.update(state="issued")
            body = canonical_bytes(canonical(view))
            sha = hashlib.sha256(body).hexdigest()
            # pyHanko signs with its own event loop, and rendering is CPU work: a thread.
            docs = (
                list(await asyncio.to_thread(self._renderer, view, sha))
                if self._renderer is not None
                else []
            )
            await conn.execute(sa.delete(DOCUMENTS).where(D.statement_id == statement_id))
            if docs:
                await conn.execute(
                    sa.insert(DOCUMENTS),
                    [
                        {
                            "statement_id": statement_id,
                            "kind": kind,
                            "name": name,
                            "sha256": hashlib.sha256(data).hexdigest(),
                            "body": data,
                            "created_at": now,
                        }
                        for kind, name, data in docs
                    ],
                )
            await conn.execute(
                sa.update(STATEMENTS)
                .where(S.id == statement_id)
                .values(
                    state="issued",
                    canonical_sha256=sha,
                    canonical_json=body.decode(),
                    issued_by=actor[:64],
                    issued_at=now,
                    updated_at=now,
                )
            )
            await append_leaves(
                conn,
                [
                    LeafInput(
                        "settlement",
                        f"settlement:{statement_id}",
                        {
                            "action": "issued",
                            "agency_id": agency.id,
                            "month": st["month"],
                            "revision": st["revision"],
                            "sha256": sha,
                            "documents": {
                                kind: hashlib.sha256(data).hexdigest() for kind, _, data in docs
                            },
                            "total_minor": total,
                            "actor": actor,
                        },
                    )
                ],
                now=now,
            )
            if self._sender is not None:
                view = await view_of(conn, statement_id, self._agencies)
                await self._sender(conn, agency, view, now)
        return sha

    # -- the agency's answer (gateway.settlement.answers does the work) ------------------

    async def confirm(self, agency_id: str, statement_id: int, revision: int, sha256: str) -> None:
        """The agency confirms this revision and hash: lock it and settle its attributions.
        SettlementError for another revision or hash (the webhook answers 422)."""
        async with self._db.transaction() as conn:
            await answers.confirm_statement(
                conn, agency_id, statement_id, revision, sha256, now=self._now()
            )

    async def dispute(
        self,
        agency_id: str,
        statement_id: int,
        revision: int,
        line_nos: Sequence[int],
        *,
        reason: str,
        claimed_minor: int,
    ) -> None:
        """The agency disputes lines of this revision: a ``settlement_disputed`` mismatch."""
        now = self._now()
        async with self._db.transaction() as conn:
            row = await answers.dispute_statement(
                conn,
                agency_id,
                statement_id,
                revision,
                line_nos,
                reason=reason,
                claimed_minor=claimed_minor,
                now=now,
            )
            await insert_mismatches(conn, [row], now=now)

    # -- reading -------------------------------------------------------------------------

    async def statements(
        self, *, agency_id: str | None = None, month: str | None = None
    ) -> list[dict[str, object]]:
        """Every revision, newest month first (optionally of one agency / month)."""
        query = sa.select(STATEMENTS.c[*SUMMARY]).order_by(S.month.desc(), S.agency_id, S.revision)
        if agency_id:
            query = query.where(S.agency_id == agency_id)
        if month:
            query = query.where(S.month == month)
        async with self._db.snapshot() as conn:
            return [row_dict(r) for r in await conn.execute(query)]

    async def show(self, statement_id: int) -> StatementView:
        async with self._db.snapshot() as conn:
            return await view_of(conn, statement_id, self._agencies)

    async def document(self, statement_id: int, kind: str) -> tuple[str, bytes]:
        async with self._db.snapshot() as conn:
            row = (
                await conn.execute(
                    sa.select(D.name, D.body).where(D.statement_id == statement_id, D.kind == kind)
                )
            ).first()
        if row is None:
            raise NotFound(f"statement {statement_id} has no {kind} document (issue it first)")
        return str(row.name), bytes(row.body)


def _line_row(sid: int, line_no: int, r: MonthLine, withheld: bool) -> dict[str, object]:
    return {
        "statement_id": sid,
        "line_no": line_no,
        "withheld": withheld,
        "attribution_id": r.id,
        "receipt_id": r.receipt_id,
        "case_id": r.case_id,
        "placement_id": r.placement_id,
        "paid_on": r.paid_on,
        "amount_minor": r.amount_minor,
        "currency": r.currency,
        "attribution_rule": r.rule,
        "bucket": r.bucket,
        "dpd_at_placement": r.dpd_at_placement,
        "age_days": r.age_days,
        "legal": r.legal,
        "rule": None,
        "rate_bps": None,
        "commission_minor": None,
        "capped": False,
    }


__all__ = [
    "STATES",
    "TRANSITIONS",
    "Renderer",
    "Sender",
    "StatementService",
    "next_state",
]
