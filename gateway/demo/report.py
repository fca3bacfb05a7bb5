"""The demo's report: what the run left in the database, counted, and printed as tables.

``count_rows`` groups the rows the loop wrote (cases, placements, packets, deliveries,
events, mismatches, evidence) by their kind or state; ``print_summary`` renders those counts
and the run's notes with rich (the demo month's block with ``print_month``); ``firm_note``
is the note line for one sandbox law firm.
"""

from typing import Any

import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from gateway.bootstrap import Gateway
from gateway.sandbox.law_firm import SandboxLawFirm
from gateway.sandbox.webhook_agency import SandboxWebhookAgency
from gateway.store.document_tables import CaseDocument, DocumentFetch
from gateway.store.notice_tables import BorrowerNotice, VerificationCheck
from gateway.store.tables import (
    AgencyEventRow,
    Case,
    DeliveryAttempt,
    EvidenceLeaf,
    Mismatch,
    OutboxItem,
    Placement,
)


async def count_rows(gateway: Gateway) -> dict[str, object]:
    """Rows of each table the loop writes, grouped by kind or state (the summary's body)."""

    def by(column: sa.ColumnElement[str], table: sa.Table) -> sa.Select[str, int]:
        return (
            sa.select(column, sa.func.count()).select_from(table).group_by(column).order_by(column)
        )

    cases = Case.__table__  # type: ignore[attr-defined]
    placements = Placement.__table__  # type: ignore[attr-defined]
    outbox = OutboxItem.__table__  # type: ignore[attr-defined]
    attempts = DeliveryAttempt.__table__  # type: ignore[attr-defined]
    events = AgencyEventRow.__table__  # type: ignore[attr-defined]
    mismatches = Mismatch.__table__  # type: ignore[attr-defined]
    leaves = EvidenceLeaf.__table__  # type: ignore[attr-defined]
    documents = CaseDocument.__table__  # type: ignore[attr-defined]
    fetches = DocumentFetch.__table__  # type: ignore[attr-defined]
    notices = BorrowerNotice.__table__  # type: ignore[attr-defined]
    checks = VerificationCheck.__table__  # type: ignore[attr-defined]
    async with gateway.db.connect() as conn:

        async def grouped(query: sa.Select[str, int]) -> dict[str, int]:
            return {str(k): int(v) for k, v in (await conn.execute(query)).all()}

        return {
            "cases_by_bucket": await grouped(by(cases.c.bucket, cases)),
            "cases_by_status": await grouped(by(cases.c.status, cases)),
            "placements_by_agency": await grouped(by(placements.c.agency_id, placements)),
            "placements_by_state": await grouped(by(placements.c.state, placements)),
            "packets_by_type": await grouped(by(outbox.c.packet_type, outbox)),
            "outbox_by_state": await grouped(by(outbox.c.state, outbox)),
            "delivery_attempts_by_outcome": await grouped(by(attempts.c.outcome, attempts)),
            "events_by_type": await grouped(by(events.c.event_type, events)),
            "mismatches_by_kind": await grouped(by(mismatches.c.kind, mismatches)),
            "evidence_leaves_by_kind": await grouped(by(leaves.c.kind, leaves)),
            "documents_by_kind": await grouped(by(documents.c.kind, documents)),
            "document_fetches_by_outcome": await grouped(by(fetches.c.outcome, fetches)),
            "notices_by_kind": await grouped(by(notices.c.kind, notices)),
            "notices_by_state": await grouped(by(notices.c.state, notices)),
            "verification_checks_by_outcome": await grouped(by(checks.c.outcome, checks)),
        }


def print_summary(console: Console, summary: dict[str, object]) -> None:
    """The counts as one table each, then the notes."""
    console.rule("[bold]agency-gateway demo[/]")
    for title, key in (
        ("cases by bucket", "cases_by_bucket"),
        ("cases by status", "cases_by_status"),
        ("placements by agency", "placements_by_agency"),
        ("placements by state", "placements_by_state"),
        ("packets by type", "packets_by_type"),
        ("deliveries (outbox items by state)", "outbox_by_state"),
        ("delivery attempts by outcome", "delivery_attempts_by_outcome"),
        ("agency events by type", "events_by_type"),
        ("mismatches by kind", "mismatches_by_kind"),
        ("evidence leaves by kind", "evidence_leaves_by_kind"),
        ("documents by kind", "documents_by_kind"),
        ("document fetches by outcome", "document_fetches_by_outcome"),
        ("borrower notices by kind", "notices_by_kind"),
        ("borrower notices by state", "notices_by_state"),
        ("collector checks by outcome", "verification_checks_by_outcome"),
    ):
        values = summary[key]
        assert isinstance(values, dict)
        table = Table(title=title, title_justify="left", show_header=False, min_width=40)
        for name, n in values.items():
            table.add_row(str(name), str(n))
        table.add_row("[bold]total[/]", f"[bold]{sum(values.values())}[/]")
        console.print(table)
    month = summary.get("month")
    if isinstance(month, dict):
        print_month(console, month)
    for line in summary["notes"]:  # type: ignore[attr-defined]
        console.print(f"• {line}", highlight=False)


def _money(minor: object) -> str:
    value = int(str(minor))
    sign = "-" if value < 0 else ""
    return f"{sign}{abs(value) // 100:,}.{abs(value) % 100:02d}"


def print_month(console: Console, month: dict[str, Any]) -> None:
    """The demo month (gateway.demo.month.MonthAct.as_json): receipts by attribution rule,
    the unattributable ones with their reasons, each agency's statement, the dispute and the
    two waiver decisions."""
    console.rule(f"[bold]month {month['month']}[/]")
    receipts = Table(
        title=f"lender receipts by attribution rule ({month['receipts']} receipts)",
        title_justify="left",
        min_width=40,
    )
    receipts.add_column("rule")
    receipts.add_column("rows", justify="right")
    receipts.add_column("minor units", justify="right")
    for rule, n in month["attributed_by_rule"].items():
        receipts.add_row(rule, str(n), str(month["attributed_minor_by_rule"].get(rule, 0)))
    console.print(receipts)
    for payment_id, reason in month["unattributable"].items():
        console.print(f"  unattributable {payment_id}: {reason}", highlight=False)
    for payment_id, why in month["unaccounted"].items():
        console.print(f"  [red]NOT ACCOUNTED FOR[/] {payment_id}: {why}", highlight=False)
    currencies = sorted({str(s["currency"]) for s in month["statements"].values()})
    statements = Table(
        title=f"settlement statements ({', '.join(currencies)})",
        title_justify="left",
        min_width=40,
    )
    for name in ("agency", "id", "state", "lines", "recovered", "tier", "commission", "total"):
        left = name in ("agency", "state", "tier")
        statements.add_column(name, justify="left" if left else "right")
    for agency_id, s in month["statements"].items():
        statements.add_row(
            agency_id,
            f"{s['statement_id']} r{s['revision']}",
            str(s["state"]),
            str(s["lines"]),
            _money(s["recovered_minor"]),
            str(s.get("tier") or "-"),
            _money(s["commission_minor"]),
            _money(s["total_minor"]),
        )
    console.print(statements)
    dispute = month["dispute"]
    if dispute:
        console.print(
            f"• dispute: {dispute['agency_id']} disputes line(s) {dispute['line_nos']} of "
            f"statement {dispute['statement_id']} (commission "
            f"{_money(dispute['commission_minor'])}, claims {_money(dispute['claimed_minor'])}: "
            f"{dispute['reason']}); mismatch "
            f"{dispute.get('mismatch_id')} {dispute.get('mismatch_kind')}",
            highlight=False,
        )
    waivers = month["waivers"]
    for decision in ("approved", "rejected"):
        record = waivers.get(decision)
        if record:
            why = f" ({record['decision_reason']})" if record.get("decision_reason") else ""
            console.print(
                f"• waiver {decision}: {waivers['agency_id']} {record.get('request_id')} on "
                f"{record.get('placement_id')}, now {record.get('state')}{why}",
                highlight=False,
            )
    for line in month["skipped"]:
        console.print(f"• month: {line}", highlight=False)
    for line in month["problems"]:
        console.print(f"[red]• month check failed:[/] {line}", highlight=False)


def firm_note(firm: SandboxLawFirm) -> str:
    """One summary note on what a sandbox law firm received and answered."""
    s = firm.stats
    faults = ", ".join(f"{k} {n}" for k, n in sorted(s.faults.items())) or "none"
    replies = (
        f"{s.replies_appended} replies put in its IMAP mailbox"
        if not firm.reply_path_skipped
        else "no replies (reply path skipped)"
    )
    return (
        f"law firm {firm.agency.id}: {s.mails_received} referral mails over SMTP+STARTTLS, "
        f"{s.decrypted} decrypted, {s.signatures_verified} signatures verified; "
        f"{s.documents_verified} documents matched the SHA-256 in the body "
        f"({s.documents_downloaded} by link, {len(s.document_problems)} did not); {replies}; "
        f"reply variants: {faults}"
    )


def documents_note(sandboxes: list[SandboxWebhookAgency]) -> str:
    """One summary note on the documents the sandbox webhook agencies fetched and checked."""
    total: dict[str, int] = {}
    for sandbox in sandboxes:
        for name, n in sandbox.documents.stats.as_dict().items():
            total[name] = total.get(name, 0) + n
    return (
        f"documents: webhook agencies fetched {total.get('fetched', 0)} of "
        f"{total.get('listed', 0)} listed, {total.get('verified', 0)} matched their SHA-256, "
        f"{total.get('gone_before_fetch', 0)} recalled before the agency fetched them (410), "
        f"{total.get('failed', 0)} failed; {total.get('letters_verified', 0)} letter "
        f"signatures verified ({total.get('letters_failed', 0)} did not); after recall "
        f"{total.get('refused_after_recall', 0)} fetches refused with 410, "
        f"{total.get('served_after_recall', 0)} served"
    )


__all__ = ["count_rows", "documents_note", "firm_note", "print_month", "print_summary"]
