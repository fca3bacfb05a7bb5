"""Collector conduct judged as contact attempts arrive (pure).

Theory of operation
-------------------
Every ``contact.attempted`` an agency reports says whom it contacted (``party``: the debtor
by default, a guarantor or a third party), why a third party (``purpose``), which collector
and which call recording. As the event arrives, in the same transaction as the event itself,
``judge_contacts`` raises:

==========================  ========  ==================================================
kind                        severity  when
==========================  ========  ==================================================
``third_party_contact``     high      a third party was contacted for anything but
                                      locating the debtor (``purpose`` is not
                                      ``locate``): collecting from or disclosing the debt
                                      to the debtor's contacts is forbidden
``contact_during_hold``     high      a hold stood on the case at ``attempted_at`` (an
                                      approved pause is a ``PAUSE`` hold)
``contact_during_dispute``  high      the placement was disputed when the contact was made
``contact_rule_violation``  high      quiet hours or a cap broken
                                      (gateway.reconciliation.contact_rules)
==========================  ========  ==================================================

The first three carry the dedupe key ``<kind>:event:<event id>``. ``contact_rule_breaks``
reruns the batch's own contact rules over the debtor's stored attempts plus the new ones and
keeps the breaks of the new ones, so their keys (``contact_rule_violation:event:<id>:<rule>``)
are the batch run's and it never raises them again. Arrival judges a cap in arrival order:
an attempt reported late, dated before others already stored, may make one of those over
the cap; the batch run then raises that one (never one already raised).
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from gateway.reconciliation.contact_rules import CHANNELS, ContactRules, check_contacts
from gateway.reconciliation.event_audit import Break, ContactFacts, PlacementFacts
from gateway.reconciliation.kinds import MismatchDraft

CONDUCT_KINDS: Final = ("third_party_contact", "contact_during_hold", "contact_during_dispute")
"""The kinds only arrival raises (the batch run re-derives ``contact_rule_violation``)."""
_CODES: Final = {name: n for n, name in CHANNELS.items()}
_OTHER_CHANNEL: Final = 7


@dataclass(frozen=True, slots=True)
class ContactSeen:
    """One arriving contact attempt on a placement of the agency that reported it."""

    event_id: int
    agency_id: str
    placement_id: str
    case_id: str
    attempted_at: datetime
    channel: str
    effective: bool
    party: str = "debtor"
    purpose: str | None = None
    collector_id: str | None = None
    disputed: bool = False
    """The placement was ``disputed`` when the event arrived."""
    disputed_since: datetime | None = None
    """When the dispute was opened, if known (a contact made before it is fine)."""

    @property
    def code(self) -> int:
        """The contact code of gateway.reconciliation.event_audit.EventFacts."""
        return 2 * _CODES.get(self.channel, _OTHER_CHANNEL) + (1 if self.effective else 0)

    def facts(self) -> ContactFacts:
        return (
            self.event_id,
            self.agency_id,
            self.placement_id,
            int(self.attempted_at.timestamp()),
            self.code,
        )


@dataclass(frozen=True, slots=True)
class HoldSpan:
    """A hold on a case: it stands from ``placed_at`` until ``released_at`` (if ever)."""

    case_id: str
    code: str
    placed_at: datetime
    released_at: datetime | None = None

    def covers(self, moment: datetime) -> bool:
        return self.placed_at <= moment and (self.released_at is None or moment < self.released_at)


def _theirs(c: ContactSeen) -> dict[str, object]:
    return {
        "type": "contact.attempted",
        "placement_id": c.placement_id,
        "channel": c.channel,
        "effective": c.effective,
        "attempted_at": c.attempted_at.isoformat(),
        "party": c.party,
        "purpose": c.purpose,
        "collector_id": c.collector_id,
    }


def _by(c: ContactSeen) -> str:
    return f"{c.agency_id}" + (f" (collector {c.collector_id})" if c.collector_id else "")


def judge_contact(c: ContactSeen, holds: Sequence[HoldSpan] = ()) -> list[Break]:
    """The conduct breaks of one contact, given the holds ever placed on its case."""
    found: list[Break] = []
    standing = [h for h in holds if h.covers(c.attempted_at)]
    third_party = c.party == "third_party" and c.purpose != "locate"
    disputed = c.disputed and (c.disputed_since is None or c.attempted_at >= c.disputed_since)
    if not (third_party or standing or disputed):
        return found  # most contacts: nothing to word
    when = f"{c.attempted_at:%Y-%m-%d %H:%M} UTC"
    if third_party:
        about = "about the debt" if c.purpose == "debt" else "without saying it only located"
        found.append(
            Break(
                c.event_id,
                c.agency_id,
                MismatchDraft(
                    "third_party_contact",
                    c.placement_id,
                    f"{_by(c)} contacted a third party {about} ({c.channel} at {when})",
                    {"allowed": "third parties only to locate the debtor"},
                    _theirs(c),
                ),
            )
        )
    if standing:
        codes = sorted({h.code for h in standing})
        found.append(
            Break(
                c.event_id,
                c.agency_id,
                MismatchDraft(
                    "contact_during_hold",
                    c.placement_id,
                    f"{_by(c)} contacted on case {c.case_id} while it was on hold "
                    f"({', '.join(codes)}; {c.channel} at {when})",
                    {"holds": codes, "case_id": c.case_id},
                    _theirs(c),
                ),
            )
        )
    if disputed:
        since = c.disputed_since.isoformat() if c.disputed_since else None
        found.append(
            Break(
                c.event_id,
                c.agency_id,
                MismatchDraft(
                    "contact_during_dispute",
                    c.placement_id,
                    f"{_by(c)} contacted on {c.placement_id} while it was disputed "
                    f"({c.channel} at {when})",
                    {"state": "disputed", "disputed_since": since},
                    _theirs(c),
                ),
            )
        )
    return found


def judge_contacts(
    contacts: Iterable[ContactSeen], holds: Mapping[str, Sequence[HoldSpan]]
) -> list[Break]:
    """The conduct breaks of ``contacts``; ``holds`` by case id."""
    return [b for c in contacts for b in judge_contact(c, holds.get(c.case_id, ()))]


def contact_rule_breaks(
    new: Sequence[ContactFacts],
    history: Iterable[ContactFacts],
    debtors: Mapping[str, str],
    rules: ContactRules,
) -> list[Break]:
    """The contact-rule breaks of the ``new`` attempts, judged with the stored ``history``
    (attempts of the same debtors, new ones excluded); ``debtors`` maps every placement id of
    either to its debtor id."""
    if not new:
        return []
    ids = {c[0] for c in new}
    places: dict[str, PlacementFacts] = {
        pid: ("", "", "", 0, 0, None, debtor) for pid, debtor in debtors.items()
    }
    checked = [c for c in history if c[0] not in ids]
    checked.extend(new)
    return [b for b in check_contacts(checked, places, rules) if b.event_id in ids]


__all__ = [
    "CONDUCT_KINDS",
    "ContactSeen",
    "HoldSpan",
    "contact_rule_breaks",
    "judge_contact",
    "judge_contacts",
]
