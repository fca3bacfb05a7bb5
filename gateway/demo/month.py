"""The demo's month: the lender's receipts attributed, a statement per agency, one confirmed
and one disputed, and two waivers decided (``run_month``).

After the day's loop the demo plays the rest of the month through the product's own entry
points, as an operator and the agencies would:

1. The agency with a grace window (``[settlement] grace_days``) has lost a case by recall
   (the day's expiry recalls; else the demo recalls one of its placements); the lender's
   payment feed for the month (``var/demo/payments-YYYY-MM.csv``) then carries,
   all received the next day, a partial and a full repayment on placements each agency
   holds, one on the recalled case (inside the old agency's grace window), one on a case
   taken back from an agency without a grace window that nobody holds, one on a case never
   placed when the run has one, and one on a loan the lender never sent us. It is
   imported with ``import_feed`` (what ``payments import`` does) and a reconciliation run
   attributes every receipt: each one must be attributed or named unattributable with a
   reason (``unaccounted_receipts`` empty), or the demo fails.
2. Each agency with a ``[commission]`` schedule gets its statement for the month, built and
   issued (the ``settlement.statement`` packet goes out on its channel: a webhook packet, a
   law firm's letter, an SFTP agency's SETTLEMENT batch; its XLSX and PDF are also written
   to ``var/demo/statements/``, as ``settlement export`` does). The first webhook
   agency with lines confirms its statement and the next one disputes its first line, each by
   an event signed with its sandbox keys through the real inbound service (like
   ``waiver_act``); the dispute opens a ``settlement_disputed`` mismatch.
3. ``waiver_act``: one waiver approved, one rejected.

``MonthAct.as_json`` is the summary's ``month`` block; ``MonthAct.problems`` what failed.
"""

import csv
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from gateway.bootstrap import Gateway
from gateway.clock import to_datetime
from gateway.config.agencies import WebhookAgency
from gateway.demo.concessions import WORKED as WAIVER_STATES, ConcessionAct, post_event, waiver_act
from gateway.lifecycle import OPEN_PLACEMENT_STATES
from gateway.reconciliation.payment_feed import import_feed
from gateway.settlement.attribution_pass import unaccounted_receipts
from gateway.settlement.statements import StatementService
from gateway.store.recon_tables import LenderPayment
from gateway.store.settlement_tables import Attribution
from gateway.store.tables import Case, Mismatch, Placement

PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
CASES = Case.__table__  # type: ignore[attr-defined]
ATTRIBUTIONS = Attribution.__table__  # type: ignore[attr-defined]
RECEIPTS = LenderPayment.__table__  # type: ignore[attr-defined]
MISMATCHES = Mismatch.__table__  # type: ignore[attr-defined]
P, C, A, L = PLACEMENTS.c, CASES.c, ATTRIBUTIONS.c, RECEIPTS.c
WORKED = ("acknowledged", "active", "legal")
OPEN_STATES = tuple(sorted(OPEN_PLACEMENT_STATES))
GRACE_RECALL = "LENDER_REVIEW"
UNKNOWN_CASE = "LENDERX-NOT-PLACED-9001"
DISPUTE_REASON = "the debtor paid after our agreed plan: the line earns our M4-6 rate"
FEED_COLUMNS = ("payment_id", "kind", "case_id", "amount_minor", "currency", "received_at")

Settle = Callable[[], Awaitable[None]]
"""Runs dispatch until the sandboxes have answered (the demo's ``dispatch_until_settled``)."""


@dataclass(frozen=True, slots=True)
class FeedLine:
    payment_id: str
    case_id: str
    amount_minor: int
    currency: str
    received_at: datetime
    why: str
    """What the demo meant by it (partial, full, grace, never placed, unknown)."""


@dataclass
class MonthAct:
    """What the month did, for the summary and the checks."""

    month: str = ""
    feed_file: str = ""
    receipts: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)
    by_rule_minor: dict[str, int] = field(default_factory=dict)
    unattributable: dict[str, str] = field(default_factory=dict)
    unaccounted: dict[str, str] = field(default_factory=dict)
    grace_case: str | None = None
    statements: dict[str, dict[str, object]] = field(default_factory=dict)
    dispute: dict[str, object] = field(default_factory=dict)
    waivers: ConcessionAct | None = None
    skipped: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        """What the month failed to show; empty when the month is right."""
        out = [f"receipt {k}: {why}" for k, why in sorted(self.unaccounted.items())]
        if not self.receipts:
            out.append("no receipts were imported")
        if not self.statements:
            out.append("no settlement statements were issued")
        states = Counter(str(s["state"]) for s in self.statements.values())
        if states["confirmed"] != 1 or states["disputed"] != 1:
            out.append(f"statement states {dict(states)}: want one confirmed, one disputed")
        if not self.dispute.get("mismatch_id"):
            out.append("the disputed statement opened no settlement_disputed mismatch")
        w = self.waivers
        if w is None or w.approved is None or w.rejected is None:
            out.append("the waivers were not both decided")
        return out

    def as_json(self) -> dict[str, object]:
        w = self.waivers
        return {
            "month": self.month,
            "feed": self.feed_file,
            "receipts": self.receipts,
            "attributed_by_rule": self.by_rule,
            "attributed_minor_by_rule": self.by_rule_minor,
            "unattributable": self.unattributable,
            "unaccounted": self.unaccounted,
            "grace_case": self.grace_case,
            "statements": self.statements,
            "dispute": self.dispute,
            "waivers": {
                "agency_id": w.agency_id if w else None,
                "approved": _request(w.approved) if w else None,
                "rejected": _request(w.rejected) if w else None,
            },
            "skipped": self.skipped,
            "problems": self.problems(),
        }


def _request(record: object) -> dict[str, object] | None:
    if record is None:
        return None
    return {
        name: str(getattr(record, name))
        for name in ("agency_id", "request_id", "placement_id", "kind", "state", "decision_reason")
        if hasattr(record, name) and getattr(record, name) is not None
    }


@dataclass(frozen=True, slots=True)
class Row:
    placement_id: str
    case_id: str
    balance_minor: int
    currency: str


async def _waiver_agency(gateway: Gateway) -> str | None:
    """The agency ``waiver_act`` will ask for its waivers (its two oldest worked placements
    are left to it): the first webhook agency with two."""
    async with gateway.db.connect() as conn:
        for agency in gateway.agencies.values():
            if isinstance(agency, WebhookAgency):
                n = (
                    await conn.execute(
                        sa.select(sa.func.count()).where(
                            P.agency_id == agency.id, P.state.in_(WAIVER_STATES)
                        )
                    )
                ).scalar_one()
                if n >= 2:
                    return agency.id
    return None


async def _repayable(gateway: Gateway, agency_id: str, *, skip: int) -> list[Row]:
    """Two of the agency's worked placements whose case it is the only one to have held (so
    a receipt on it is plainly ``held``), newest first, leaving out its ``skip`` oldest."""
    other = PLACEMENTS.alias("other")
    async with gateway.db.connect() as conn:
        oldest = [
            r.id
            for r in await conn.execute(
                sa.select(P.id)
                .where(P.agency_id == agency_id, P.state.in_(WAIVER_STATES))
                .order_by(P.id)
                .limit(skip)
            )
        ]
        query = (
            sa.select(P.id, P.case_id, P.balance_minor, P.currency)
            .where(
                P.agency_id == agency_id,
                P.state.in_(WORKED),
                P.id.not_in(oldest),
                P.balance_minor > 0,
                ~sa.exists().where(other.c.case_id == P.case_id, other.c.id != P.id),
            )
            .order_by(P.id.desc())
            .limit(2)
        )
        return [Row(*r) for r in await conn.execute(query)]


async def _grace_case(gateway: Gateway, agency_id: str) -> Row | None:
    """A case the agency lost by recall (an expiry is one) and nobody holds now: its latest,
    else one of its worked placements recalled now."""
    other = PLACEMENTS.alias("other")
    async with gateway.db.connect() as conn:
        row = (
            await conn.execute(
                sa.select(P.id, P.case_id, P.balance_minor, P.currency)
                .where(
                    P.agency_id == agency_id,
                    P.state == "recalled",
                    P.balance_minor > 0,
                    ~sa.exists().where(
                        other.c.case_id == P.case_id, other.c.state.in_(OPEN_STATES)
                    ),
                )
                .order_by(P.recalled_at.desc(), P.id)
                .limit(1)
            )
        ).first()
    if row is not None:
        return Row(*row)
    rows = await _repayable(gateway, agency_id, skip=2)
    if not rows:
        return None
    await gateway.placements.recall(rows[0].case_id, GRACE_RECALL)
    return rows[0]


async def plan_feed(gateway: Gateway, act: MonthAct, received_at: datetime) -> list[FeedLine]:
    """The month's receipts (see the module docstring)."""
    lines: list[FeedLine] = []
    stamp = f"{received_at:%Y%m%d}"
    agencies = sorted(gateway.agencies.values(), key=lambda a: a.id)
    waiver = await _waiver_agency(gateway)
    currency = "CNY"
    for agency in agencies:
        if not agency.enabled:
            continue
        if agency.settlement.grace_days > 0 and act.grace_case is None:
            lost = await _grace_case(gateway, agency.id)
            if lost is not None:
                act.grace_case = lost.case_id
                lines.append(
                    FeedLine(f"RCPT-{stamp}-{agency.id}-G", lost.case_id,
                             max(lost.balance_minor // 2, 1), lost.currency, received_at,
                             f"a day after {agency.id} lost the case, in its grace window")
                )  # fmt: skip
        rows = await _repayable(gateway, agency.id, skip=2 if agency.id == waiver else 0)
        for n, row in enumerate(rows):
            full = n == 1
            amount = row.balance_minor if full else max(row.balance_minor // 3, 1)
            currency = row.currency
            lines.append(
                FeedLine(f"RCPT-{stamp}-{agency.id}-{n + 1}", row.case_id, amount, row.currency,
                         received_at, "paid in full" if full else "part payment")
            )  # fmt: skip
        if not rows:
            act.skipped.append(f"{agency.id}: no worked placement of its own to repay")
    graceful = [a.id for a in agencies if a.settlement.grace_days > 0]
    other = PLACEMENTS.alias("other")
    async with gateway.db.connect() as conn:
        never = (
            await conn.execute(
                sa.select(C.id)
                .where(~sa.exists().where(P.case_id == C.id), C.balance_minor > 0)
                .order_by(C.id)
                .limit(1)
            )
        ).scalar()
        # Taken back (a hold, a payoff) from agencies without a grace window, held by nobody.
        between = (
            await conn.execute(
                sa.select(P.case_id, P.currency)
                .join(CASES, C.id == P.case_id)
                .where(
                    P.state == "recalled",
                    ~sa.exists().where(
                        other.c.case_id == P.case_id,
                        sa.or_(other.c.state.in_(OPEN_STATES), other.c.agency_id.in_(graceful)),
                    ),
                )
                .order_by((C.status == "held").desc(), P.case_id)
                .limit(1)
            )
        ).first()
    if never is not None:
        lines.append(
            FeedLine(f"RCPT-{stamp}-NEVER", str(never), 50_000, currency, received_at,
                     "a case that was never placed")
        )  # fmt: skip
    if between is not None:
        lines.append(
            FeedLine(f"RCPT-{stamp}-RECALLED", str(between.case_id), 20_000, between.currency,
                     received_at, "a case taken back from its agency, held by nobody")
        )  # fmt: skip
    lines.append(
        FeedLine(f"RCPT-{stamp}-UNKNOWN", UNKNOWN_CASE, 30_000, currency, received_at,
                 "a loan the lender never sent us: never placed, unknown to the gateway")
    )  # fmt: skip
    return lines


def write_feed(lines: list[FeedLine], path: Path) -> None:
    """The lender's feed as CSV (README "Lender payment feed")."""
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(FEED_COLUMNS)
        for f in lines:
            writer.writerow(
                (f.payment_id, "debtor", f.case_id, f.amount_minor, f.currency,
                 f.received_at.isoformat())
            )  # fmt: skip


async def _attributions(gateway: Gateway, act: MonthAct, payment_ids: list[str]) -> None:
    async with gateway.db.connect() as conn:
        act.unaccounted = await unaccounted_receipts(conn)
        rows = (
            await conn.execute(
                sa.select(L.payment_id, A.rule, A.amount_minor, A.reason)
                .select_from(ATTRIBUTIONS.join(RECEIPTS, L.id == A.receipt_id))
                .where(L.payment_id.in_(payment_ids))
                .order_by(L.payment_id, A.id)
            )
        ).all()
    counted: Counter[str] = Counter()
    minor: Counter[str] = Counter()
    for payment_id, rule, amount, reason in rows:
        counted[rule] += 1
        minor[rule] += int(amount)
        if rule == "unattributable":
            act.unattributable[str(payment_id)] = str(reason)
    act.by_rule, act.by_rule_minor = dict(counted), dict(minor)


async def _statements(gateway: Gateway, act: MonthAct, demo_dir: Path, settle: Settle) -> None:
    service = gateway.statements()
    issued: dict[str, tuple[int, int, str]] = {}
    for agency in sorted(gateway.agencies.values(), key=lambda a: a.id):
        if not agency.enabled or not agency.commission.periods:
            continue
        sid = await service.build(agency.id, act.month, actor="ops:demo")
        sha = await service.issue(sid, actor="ops:demo-checker")
        view = await service.show(sid)
        issued[agency.id] = (sid, int(str(view.statement["revision"])), sha)
    await settle()  # the statements reach the agencies on their channels
    answering = [
        a
        for a in sorted(gateway.agencies.values(), key=lambda a: a.id)
        if isinstance(a, WebhookAgency) and a.id in issued
    ]
    with_lines = [a for a in answering if await _lines(service, issued[a.id][0])]
    confirmer = with_lines[0] if with_lines else None
    disputer = with_lines[1] if len(with_lines) > 1 else None
    if confirmer is not None:
        sid, revision, sha = issued[confirmer.id]
        data: dict[str, object] = {"statement_id": sid, "revision": revision, "sha256": sha}
        status = await post_event(gateway, confirmer, "settlement.confirmed", data)
        if status != 200:
            act.skipped.append(f"{confirmer.id}: settlement.confirmed was answered {status}")
    if disputer is not None:
        sid, revision, _sha = issued[disputer.id]
        line = (await _lines(service, sid))[0]
        claimed = int(str(line.get("commission_minor") or 0)) * 3 // 2 + 100
        currency = str(line.get("currency") or "CNY")
        status = await post_event(
            gateway,
            disputer,
            "settlement.disputed",
            {
                "statement_id": sid,
                "revision": revision,
                "line_nos": [int(str(line["line_no"]))],
                "reason": DISPUTE_REASON,
                "claimed": {"amount_minor": claimed, "currency": currency},
            },
        )
        if status != 200:
            act.skipped.append(f"{disputer.id}: settlement.disputed was answered {status}")
        act.dispute = {
            "agency_id": disputer.id,
            "statement_id": sid,
            "line_nos": [int(str(line["line_no"]))],
            "commission_minor": int(str(line.get("commission_minor") or 0)),
            "claimed_minor": claimed,
            "reason": DISPUTE_REASON,
        }
        async with gateway.db.connect() as conn:
            found = (
                await conn.execute(
                    sa.select(MISMATCHES.c.id, MISMATCHES.c.kind, MISMATCHES.c.state)
                    .where(
                        MISMATCHES.c.kind == "settlement_disputed",
                        MISMATCHES.c.agency_id == disputer.id,
                    )
                    .order_by(MISMATCHES.c.id.desc())
                    .limit(1)
                )
            ).first()
        if found is not None:
            act.dispute.update(mismatch_id=found.id, mismatch_kind=found.kind,
                               mismatch_state=found.state)  # fmt: skip
    folder = demo_dir / "statements"
    folder.mkdir(exist_ok=True)
    for agency_id, (sid, revision, sha) in issued.items():
        view = await service.show(sid)
        s = view.statement
        files = []
        for document in view.documents:
            # What ops hand an SFTP agency (`settlement export`), kept for anyone to open.
            name, body = await service.document(sid, str(document["kind"]))
            (folder / name).write_bytes(body)
            files.append(str(folder / name))
        act.statements[agency_id] = {
            "statement_id": sid,
            "revision": revision,
            "state": s["state"],
            "currency": s["currency"],
            "lines": sum(1 for line in view.lines if not line.get("withheld")),
            "recovered_minor": s["recovered_minor"],
            "commission_minor": int(str(s["lines_minor"]))
            + int(str(s["floor_topup_minor"]))
            - int(str(s["ceiling_cut_minor"])),
            "total_minor": s["total_minor"],
            "tier": s.get("tier"),
            "sha256": sha,
            "documents": files,
        }


async def _lines(service: StatementService, statement_id: int) -> list[dict[str, object]]:
    view = await service.show(statement_id)
    return [dict(line) for line in view.lines if not line.get("withheld")]


async def run_month(gateway: Gateway, demo_dir: Path, *, settle: Settle) -> MonthAct:
    """Play the demo's month (module docstring); the gateway's inbound service must be
    started and ``settle`` deliver what was queued."""
    act = MonthAct()
    zone = ZoneInfo(gateway.settings.reconciliation.timezone)
    received_at = to_datetime(gateway.clock.now()) + timedelta(days=1)
    act.month = f"{received_at.astimezone(zone):%Y-%m}"
    lines = await plan_feed(gateway, act, received_at)
    await settle()  # the grace case's recall reaches its agency
    feed = demo_dir / f"payments-{act.month}.csv"
    write_feed(lines, feed)
    act.feed_file = str(feed)
    report = await import_feed(feed, db=gateway.db, now=to_datetime(gateway.clock.now()))
    if report.errors:
        act.skipped.extend(str(e) for e in report.errors)
    act.receipts = report.imported
    await gateway.recon_engine().run()
    await settle()  # payment.direct / payment.attributed to the agencies
    await _attributions(gateway, act, [f.payment_id for f in lines])
    await _statements(gateway, act, demo_dir, settle)
    act.waivers = await waiver_act(gateway)
    await settle()  # request.decided to the agency
    return act


__all__ = ["FeedLine", "MonthAct", "run_month", "write_feed"]
