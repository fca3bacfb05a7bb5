"""Agency conduct checked against the contact rules (pure).

Theory of operation
-------------------
Agencies report every contact attempt (``contact.attempted``). The lender's rules, from
``[reconciliation]`` in gateway.toml, are checked per agency and debtor, in the lender's
local time:

* ``quiet_hours``: no call, SMS, visit or app contact between ``quiet_hours_start`` and
  ``quiet_hours_end`` (default 22:00-08:00; letters and email are not intrusive).
* ``daily_effective_calls``: at most ``max_effective_calls_per_day`` calls on which the
  debtor was actually spoken to, per local day; every call beyond the cap (in time order)
  is a violation.
* ``calls_per_7_days``: optionally at most ``max_calls_per_7_days`` call attempts of any
  outcome in any rolling 7 days (the US Regulation F "7-in-7" presumption).

The caps are counted first (one dict pass); only the groups over a cap are sorted, so the
usual case costs one pass over the attempts. Local time comes from a per-15-minute cache of
the zone's UTC offset (every real offset change falls on a quarter hour).
"""

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, tzinfo
from zoneinfo import ZoneInfo

from gateway.config.settings import ReconciliationSection
from gateway.reconciliation.event_audit import Break, ContactFacts, PlacementFacts
from gateway.reconciliation.kinds import MismatchDraft

CHANNELS: dict[int, str] = {1: "call", 2: "sms", 3: "visit", 4: "app", 5: "letter", 6: "email"}
"""Channel numbers of the contact code ``2 * number + effective`` (7 is any other)."""
INTRUSIVE = frozenset({"call", "sms", "visit", "app"})
_QUIET_CODES = frozenset(
    2 * n + e for n, name in CHANNELS.items() if name in INTRUSIVE for e in (0, 1)
)
_CALL, _EFFECTIVE_CALL = 2, 3
WEEK_SECONDS = 7 * 86_400
_BUCKET = 900


@dataclass(frozen=True, slots=True)
class ContactRules:
    zone: tzinfo
    quiet_start: time
    quiet_end: time
    max_effective_calls_per_day: int
    max_calls_per_7_days: int | None = None

    @classmethod
    def from_settings(cls, section: ReconciliationSection) -> "ContactRules":
        return cls(
            zone=ZoneInfo(section.timezone),
            quiet_start=time.fromisoformat(section.quiet_hours_start),
            quiet_end=time.fromisoformat(section.quiet_hours_end),
            max_effective_calls_per_day=section.max_effective_calls_per_day,
            max_calls_per_7_days=section.max_calls_per_7_days,
        )

    def quiet_at(self, at: datetime, channel: str) -> bool:
        """Whether a contact on ``channel`` at ``at`` breaks the quiet hours (one contact;
        ``check_contacts`` judges many at once the same way)."""
        if channel not in INTRUSIVE:
            return False
        sod = _seconds(at.astimezone(self.zone).time())
        start, end = _seconds(self.quiet_start), _seconds(self.quiet_end)
        return (sod >= start or sod < end) if start > end else (start <= sod < end)

    def describe(self) -> dict[str, object]:
        return {
            "timezone": str(self.zone),
            "quiet_hours": f"{self.quiet_start:%H:%M}-{self.quiet_end:%H:%M}",
            "max_effective_calls_per_day": self.max_effective_calls_per_day,
            "max_calls_per_7_days": self.max_calls_per_7_days,
        }


class _LocalTime:
    """Seconds since the epoch → seconds since the local epoch, via cached offsets."""

    def __init__(self, zone: tzinfo) -> None:
        self._zone = zone
        self.offsets: dict[int, int] = {}
        """UTC offset in seconds by quarter hour since the epoch (filled by ``offset``)."""

    def offset(self, bucket: int) -> int:
        moment = datetime.fromtimestamp(bucket * _BUCKET, UTC)
        delta = self._zone.utcoffset(moment.astimezone(self._zone))
        offset = self.offsets[bucket] = int(delta.total_seconds()) if delta else 0
        return offset

    def __call__(self, ts: int) -> int:
        offset = self.offsets.get(ts // _BUCKET)
        return ts + (self.offset(ts // _BUCKET) if offset is None else offset)


def _seconds(t: time) -> int:
    return t.hour * 3600 + t.minute * 60


def check_contacts(
    contacts: Sequence[ContactFacts],
    placements: Mapping[str, PlacementFacts],
    rules: ContactRules,
) -> list[Break]:
    """Every violation among ``contacts`` (attempts on known placements of their own agency,
    gateway.reconciliation.event_audit.EventAudit.contacts), in (event id, rule) order."""
    local = _LocalTime(rules.zone)
    offsets, offset = local.offsets, local.offset
    start, end = _seconds(rules.quiet_start), _seconds(rules.quiet_end)
    wraps = start > end
    weekly = rules.max_calls_per_7_days
    quiet_codes = _QUIET_CODES
    found: list[Break] = []
    per_day: dict[tuple[str, str, int], int] = {}
    per_debtor: dict[tuple[str, str], int] = {}
    # One pass that builds nothing for a call that breaks no rule and is not counted.
    for row in contacts:
        at_s, code = row[3], row[4]
        if code not in quiet_codes:
            continue  # not intrusive, so not a call either
        bucket = at_s // _BUCKET
        shift = offsets.get(bucket)
        at_local = at_s + (offset(bucket) if shift is None else shift)
        sod = at_local % 86_400
        if (sod >= start or sod < end) if wraps else (start <= sod < end):
            found.append(violation(row, "quiet_hours", rules, at_s))
        if code == _EFFECTIVE_CALL:
            day = (row[1], placements[row[2]][6], at_local // 86_400)
            per_day[day] = per_day.get(day, 0) + 1
        if weekly is not None and (code == _CALL or code == _EFFECTIVE_CALL):
            who = (row[1], placements[row[2]][6])
            per_debtor[who] = per_debtor.get(who, 0) + 1
    cap = rules.max_effective_calls_per_day
    over_days = {day for day, count in per_day.items() if count > cap}
    over_debtors = {
        key for key, count in per_debtor.items() if weekly is not None and count > weekly
    }
    if over_days or over_debtors:
        # Only the calls of the groups over a cap are sorted, to find which call broke it.
        days: dict[tuple[str, str, int], list[tuple[int, int, ContactFacts]]] = defaultdict(list)
        weeks: dict[tuple[str, str], list[tuple[int, int, ContactFacts]]] = defaultdict(list)
        for row in contacts:
            at_s, code = row[3], row[4]
            if code != _CALL and code != _EFFECTIVE_CALL:
                continue
            debtor = placements[row[2]][6]
            if code == _EFFECTIVE_CALL:
                day = (row[1], debtor, local(at_s) // 86_400)
                if day in over_days:
                    days[day].append((at_s, row[0], row))
            if (row[1], debtor) in over_debtors:
                weeks[(row[1], debtor)].append((at_s, row[0], row))
        for attempts in days.values():
            for at_s, _eid, row in sorted(attempts)[cap:]:
                found.append(violation(row, "daily_effective_calls", rules, at_s))
        for attempts in weeks.values():
            assert weekly is not None
            found.extend(
                violation(row, "calls_per_7_days", rules, at_s)
                for at_s, row in _over_rolling_cap(sorted(attempts), weekly)
            )
    found.sort(key=lambda b: (b.event_id or 0, b.rule))
    return found


def _over_rolling_cap(
    attempts: list[tuple[int, int, ContactFacts]], cap: int
) -> Iterable[tuple[int, ContactFacts]]:
    """Attempts (sorted by time) that make more than ``cap`` in the 7 days ending at them."""
    first = 0
    for n, (at_s, _eid, row) in enumerate(attempts):
        while attempts[first][0] <= at_s - WEEK_SECONDS:
            first += 1
        if n - first + 1 > cap:
            yield at_s, row


_WHAT = {
    "quiet_hours": "contact during quiet hours",
    "daily_effective_calls": "more effective calls in a day than allowed",
    "calls_per_7_days": "more calls in 7 days than allowed",
}


def violation(row: ContactFacts, rule: str, rules: ContactRules, at_s: int) -> Break:
    when = datetime.fromtimestamp(at_s, rules.zone)
    code = row[4]
    channel, effective = CHANNELS.get(code // 2, "other"), code % 2 == 1
    draft = MismatchDraft(
        "contact_rule_violation",
        row[2],
        f"{row[1]}: {_WHAT[rule]} ({channel} at {when:%Y-%m-%d %H:%M} {when.tzname()})",
        {"rule": rule, **rules.describe()},
        {
            "type": "contact.attempted",
            "placement_id": row[2],
            "channel": channel,
            "effective": effective,
            "attempted_at": datetime.fromtimestamp(at_s, UTC).isoformat(),
        },
    )
    return Break(row[0], row[1], draft, rule)


__all__ = ["CHANNELS", "INTRUSIVE", "ContactRules", "check_contacts", "violation"]
