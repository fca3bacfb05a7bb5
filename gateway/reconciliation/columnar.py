"""The events pass as set-based queries in DuckDB, over the store read in place.

Theory of operation
-------------------
``open_store`` starts an in-process DuckDB, loads the scanner extension from its PyPI
package (``duckdb_extension_sqlite_scanner`` / ``duckdb_extension_postgres_scanner``; nothing
is installed or downloaded) and ATTACHes the store read-only: the SQLite file, or the
PostgreSQL database through libpq. A SQLite database in memory cannot be attached from
another connection: that is a ``ColumnarUnavailable`` naming the URL.

``audit_events`` re-derives what gateway.reconciliation.event_audit.EventAudit derives, the
pure reference it is tested against, as one pass of joins and window functions:

1. Every event of the run joins its placement (and the placement's case, for the debtor);
   the refusal rules (unknown placement, wrong agency, currency, activity after the recall)
   are a ``CASE`` on the joined row. The few JSON fields are taken out of the events in
   their scan, before the join, and a whole run's bound after it (``_events_sql`` says
   why): the join's hash table holds the placements' few columns.
2. The payments and reversals of each (placement, ref) run through a recursive CTE, one
   step per event of the ref: new payment, harmless repeat, conflicting duplicate, matched
   or unmatched reversal, and the amount left after it. The depth is the longest history
   of one ref, not the number of events.
3. The amount collected is a running sum over each placement's accepted events; the status
   the agency reported before an event comes from the last ``legal``/``ended`` and the last
   ``disputed`` events before it (a dispute does not take a case out of legal action).
4. The contact rules (gateway.reconciliation.contact_rules) are a local time (ICU's offset
   of the zone per quarter hour, as the pure rules cache it),
   ``row_number`` per agency, debtor and local day for the daily cap, and a ``RANGE``
   window of 7 days for the rolling cap.

Only the breaks and the counts leave DuckDB; Python formats each break's detail with the
same words and fields as the pure audit (``_describe``). The counts come per window of
``batch_events`` event ids, so the engine commits the breaks window by window with the
checkpoint after each, as before. DuckDB calls block, and its scanner carries a copy of
SQLite of its own: the engine runs them in a worker process
(gateway.reconciliation.columnar_worker), never in the gateway's.
"""

import importlib.util
import itertools
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import duckdb
from sqlalchemy.engine import make_url

from gateway.errors import GatewayError
from gateway.lifecycle import ACTIVITY_EVENTS, AGENCY_WIDE_EVENTS
from gateway.reconciliation.contact_rules import CHANNELS, INTRUSIVE, ContactRules, violation
from gateway.reconciliation.event_audit import _NO_STATE, SKEW_SECONDS, Break, ContactFacts
from gateway.reconciliation.event_rules import PLACEMENT_DATE_GRACE
from gateway.reconciliation.kinds import MismatchDraft
from gateway.reconciliation.match_inputs import AgencyPayment
from gateway.reconciliation.sources import CASES, EVENTS, PLACEMENTS

DUCKDB_VERSION: Final = "v1.5.5"
_SCANNERS: Final = {
    "sqlite": ("duckdb_extension_sqlite_scanner", "sqlite_scanner"),
    "postgresql": ("duckdb_extension_postgres_scanner", "postgres_scanner"),
}
_GRACE: Final = int(PLACEMENT_DATE_GRACE.total_seconds())
_REFUSALS: Final = ("unknown_placement", "wrong_agency", "currency_mismatch")
DAY: Final = 86_400


class ColumnarUnavailable(GatewayError):
    """The columnar engine cannot read this store (a database in memory, a missing
    scanner extension)."""


def extension_path(dialect: str) -> Path:
    """The scanner extension shipped in its PyPI package, for ``LOAD``."""
    package, name = _SCANNERS[dialect]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ColumnarUnavailable(f"the Python package {package} is not installed")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "extensions" / DUCKDB_VERSION / f"{name}.duckdb_extension"
        if path.exists():
            return path
    raise ColumnarUnavailable(f"{package} has no {name} extension for DuckDB {DUCKDB_VERSION}")


@contextmanager
def open_store(url: str, *, threads: int = 2) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection of the process's DuckDB (the columnar worker's: never call this in the
    gateway's process, see gateway.reconciliation.columnar_worker) with the store attached
    read-only and the views ``events``, ``placements`` and ``cases`` over it."""
    parsed = make_url(url)
    dialect = parsed.get_backend_name()
    if dialect not in _SCANNERS:
        raise ColumnarUnavailable(f"no columnar reader for {dialect} databases")
    if dialect == "sqlite":
        if parsed.database in (None, "", ":memory:") or "mode=memory" in str(parsed):
            raise ColumnarUnavailable(
                f"reconciliation reads the store from a file; {parsed.render_as_string()} "
                "is a database in memory"
            )
        target, kind = str(Path(parsed.database).resolve()), "sqlite"
    else:
        # libpq takes the URL itself; it holds the password, so it is never logged.
        target = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        kind = "postgres"
    alias = f"store_{next(_ATTACHED)}"
    con = _instance(dialect, threads).cursor()
    attached = False
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(f"ATTACH '{_quoted(target)}' AS {alias} (TYPE {kind}, READ_ONLY)")
        attached = True
        schema = alias if dialect == "sqlite" else f"{alias}.public"
        for name, table in (("events", EVENTS), ("placements", PLACEMENTS), ("cases", CASES)):
            con.execute(f"CREATE TEMP VIEW {name} AS SELECT * FROM {schema}.{table.name}")
        # Stored timestamps are UTC (TIMESTAMP on SQLite, TIMESTAMPTZ on PostgreSQL); the
        # times inside the events' JSON are ISO 8601 texts with their offset.
        con.execute("CREATE TEMP MACRO ts_s(x) AS epoch_us(x) // 1000000")
        con.execute(
            "CREATE TEMP MACRO text_s(x) AS epoch_us(TRY_CAST(x AS TIMESTAMPTZ)) // 1000000"
        )
        yield con
    finally:
        try:
            if attached:
                con.execute(f"DETACH {alias}")
        finally:
            con.close()


_LOCK = threading.Lock()
_SHARED: dict[str, duckdb.DuckDBPyConnection] = {}
_ATTACHED = itertools.count(1)


def _instance(dialect: str, threads: int) -> duckdb.DuckDBPyConnection:
    """The process's DuckDB with the scanner loaded. Loading verifies the extension's
    signature over its 35 MB, a third of a second: done once per process, each run then
    takes a connection of its own (its temp tables and views are its own) and attaches
    the store under a name of its own."""
    with _LOCK:
        con = _SHARED.get("db")
        if con is None:
            con = _SHARED["db"] = duckdb.connect(
                config={"threads": threads, "autoinstall_known_extensions": False}
            )
        if dialect not in _SHARED:
            con.execute(f"LOAD '{_quoted(str(extension_path(dialect)))}'")
            _SHARED[dialect] = con
        return con


def _quoted(text: str) -> str:
    return text.replace("'", "''")


def _sql_list(values: Any) -> str:
    """A list literal for ``list_contains`` (an ``IN`` list of five or more becomes a join)."""
    return "[" + ", ".join(f"'{_quoted(v)}'" for v in sorted(values)) + "]"


@dataclass(slots=True)
class EventPass:
    """What the events pass found: the breaks and counts of the events after ``emit_after``
    (by window of event ids), the contact violations, and the payments the three-way match
    reads."""

    breaks: dict[int, list[Break]] = field(default_factory=dict)
    """Breaks by window (event id // window)."""
    counts: dict[int, Counter[str]] = field(default_factory=dict)
    """Classified events by window and verdict."""
    violations: list[Break] = field(default_factory=list)
    contacts: int = 0
    payments: dict[tuple[str, str], AgencyPayment] = field(default_factory=dict)
    known: frozenset[str] = frozenset()
    """Placements the pass loaded, in an incremental run (see ``knows``)."""
    incremental: bool = False

    def knows(self, placement_id: str) -> bool:
        return not self.incremental or placement_id in self.known


_ACTIVITY = _sql_list(ACTIVITY_EVENTS)
_AGENCY_WIDE = _sql_list(AGENCY_WIDE_EVENTS)
_NO_STATE_SQL = _sql_list(_NO_STATE)
_CHANNEL_CASE = " ".join(f"WHEN '{name}' THEN {2 * n}" for n, name in CHANNELS.items())
_OTHER_CHANNEL = 2 * max(CHANNELS) + 2
_QUIET = ", ".join(
    str(2 * n + e) for n, name in CHANNELS.items() if name in INTRUSIVE for e in (0, 1)
)


def _events_sql(*, incremental: bool) -> str:
    if incremental:
        scope = """WHERE e.id <= $upto AND (e.id > $after OR e.placement_id IN (
            SELECT p.id FROM placements p JOIN cases c ON c.id = p.case_id
            WHERE c.debtor_id IN (
                SELECT c2.debtor_id FROM events e2
                JOIN placements p2 ON p2.id = e2.placement_id
                JOIN cases c2 ON c2.id = p2.case_id
                WHERE e2.id > $after AND e2.id <= $upto)))"""
        bound = ""
    else:
        # A whole run's bound is applied after the join, in a form the optimizer cannot
        # push into the events' scan: with the filter there it expects fewer events than
        # placements and builds the join's hash table on the events, a dozen columns of a
        # million rows, instead of on the placements' seven (a fifth of this statement).
        scope = ""
        bound = "WHERE CASE WHEN p.id IS NULL THEN e.id ELSE e.id END <= $upto"
    return f"""
    CREATE OR REPLACE TEMP TABLE cls AS
    SELECT id, agency, pid, etype, ref, amount, currency, occurred_s,
        coalesce(paid_s, text_s(contact[1])) AS at_s,
        CASE WHEN etype = 'contact.attempted' THEN
            (CASE contact[2] {_CHANNEL_CASE} ELSE {_OTHER_CHANNEL} END)
            + (CASE WHEN contact[3] = 'true' THEN 1 ELSE 0 END)
        END AS code,
        reason, known, p_agency, p_currency, balance, placed_s, recalled_s, case_id,
        CASE
            WHEN NOT known THEN
                CASE WHEN list_contains({_AGENCY_WIDE}, etype) THEN 'skip'
                ELSE 'unknown_placement' END
            WHEN p_agency <> agency THEN 'wrong_agency'
            WHEN amount IS NOT NULL AND currency IS DISTINCT FROM p_currency
                THEN 'currency_mismatch'
            WHEN recalled_s IS NOT NULL AND list_contains({_ACTIVITY}, etype)
                AND occurred_s > recalled_s THEN 'activity_after_recall'
            WHEN etype = 'contact.attempted' THEN 'contact'
            WHEN list_contains({_NO_STATE_SQL}, etype) THEN 'ok'
            ELSE 'book'
        END AS verdict
    FROM (
        SELECT e.*, p.id IS NOT NULL AS known, p.agency_id AS p_agency,
            p.currency AS p_currency, p.balance_minor AS balance, ts_s(p.placed_at) AS placed_s,
            ts_s(p.recalled_at) AS recalled_s, p.case_id
        FROM (
            -- The JSON fields are taken out before the join: the raw text never enters
            -- its hash table.
            SELECT e.id, e.agency_id AS agency, coalesce(e.placement_id, '') AS pid,
                e.placement_id, e.event_type AS etype, e.ref, e.amount_minor AS amount,
                e.currency, ts_s(e.occurred_at) AS occurred_s,
                CASE WHEN e.event_type = 'payment.reported'
                    THEN text_s(json_extract_string(e.data, '$.paid_at')) END AS paid_s,
                CASE WHEN e.event_type = 'contact.attempted' THEN json_extract_string(
                    e.data, ['$.attempted_at', '$.channel', '$.effective']) END AS contact,
                CASE WHEN e.event_type IN ('case.closed', 'case.returned')
                    THEN json_extract_string(e.data, '$.reason') END AS reason
            FROM events e {scope}
        ) e LEFT JOIN placements p ON p.id = e.placement_id
        {bound}
    );

    CREATE OR REPLACE TEMP TABLE pay AS
    SELECT id, pid, coalesce(ref, '') AS ref, etype = 'payment.reported' AS report,
        coalesce(amount, 0) AS amount,
        row_number() OVER (PARTITION BY pid, coalesce(ref, '') ORDER BY id) AS k
    FROM cls WHERE verdict = 'book' AND etype IN ('payment.reported', 'payment.reversed');

    CREATE OR REPLACE TEMP TABLE chain AS
    WITH RECURSIVE steps(id, pid, ref, k, report, amount, before, after) AS (
        SELECT id, pid, ref, k, report, amount, NULL::BIGINT,
            CASE WHEN report THEN amount END
        FROM pay WHERE k = 1
        UNION ALL
        SELECT n.id, n.pid, n.ref, n.k, n.report, n.amount, s.after,
            CASE
                WHEN n.report THEN coalesce(s.after, n.amount)
                WHEN s.after IS NULL OR n.amount > s.after THEN s.after
                WHEN s.after = n.amount THEN NULL
                ELSE s.after - n.amount
            END
        FROM steps s JOIN pay n ON n.pid = s.pid AND n.ref = s.ref AND n.k = s.k + 1
    )
    SELECT id, pid, ref, k, amount, before, after,
        CASE
            WHEN report AND before IS NULL THEN 'new'
            WHEN report AND before = amount THEN 'repeat'
            WHEN report THEN 'conflict'
            WHEN before IS NULL OR amount > before THEN 'unmatched'
            ELSE 'reversed'
        END AS outcome
    FROM steps;

    CREATE OR REPLACE TEMP TABLE bk AS
    SELECT b.id, b.etype, b.occurred_s, b.at_s, b.reason, b.balance, b.placed_s, b.recalled_s,
        ch.outcome, ch.before,
        coalesce(CASE ch.outcome WHEN 'new' THEN ch.amount WHEN 'reversed' THEN -ch.amount END, 0)
            AS delta,
        sum(coalesce(CASE ch.outcome WHEN 'new' THEN ch.amount
            WHEN 'reversed' THEN -ch.amount END, 0)) OVER upto_here AS collected_after,
        last_value(CASE b.etype WHEN 'legal.action' THEN 'legal'
            WHEN 'case.returned' THEN 'ended' WHEN 'case.closed' THEN 'ended' END
            IGNORE NULLS) OVER before_here AS last_status,
        max(CASE WHEN b.etype IN ('legal.action', 'case.returned', 'case.closed')
            THEN b.id END) OVER before_here AS last_status_id,
        max(CASE WHEN b.etype = 'dispute.opened' THEN b.id END) OVER before_here
            AS last_dispute_id
    FROM cls b LEFT JOIN chain ch ON ch.id = b.id
    WHERE b.verdict = 'book'
    WINDOW upto_here AS (PARTITION BY b.pid ORDER BY b.id
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW),
        before_here AS (PARTITION BY b.pid ORDER BY b.id
            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING);

    CREATE OR REPLACE TEMP TABLE found AS
    WITH judged AS (
        SELECT *,
            last_dispute_id IS NOT NULL AND last_dispute_id > coalesce(last_status_id, 0)
                AND coalesce(last_status, '') <> 'legal' AS disputed,
            collected_after - delta AS collected_before,
            recalled_s IS NOT NULL AND occurred_s >= recalled_s AS recalled_before
        FROM bk
    )
    SELECT id, 0 AS seq, 'conflicting_duplicate' AS kind FROM judged WHERE outcome = 'conflict'
    UNION ALL SELECT id, 1, 'date_out_of_window' FROM judged
        WHERE outcome = 'new' AND at_s IS NOT NULL
        AND (at_s < placed_s - {_GRACE} OR at_s > occurred_s + {SKEW_SECONDS})
    UNION ALL SELECT id, 2, 'status_conflict' FROM judged WHERE outcome = 'new' AND disputed
    UNION ALL SELECT id, 3, 'over_collection' FROM judged
        WHERE outcome = 'new' AND collected_after > balance
    UNION ALL SELECT id, 0, 'unmatched_reversal' FROM judged WHERE outcome = 'unmatched'
    UNION ALL SELECT id, 0, 'status_conflict' FROM judged
        WHERE reason IS NOT NULL AND NOT recalled_before AND (
            (etype = 'case.closed' AND reason = 'paid_in_full' AND collected_before < balance)
            OR (etype = 'case.returned' AND reason = 'recalled'));
    """


_BREAKS_SQL = """
SELECT c.id, c.agency, c.pid, c.etype, c.ref, c.amount, c.currency, c.occurred_s, c.at_s,
    c.reason, c.p_agency, c.p_currency, c.balance, c.placed_s, c.recalled_s,
    f.kind, b.before, b.collected_after, b.collected_after - b.delta AS collected_before
FROM (
    SELECT id, seq, kind FROM found
    UNION ALL
    SELECT id, 0, verdict FROM cls
    WHERE verdict IN ('unknown_placement', 'wrong_agency', 'currency_mismatch',
        'activity_after_recall')
) f
JOIN cls c ON c.id = f.id
LEFT JOIN bk b ON b.id = f.id
WHERE f.id > $emit_after
ORDER BY f.id, f.seq
"""

_COUNTS_SQL = """
WITH verdicts AS (
    SELECT c.id, CASE
        WHEN c.verdict IN ('contact', 'ok') THEN 'ok'
        WHEN c.verdict <> 'book' THEN c.verdict
        WHEN b.outcome = 'repeat' THEN 'repeat'
        WHEN f.id IS NOT NULL THEN NULL
        ELSE 'ok'
    END AS verdict
    FROM cls c LEFT JOIN bk b ON b.id = c.id
    LEFT JOIN (SELECT DISTINCT id FROM found) f ON f.id = c.id
    WHERE c.id > $emit_after AND c.verdict <> 'skip'
)
SELECT id // $window AS w, verdict, count(*) FROM verdicts WHERE verdict IS NOT NULL
GROUP BY ALL
UNION ALL
SELECT id // $window, kind, count(*) FROM found WHERE id > $emit_after GROUP BY ALL
"""

_PAYMENTS_SQL = """
WITH last_new AS (
    SELECT pid, ref, arg_max(id, id) AS id FROM chain WHERE outcome = 'new' GROUP BY ALL
), final AS (
    SELECT pid, ref, after AS amount FROM chain
    QUALIFY k = max(k) OVER (PARTITION BY pid, ref)
)
SELECT c.id, c.agency, c.pid, l.ref, coalesce(f.amount, 0), coalesce(c.currency, ''),
    coalesce(c.at_s, c.occurred_s) // 86400
FROM last_new l JOIN final f USING (pid, ref) JOIN cls c ON c.id = l.id
"""


def _contacts_sql(rules: ContactRules) -> str:
    start = rules.quiet_start.hour * 3600 + rules.quiet_start.minute * 60
    end = rules.quiet_end.hour * 3600 + rules.quiet_end.minute * 60
    sod = "local_s % 86400"
    quiet = (
        f"({sod} >= {start} OR {sod} < {end})"
        if start > end
        else (f"({sod} >= {start} AND {sod} < {end})")
    )
    weekly = rules.max_calls_per_7_days
    week = (
        "SELECT id, 'calls_per_7_days' FROM (SELECT id, count(*) OVER (PARTITION BY agency, "
        "debtor_id ORDER BY at_s RANGE BETWEEN 604799 PRECEDING AND CURRENT ROW) - "
        "(count(*) OVER (PARTITION BY agency, debtor_id, at_s) - row_number() OVER "
        "(PARTITION BY agency, debtor_id, at_s ORDER BY id)) AS n FROM ct WHERE code IN (2, 3)) "
        f"WHERE n > {weekly}"
        if weekly is not None
        else "SELECT NULL::BIGINT, NULL::VARCHAR WHERE false"
    )
    zone = _quoted(str(rules.zone))
    return f"""
    CREATE OR REPLACE TEMP TABLE ct AS
    WITH attempts AS (
        SELECT k.id, k.agency, k.pid, k.at_s, k.code, c.debtor_id
        FROM cls k JOIN cases c ON c.id = k.case_id
        WHERE k.verdict = 'contact' AND k.at_s IS NOT NULL AND k.code IS NOT NULL
    ), offsets AS (
        SELECT bucket, epoch_us(timezone('{zone}', to_timestamp(bucket * 900))) // 1000000
            - bucket * 900 AS shift
        FROM (SELECT DISTINCT at_s // 900 AS bucket FROM attempts)
    )
    SELECT a.*, a.at_s + o.shift AS local_s
    FROM attempts a JOIN offsets o ON o.bucket = a.at_s // 900;

    CREATE OR REPLACE TEMP TABLE violations AS
    SELECT id, 'quiet_hours' AS rule FROM ct WHERE code IN ({_QUIET}) AND {quiet}
    UNION ALL
    SELECT id, 'daily_effective_calls' FROM (
        SELECT id, row_number() OVER (PARTITION BY agency, debtor_id, local_s // 86400
            ORDER BY at_s, id) AS n
        FROM ct WHERE code = 3)
    WHERE n > {rules.max_effective_calls_per_day}
    UNION ALL
    {week};
    """


def audit_events(
    con: duckdb.DuckDBPyConnection,
    *,
    after: int,
    upto: int,
    emit_after: int,
    window: int,
    rules: ContactRules | None,
) -> EventPass:
    """The events pass over the events up to ``upto`` (with, when ``after``, only the new
    events and the history of their debtors); breaks and counts of the events past
    ``emit_after``; the contact rules when ``rules`` is given."""
    incremental = after > 0
    params = {"upto": upto, "after": after} if incremental else {"upto": upto}
    _script(con, _events_sql(incremental=incremental), params)
    out = EventPass(incremental=incremental)
    by_window: defaultdict[int, list[Break]] = defaultdict(list)
    for row in con.execute(_BREAKS_SQL, {"emit_after": emit_after}).fetchall():
        by_window[row[0] // window].append(_describe(row))
    out.breaks = dict(by_window)
    counts: defaultdict[int, Counter[str]] = defaultdict(Counter)
    for w, verdict, n in con.execute(
        _COUNTS_SQL, {"emit_after": emit_after, "window": window}
    ).fetchall():
        counts[w][verdict] += n
    out.counts = dict(counts)
    for row in con.execute(_PAYMENTS_SQL).fetchall():
        payment = AgencyPayment(*row)
        out.payments[(payment.placement_id, payment.ref)] = payment
    if incremental:
        known = con.execute("SELECT DISTINCT pid FROM cls WHERE known").fetchall()
        out.known = frozenset(pid for (pid,) in known)
    if rules is not None:
        _script(con, _contacts_sql(rules), {})
        out.contacts = con.execute("SELECT count(*) FROM ct").fetchone()[0]  # type: ignore[index]
        found = con.execute(
            "SELECT ct.id, ct.agency, ct.pid, ct.at_s, ct.code, v.rule FROM violations v "
            "JOIN ct ON ct.id = v.id ORDER BY ct.id, v.rule"
        ).fetchall()
        out.violations = [
            violation((eid, agency, pid, at_s, code), rule, rules, at_s)
            for eid, agency, pid, at_s, code, rule in found
        ]
    return out


def _script(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, int]) -> None:
    """Run statements one by one, each with the parameters it names."""
    for statement in sql.split(";\n"):
        if statement.strip():
            named = {k: v for k, v in params.items() if f"${k}" in statement}
            con.execute(statement, named or None)


def contact_facts(con: duckdb.DuckDBPyConnection) -> list[ContactFacts]:
    """The contact attempts the last ``audit_events`` checked (for tests and tools)."""
    rows = con.execute("SELECT id, agency, pid, at_s, code FROM ct ORDER BY id").fetchall()
    return [(a, b, c, d, e) for a, b, c, d, e in rows]


def _describe(row: tuple[Any, ...]) -> Break:
    """A break row of ``_BREAKS_SQL`` in the words and fields of the pure audit
    (gateway.reconciliation.event_audit)."""
    (
        eid,
        agency,
        pid,
        etype,
        ref,
        amount,
        currency,
        occurred,
        at_s,
        reason,
        p_agency,
        p_currency,
        balance,
        placed_s,
        recalled_s,
        kind,
        before,
        collected,
        collected_before,
    ) = row
    delta: int | None = None
    if kind in _REFUSALS or kind == "activity_after_recall":
        theirs: dict[str, object] = {"type": etype, "placement_id": pid, "agency_id": agency}
        if amount is not None:
            theirs.update(amount_minor=amount, currency=currency)
        if kind == "unknown_placement":
            detail = f"{agency} reported {etype} for placement {pid}, which we never placed"
            return Break(eid, agency, MismatchDraft(kind, pid, detail, {"placement": None}, theirs))
        ours: dict[str, object] = {
            "agency_id": p_agency,
            "currency": p_currency,
            "balance_minor": balance,
        }
        if kind == "wrong_agency":
            detail = f"{agency} reported {etype} for {pid}, which is held by {p_agency}"
        elif kind == "currency_mismatch":
            detail = f"{etype} in {currency} on a {p_currency} placement"
        else:
            detail = f"{agency} reported {etype} on {pid}, which happened after its recall"
            ours["recalled_s"] = recalled_s
            theirs["occurred_s"] = occurred
            delta = amount if etype == "payment.reported" else None
        return Break(eid, agency, MismatchDraft(kind, pid, detail, ours, theirs, delta))
    ours = {"agency_id": p_agency, "currency": p_currency, "balance_minor": balance}
    theirs = {"type": etype, "placement_id": pid}
    ref, amount = ref or "", amount or 0
    if etype in ("payment.reported", "payment.reversed"):
        theirs.update(payment_id=ref, amount_minor=amount)
    if kind == "conflicting_duplicate":
        detail = f"payment {ref} reported again with another amount"
        ours["amount_minor"] = before
        delta = amount - before
    elif kind == "date_out_of_window" and at_s < placed_s - _GRACE:
        detail = f"{agency} reports payment {ref} paid before the case was placed"
        ours["placed_s"] = placed_s
        theirs["paid_s"] = at_s
    elif kind == "date_out_of_window":
        detail = f"{agency} reports payment {ref} paid in the future"
        theirs.update(paid_s=at_s, occurred_s=occurred)
    elif kind == "over_collection":
        detail = (
            f"{agency} reports {collected} collected on a balance of {balance} "
            f"(minor units, {p_currency})"
        )
        ours["collected_minor"] = collected - amount
        delta = collected - balance
    elif kind == "unmatched_reversal":
        detail = f"reversal of payment {ref} " + (
            "which was never reported" if before is None else f"exceeds its {before}"
        )
        ours["payment_minor"] = before
        delta = amount - (before or 0)
    elif etype == "payment.reported":  # status_conflict: a payment on a disputed case
        detail = f"{agency} reports a payment on {pid}, which it reported disputed"
        delta = amount
    elif etype == "case.closed":
        detail = (
            f"{agency} closed {pid} as paid in full with {collected_before} of "
            f"{balance} collected (minor units, {p_currency})"
        )
        ours["collected_minor"] = collected_before
        theirs["reason"] = reason
        delta = collected_before - balance
    else:
        detail = f"{agency} returned {pid} as recalled, but we never recalled it"
        theirs["reason"] = reason
    return Break(eid, agency, MismatchDraft(kind, pid, detail, ours, theirs, delta))


__all__ = [
    "ColumnarUnavailable",
    "EventPass",
    "audit_events",
    "contact_facts",
    "extension_path",
    "open_store",
]
