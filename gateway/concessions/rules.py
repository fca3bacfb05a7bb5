"""Concession rules (pure): a request's life as a transition table, the terms an agency asks
for, the limits each role may approve alone, four eyes, and what approved terms allow.

Theory of operation
-------------------
An agency's ``waiver.requested``, ``instalment.requested`` or ``pause.requested`` is stored as
a request in state ``pending`` with its *terms* (``terms_of``): a waiver's amount waived and the
settlement the debtor pays (one is given, the other follows from the placed balance); a plan's
schedule (given, or built from the first due date and a frequency: equal instalments, the
remainder on the last); a pause's first and last day.

A person decides it:

====================  =========  =================  ==============================================
state                 event      next state         when
====================  =========  =================  ==============================================
pending               approve    approved           the terms are within the person's role limits
                                                    and at most ``[four_eyes] concession_approval``
pending               propose    awaiting_check     within the person's limits, but above the
                                                    four-eyes threshold: a second person must check
awaiting_check        approve    approved           a second person (never the first), within
                                                    their own role's limits
pending, awaiting_    reject     rejected           anyone of a deciding role, with a reason
check
====================  =========  =================  ==============================================

Terms beyond every limit of the person's role are refused (``limit_problems`` names each one);
the request can only be rejected, or decided by someone of a role with wider limits. A
schedule whose amounts do not add up to its total, whose dates do not increase or whose first
date is in the past is refused the same way (``schedule_problems``).

Approved terms are what later events are checked against (``promise_within_terms``,
``settlement_within_terms``): a promise below the outstanding balance must match an approved
plan's instalment or an approved settlement; a close as ``settled`` for less than the balance
needs an approved waiver whose settlement was paid.
"""

import calendar
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from itertools import pairwise
from typing import Final, Literal

from gateway.config.settings import ConcessionLimit, FourEyesSection
from gateway.errors import ConcessionRefused
from schemas.events import InstalmentRequested, PauseRequested, WaiverRequested

RequestKind = Literal["waiver", "instalment", "pause"]
KIND_OF_EVENT: Final[dict[str, RequestKind]] = {
    "waiver.requested": "waiver",
    "instalment.requested": "instalment",
    "pause.requested": "pause",
}
REQUEST_STATES: Final = ("pending", "awaiting_check", "approved", "rejected")
OPEN_STATES: Final = frozenset({"pending", "awaiting_check"})
REQUEST_TRANSITIONS: Final[dict[tuple[str, str], str]] = {
    ("pending", "approve"): "approved",
    ("pending", "propose"): "awaiting_check",
    ("pending", "reject"): "rejected",
    ("awaiting_check", "approve"): "approved",
    ("awaiting_check", "reject"): "rejected",
}
"""(state, event) → next state; anything else is refused."""
FOUR_EYES_ACTION: Final = "concession_approval"
PAUSE_HOLD_CODE: Final = "PAUSE"
"""The hold an approved pause stands as on the case (gateway.cases.holds)."""
_PAST = {"approve": "approved", "propose": "approved", "reject": "rejected"}


@dataclass(frozen=True, slots=True)
class Instalment:
    due_date: date
    amount_minor: int


@dataclass(frozen=True, slots=True)
class Terms:
    """What a request asks for, in the placement's currency (minor units)."""

    kind: RequestKind
    currency: str
    balance_minor: int
    """The balance the terms are measured against (the placed balance)."""
    waive_minor: int = 0
    settle_minor: int | None = None
    schedule: tuple[Instalment, ...] = ()
    total_minor: int | None = None
    pause_from: date | None = None
    pause_until: date | None = None
    problems: tuple[str, ...] = field(default=())
    """Why the request, as asked, cannot be approved (a schedule that does not add up)."""

    @property
    def size(self) -> int:
        """What ``[four_eyes] concession_approval`` compares with ``above``: the amount waived,
        or a plan's total; a pause is 0."""
        if self.kind == "waiver":
            return self.waive_minor
        if self.kind == "instalment":
            return self.total_minor or 0
        return 0

    @property
    def pause_days(self) -> int:
        if self.pause_from is None or self.pause_until is None:
            return 0
        return (self.pause_until - self.pause_from).days + 1


def next_state(state: str, event: str, *, request: str) -> str:
    """The request's state after ``event``, or ConcessionRefused saying why not."""
    try:
        return REQUEST_TRANSITIONS[(state, event)]
    except KeyError:
        raise ConcessionRefused(
            f"request {request} is {state}; it cannot be {_PAST.get(event, event)}"
        ) from None


def add_months(day: date, months: int) -> date:
    """``day`` ``months`` later, on the same day of the month or the month's last day."""
    month0 = day.month - 1 + months
    year, month = day.year + month0 // 12, month0 % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def build_schedule(
    first: date, frequency: str, count: int, total_minor: int
) -> tuple[Instalment, ...]:
    """Equal instalments from ``first`` every week, fortnight or month; the remainder of the
    division is paid with the last one, so the amounts add up to ``total_minor`` exactly."""
    if count < 1 or total_minor < count:
        raise ValueError(f"cannot split {total_minor} into {count} positive instalments")
    each = total_minor // count
    amounts = [each] * (count - 1) + [total_minor - each * (count - 1)]
    if frequency == "monthly":
        dates = [add_months(first, n) for n in range(count)]
    else:
        step = timedelta(days=7 if frequency == "weekly" else 14)
        dates = [first + step * n for n in range(count)]
    return tuple(Instalment(d, a) for d, a in zip(dates, amounts, strict=True))


def schedule_problems(
    schedule: Sequence[Instalment], *, count: int, total_minor: int, today: date
) -> list[str]:
    """What is wrong with a plan as asked: the number of instalments, the sum, the order of
    dates, a first date in the past. Empty when it is well formed."""
    problems = []
    if len(schedule) != count:
        problems.append(f"the schedule has {len(schedule)} instalments, not {count}")
    paid = sum(i.amount_minor for i in schedule)
    if paid != total_minor:
        problems.append(f"the instalments add up to {paid}, not the total {total_minor}")
    for before, after in pairwise(schedule):
        if after.due_date <= before.due_date:
            problems.append(f"due dates must increase: {after.due_date} follows {before.due_date}")
            break
    if schedule and schedule[0].due_date < today:
        problems.append(f"the first instalment is due {schedule[0].due_date}, in the past")
    return problems


def months_between(start: date, end: date) -> int:
    """Whole months from ``start`` to ``end``, rounded up (a plan ending 1 month and 3 days
    out is 2 months long)."""
    months = (end.year - start.year) * 12 + end.month - start.month
    return months + 1 if add_months(start, months) < end else months


def terms_of(
    event: WaiverRequested | InstalmentRequested | PauseRequested,
    *,
    balance_minor: int,
    currency: str,
    today: date,
) -> Terms:
    """The terms an agency's request asks for, measured against the placed balance; what
    cannot be approved as asked is in ``problems``."""
    if isinstance(event, WaiverRequested):
        data = event.data
        problems = []
        if (data.waive_amount is None) == (data.settlement_amount is None):
            problems.append("give exactly one of waive_amount and settlement_amount")
        if data.waive_amount is not None:
            waive = data.waive_amount.amount_minor
            money = data.waive_amount
        elif data.settlement_amount is not None:
            waive = balance_minor - data.settlement_amount.amount_minor
            money = data.settlement_amount
        else:
            return Terms("waiver", currency, balance_minor, problems=tuple(problems))
        if money.currency != currency:
            problems.append(f"the amount is in {money.currency}, the placement in {currency}")
        if waive <= 0:
            problems.append("the settlement is not below the balance: nothing to waive")
        elif waive >= balance_minor:
            problems.append("the waiver is the whole balance or more")
        return Terms(
            "waiver",
            currency,
            balance_minor,
            waive_minor=max(waive, 0),
            settle_minor=max(balance_minor - waive, 0),
            problems=tuple(problems),
        )
    if isinstance(event, InstalmentRequested):
        plan = event.data
        total = plan.total.amount_minor
        problems = []
        dated = plan.first_due_date is not None and plan.frequency is not None
        schedule: tuple[Instalment, ...] = ()
        if (plan.schedule is None) == (not dated) or (
            (plan.first_due_date is None) != (plan.frequency is None)
        ):
            problems.append("give either schedule, or first_due_date and frequency (not both)")
        elif plan.schedule is not None:
            schedule = tuple(Instalment(i.due_date, i.amount.amount_minor) for i in plan.schedule)
            if any(i.amount.currency != currency for i in plan.schedule):
                problems.append(f"an instalment is not in {currency}, the placement's currency")
        else:
            assert plan.first_due_date is not None and plan.frequency is not None
            try:
                schedule = build_schedule(
                    plan.first_due_date, plan.frequency, plan.instalments, total
                )
            except ValueError as exc:
                problems.append(str(exc))
        if plan.total.currency != currency:
            problems.append(f"the total is in {plan.total.currency}, the placement in {currency}")
        if schedule:
            problems += schedule_problems(
                schedule, count=plan.instalments, total_minor=total, today=today
            )
        return Terms(
            "instalment",
            currency,
            balance_minor,
            schedule=schedule,
            total_minor=total,
            problems=tuple(problems),
        )
    pause = event.data
    problems = []
    if pause.pause_until < pause.pause_from:
        problems.append(f"pause_until {pause.pause_until} is before pause_from {pause.pause_from}")
    elif pause.pause_until < today:
        problems.append(f"the pause ended on {pause.pause_until}, in the past")
    return Terms(
        "pause",
        currency,
        balance_minor,
        pause_from=pause.pause_from,
        pause_until=pause.pause_until,
        problems=tuple(problems),
    )


def limit_problems(
    terms: Terms, limit: ConcessionLimit | None, *, role: str, today: date
) -> list[str]:
    """Each way ``terms`` exceed what ``role`` may approve (``[concessions.limits.ROLE]``);
    empty when it may."""
    if limit is None:
        return [f"role {role} may not approve concessions ([concessions.limits] has no {role})"]
    found = []
    if terms.kind == "waiver":
        if terms.waive_minor > limit.max_waiver_minor:
            found.append(
                f"waiver of {terms.waive_minor} is above {role}'s max_waiver_minor "
                f"{limit.max_waiver_minor}"
            )
        share = terms.waive_minor * 10_000 // max(terms.balance_minor, 1)
        if terms.waive_minor * 10_000 > limit.max_waiver_bps * terms.balance_minor:
            found.append(
                f"waiver of {share / 100:.2f}% of the balance is above {role}'s max_waiver_bps "
                f"{limit.max_waiver_bps} ({limit.max_waiver_bps / 100:.2f}%)"
            )
    elif terms.kind == "instalment":
        if len(terms.schedule) > limit.max_instalments:
            found.append(
                f"{len(terms.schedule)} instalments is above {role}'s max_instalments "
                f"{limit.max_instalments}"
            )
        if terms.schedule:
            months = months_between(today, terms.schedule[-1].due_date)
            if months > limit.max_instalment_months:
                found.append(
                    f"the last instalment is {months} months out, above {role}'s "
                    f"max_instalment_months {limit.max_instalment_months}"
                )
    elif terms.pause_days > limit.max_pause_days:
        found.append(
            f"a pause of {terms.pause_days} days is above {role}'s max_pause_days "
            f"{limit.max_pause_days}"
        )
    return found


def decision_event(
    terms: Terms,
    state: str,
    four_eyes: FourEyesSection,
) -> Literal["approve", "propose"]:
    """What an approval by a person within their limits does: ``approve`` at once, or
    ``propose`` (a second person must check) when the terms are above the four-eyes threshold
    and nobody has approved them yet."""
    rule = four_eyes.concession_approval
    if state == "pending" and rule.enabled and terms.size > rule.above:
        return "propose"
    return "approve"


def check_second_person(
    four_eyes: FourEyesSection, *, first: str, second: str, role: str, request: str
) -> None:
    """ConcessionRefused unless ``second`` may check what ``first`` approved."""
    if second == first:
        raise ConcessionRefused(
            f"request {request}: {first} approved it first and cannot also check it; a second "
            "person must (`agency-gateway --as OTHER_USER requests approve ...`)"
        )
    roles = four_eyes.concession_approval.checker_roles
    if role not in roles:
        raise ConcessionRefused(
            f"request {request}: {second} is {role}; [four_eyes] concession_approval needs a "
            f"checker who is {' or '.join(roles)}"
        )


def promise_within_terms(
    amount_minor: int,
    promised: date,
    *,
    outstanding_minor: int,
    collected_minor: int,
    approved: Sequence[tuple[Terms, date | None]],
) -> bool:
    """True when a promise of ``amount_minor`` by ``promised`` needs no concession or keeps
    to the approved terms. With no terms approved on the placement a promise of part of what
    is outstanding is an ordinary promise to pay (a part payment waives nothing); once a plan
    or a settlement is approved, a promise for less than the rest must match it: an
    instalment of the plan it covers by its due date, or the rest of the settlement by the
    approval's ``valid_until``."""
    if amount_minor >= outstanding_minor or not approved:
        return True
    for terms, valid_until in approved:
        if terms.kind == "instalment" and any(
            amount_minor >= i.amount_minor and promised <= i.due_date for i in terms.schedule
        ):
            return True
        if (
            terms.kind == "waiver"
            and terms.settle_minor is not None
            and amount_minor >= terms.settle_minor - collected_minor
            and (valid_until is None or promised <= valid_until)
        ):
            return True
    return False


def settlement_within_terms(
    *, balance_minor: int, collected_minor: int, approved: Sequence[Terms]
) -> bool:
    """True when a close as ``settled`` with ``collected_minor`` paid is covered: all of the
    balance was paid, or an approved waiver's settlement was."""
    if collected_minor >= balance_minor:
        return True
    return any(
        t.kind == "waiver" and t.settle_minor is not None and collected_minor >= t.settle_minor
        for t in approved
    )


__all__ = [
    "FOUR_EYES_ACTION",
    "KIND_OF_EVENT",
    "OPEN_STATES",
    "PAUSE_HOLD_CODE",
    "REQUEST_STATES",
    "REQUEST_TRANSITIONS",
    "ConcessionRefused",
    "Instalment",
    "RequestKind",
    "Terms",
    "add_months",
    "build_schedule",
    "check_second_person",
    "decision_event",
    "limit_problems",
    "months_between",
    "next_state",
    "promise_within_terms",
    "schedule_problems",
    "settlement_within_terms",
    "terms_of",
]
