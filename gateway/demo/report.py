"""The demo's report: what the run left in the database, counted, and printed as tables.

``count_rows`` groups the rows the loop wrote (cases, placements, packets, deliveries,
events, mismatches, evidence) by their kind or state; ``print_summary`` renders those counts
and the run's notes with rich; ``firm_note`` is the note line for one sandbox law firm.
"""

import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from gateway.bootstrap import Gateway
from gateway.sandbox.law_firm import SandboxLawFirm
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
    ):
        values = summary[key]
        assert isinstance(values, dict)
        table = Table(title=title, title_justify="left", show_header=False, min_width=40)
        for name, n in values.items():
            table.add_row(str(name), str(n))
        table.add_row("[bold]total[/]", f"[bold]{sum(values.values())}[/]")
        console.print(table)
    for line in summary["notes"]:  # type: ignore[attr-defined]
        console.print(f"• {line}", highlight=False)


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
        f"{s.decrypted} decrypted, {s.signatures_verified} signatures verified; {replies}; "
        f"reply variants: {faults}"
    )


__all__ = ["count_rows", "firm_note", "print_summary"]
