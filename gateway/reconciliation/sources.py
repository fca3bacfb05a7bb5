"""What the batch reconciliation reads, as SQLAlchemy Core statements for either backend.

Every statement returns plain facts in the column order the pure passes expect
(gateway.reconciliation.event_audit, gateway.reconciliation.matching,
gateway.reconciliation.statements): times as whole seconds since the epoch, the few JSON fields a
rule needs extracted by the database (``json_extract`` on SQLite, ``->>`` on PostgreSQL), so no row
is parsed in Python.
"""

import sqlite3
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from gateway.reconciliation.contact_rules import CHANNELS
from gateway.store.recon_tables import LenderPayment, PaymentMatch, StatementRecord
from gateway.store.tables import AgencyEventRow, Case, Placement

PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
CASES = Case.__table__  # type: ignore[attr-defined]
EVENTS = AgencyEventRow.__table__  # type: ignore[attr-defined]
RECEIPTS = LenderPayment.__table__  # type: ignore[attr-defined]
MATCHES = PaymentMatch.__table__  # type: ignore[attr-defined]
STATEMENTS = StatementRecord.__table__  # type: ignore[attr-defined]
P, C, E, L, MT = PLACEMENTS.c, CASES.c, EVENTS.c, RECEIPTS.c, MATCHES.c


SQLITE_UNIXEPOCH = sqlite3.sqlite_version_info >= (3, 38, 0)
"""``unixepoch()`` (SQLite 3.38+) computes what ``CAST(strftime('%s', x) AS BIGINT)`` does
without formatting the number as text and parsing it back."""


def epoch_seconds(expr: ColumnElement[Any], dialect: str) -> ColumnElement[int]:
    """Whole seconds since the epoch of a stored timestamp or an ISO 8601 text (NULL stays
    NULL)."""
    if dialect == "sqlite":
        if SQLITE_UNIXEPOCH:
            return sa.func.unixepoch(expr, type_=sa.BigInteger)
        return sa.cast(sa.func.strftime("%s", expr), sa.BigInteger)
    if isinstance(expr.type, sa.String | sa.Text):
        expr = sa.cast(expr, sa.DateTime(timezone=True))
    return sa.cast(sa.func.floor(sa.extract("epoch", expr)), sa.BigInteger)


def json_text(column: ColumnElement[Any], key: str, dialect: str) -> ColumnElement[str]:
    """The text of ``key`` in a JSON object stored as text."""
    if dialect == "sqlite":
        return sa.func.json_extract(column, f"$.{key}")
    text: ColumnElement[str] = sa.cast(column, sa.JSON)[key].as_string()
    return text


def _contact_code(dialect: str) -> ColumnElement[int]:
    """``2 * channel number + effective`` (gateway.reconciliation.contact_rules.CHANNELS)."""
    flag = json_text(E.data, "effective", dialect)
    effective = sa.case((flag == 1 if dialect == "sqlite" else flag == "true", 1), else_=0)
    # A simple CASE extracts the channel once, not once per WHEN.
    channel = sa.case(
        {name: 2 * n for n, name in CHANNELS.items()},
        value=json_text(E.data, "channel", dialect),
        else_=2 * max(CHANNELS) + 2,
    )
    return channel + effective


def affected_placements(after: int, upto: int) -> sa.Select[Any]:
    """Placements of every debtor with an event in (after, upto]: the events pass must see
    their whole history (payments so far, calls that day), not only the new events."""
    new_debtors = (
        sa.select(C.debtor_id)
        .select_from(EVENTS.join(PLACEMENTS, P.id == E.placement_id).join(CASES, C.id == P.case_id))
        .where(E.id > after, E.id <= upto)
    )
    return (
        sa.select(P.id)
        .select_from(PLACEMENTS.join(CASES, C.id == P.case_id))
        .where(C.debtor_id.in_(new_debtors))
    )


def placement_facts(
    dialect: str, only: sa.Select[Any] | None = None, *, named_upto: int | None = None
) -> sa.Select[Any]:
    """(id, agency_id, currency, balance_minor, placed_s, recalled_s, debtor_id) of every
    placement, or of those in ``only``, or of those an event up to ``named_upto`` names (a
    placement no event names has nothing to be judged against)."""
    query = sa.select(
        P.id,
        P.agency_id,
        P.currency,
        P.balance_minor,
        epoch_seconds(P.placed_at, dialect),
        epoch_seconds(P.recalled_at, dialect),
        C.debtor_id,
    ).select_from(PLACEMENTS.join(CASES, C.id == P.case_id))
    if only is not None:
        query = query.where(P.id.in_(only))
    if named_upto is not None:
        named = sa.select(E.id).where(E.placement_id == P.id, E.id <= named_upto)
        query = query.where(named.exists())
    return query


def _event_columns(dialect: str) -> sa.Select[Any]:
    etype = E.event_type
    return sa.select(
        E.id,
        E.agency_id,
        sa.func.coalesce(E.placement_id, ""),
        etype,
        E.ref,
        E.amount_minor,
        E.currency,
        epoch_seconds(E.occurred_at, dialect),
        sa.case(
            (
                etype == "payment.reported",
                epoch_seconds(json_text(E.data, "paid_at", dialect), dialect),
            ),
            (
                etype == "contact.attempted",
                epoch_seconds(json_text(E.data, "attempted_at", dialect), dialect),
            ),
        ),
        sa.case((etype == "contact.attempted", _contact_code(dialect))),
        sa.case(
            (etype.in_(["case.closed", "case.returned"]), json_text(E.data, "reason", dialect))
        ),
    )


def event_facts(
    dialect: str, *, upto: int, after: int = 0, only: sa.Select[Any] | None = None
) -> sa.Select[Any]:
    """The events pass's input, in id order (see gateway.reconciliation.event_audit.EventFacts):
    every event in (after, upto], plus the earlier events of the placements in ``only``."""
    query = _event_columns(dialect).where(E.id <= upto)
    if only is not None:
        query = query.where(sa.or_(E.id > after, E.placement_id.in_(only)))
    elif after:
        query = query.where(E.id > after)
    return query.order_by(E.id)


def event_window(dialect: str) -> sa.Select[Any]:
    """``event_facts`` of the events in a window (``after``, ``upto``], both bind
    parameters, for gateway.store.row_stream's ``stream_windows``. On SQLite it is ordered
    by an expression of the id, which the database sorts: it computes the whole window
    before it returns a row."""
    query = _event_columns(dialect).where(
        E.id > sa.bindparam("after", type_=sa.BigInteger),
        E.id <= sa.bindparam("upto", type_=sa.BigInteger),
    )
    return query.order_by(E.id + 0 if dialect == "sqlite" else E.id)


def unmatched_payments(dialect: str, agency_ids: list[str], *, upto: int) -> sa.Select[Any]:
    """Applied agency payments up to ``upto`` that no match consumed (the first report of
    each; a harmless repeat is not a second payment), net of applied reversals: (event id,
    agency, placement, ref, amount, currency, paid_s). Read through the (agency, type, ref)
    index, so its cost follows the payments, not the whole event log."""
    other = EVENTS.alias("other")

    def same_payment(event_type: str) -> sa.ColumnElement[bool]:
        return sa.and_(
            other.c.agency_id == E.agency_id,
            other.c.event_type == event_type,
            other.c.ref == E.ref,
            other.c.placement_id == E.placement_id,
            other.c.applied,
        )

    reversed_ = (
        sa.select(sa.func.coalesce(sa.func.sum(other.c.amount_minor), 0))
        .where(same_payment("payment.reversed"), other.c.id <= upto)
        .scalar_subquery()
    )
    repeat = sa.select(other.c.id).where(same_payment("payment.reported"), other.c.id < E.id)
    matched = sa.select(MT.event_id).where(MT.event_id == E.id)
    return (
        sa.select(
            E.id,
            E.agency_id,
            E.placement_id,
            E.ref,
            E.amount_minor - reversed_,
            E.currency,
            epoch_seconds(json_text(E.data, "paid_at", dialect), dialect),
        )
        .where(
            E.agency_id.in_(agency_ids),
            E.event_type == "payment.reported",
            E.applied,
            E.id <= upto,
            ~matched.exists(),
            ~repeat.exists(),
        )
        .order_by(E.id)
    )


def matched_events(event_ids: list[int]) -> sa.Select[Any]:
    """Which of these agency payment events a match has consumed."""
    return sa.select(MT.event_id).where(MT.event_id.in_(event_ids)).distinct()


def lender_receipts(dialect: str, *, upto: int) -> sa.Select[Any]:
    """Still unmatched receipts: (id, kind, placement, agency, ref, amount, currency,
    received_s, period start, period end, feed id, the lender's receipt id)."""
    matched = sa.select(MT.lender_payment_id).where(MT.lender_payment_id == L.id).exists()
    return (
        sa.select(
            L.id,
            L.kind,
            L.placement_id,
            L.agency_id,
            L.agency_payment_ref,
            L.amount_minor,
            L.currency,
            epoch_seconds(L.received_at, dialect),
            L.period_start,
            L.period_end,
            L.feed_id,
            L.payment_id,
        )
        .where(L.id <= upto, ~matched)
        .order_by(L.id)
    )


def pending_statements(agency_ids: list[str], *, upto: int) -> sa.Select[Any]:
    """Statements received and not yet reconciled: (event id, agency, data)."""
    done = sa.select(STATEMENTS.c.event_id).where(STATEMENTS.c.event_id == E.id).exists()
    return (
        sa.select(E.id, E.agency_id, E.data)
        .where(
            E.agency_id.in_(agency_ids),
            E.event_type == "statement.submitted",
            E.applied,
            E.id <= upto,
            ~done,
        )
        .order_by(E.id)
    )


def held_placements(dialect: str, agency_id: str) -> sa.Select[Any]:
    """(id, state, currency, outstanding, placed_s, recalled_s) of every placement ever
    placed with the agency."""
    return sa.select(
        P.id,
        P.state,
        P.currency,
        P.balance_minor - P.collected_minor,
        epoch_seconds(P.placed_at, dialect),
        epoch_seconds(P.recalled_at, dialect),
    ).where(P.agency_id == agency_id)


__all__ = [
    "affected_placements",
    "epoch_seconds",
    "event_facts",
    "event_window",
    "held_placements",
    "json_text",
    "lender_receipts",
    "matched_events",
    "pending_statements",
    "placement_facts",
    "unmatched_payments",
]
