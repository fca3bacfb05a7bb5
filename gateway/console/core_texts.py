"""The core's sentences in the console's language, translated at display time.

The core writes English and stores it as written (the evidence log, the CLI and the JSON API
read it so): a mismatch's ``detail``, why allocation left a case unplaced or chose an agency,
each agency's verdict in an allocation round, the reasons of a case's lifecycle steps. The
console shows them in the request's language through ``said`` (the ``said`` filter in the
templates). Every sentence the core writes is listed in ``TEMPLATES`` as an English template
with ``%(name)s`` placeholders, marked for translation; the template is also the pattern that
recognises the sentence: its literal text exactly, each placeholder any text (shortest
first). A placeholder named in ``CODE_SLOTS`` is a code, shown through
gateway.console.vocabulary.term; one in ``PHRASE_SLOTS`` is itself a sentence, translated in
turn; ``verdicts`` is a list of ``agency: verdict``. A text no template recognises that joins
sentences with "; " is translated sentence by sentence; anything else is shown as written.

Adding a sentence to the core means adding its template here (and its translation):
tests/unit/test_console_core_texts.py drives the core's producers and fails on a sentence the
Chinese console would show in English.
"""

import re
from collections.abc import Mapping
from functools import cache
from typing import Final

from gateway.console.i18n import N_, gettext
from gateway.console.vocabulary import TERMS, term

TEMPLATES: Final[tuple[str, ...]] = (
    # SLA breaches (gateway.reconciliation.sla)
    N_("%(agency)s sent no acknowledgement for %(placement)s by %(due)s UTC"),
    N_("%(agency)s sent no first activity for %(placement)s by %(due)s UTC"),
    N_("%(agency)s sent no inventory statement for %(period)s by %(due)s UTC"),
    N_(
        "%(agency)s sent no confirmation that the case's personal data was deleted "
        "(data.deleted) for %(placement)s by %(due)s UTC"
    ),
    N_("%(agency)s sent no payment promised under %(promise)s for %(placement)s by %(due)s UTC"),
    # events against our record (gateway.reconciliation.event_rules and event_audit)
    N_("%(agency)s reported %(event)s for placement %(placement)s, which we never placed"),
    N_("%(agency)s reported %(event)s for %(placement)s, which is held by %(holder)s"),
    N_("%(event)s in %(currency)s on a %(our_currency)s placement"),
    N_("%(agency)s reported %(event)s on %(placement)s after it was recalled"),
    N_("%(agency)s reported %(event)s on %(placement)s, which happened after its recall"),
    N_("%(event)s is not allowed while %(placement)s is %(state)s"),
    N_("%(agency)s loaded %(theirs)s, we sent %(ours)s"),
    N_("payment %(payment)s reported again with another amount"),
    N_(
        "%(agency)s reports %(collected)s collected on a balance of %(balance)s "
        "(minor units, %(currency)s)"
    ),
    N_("reversal of payment %(payment)s which was never reported"),
    N_("reversal of payment %(payment)s exceeds its %(paid)s"),
    N_(
        "%(agency)s reports payment %(payment)s paid %(paid_at)s UTC, before the case was "
        "placed (%(placed_at)s UTC)"
    ),
    N_(
        "%(agency)s reports payment %(payment)s paid in the future (%(paid_at)s UTC, "
        "reported %(reported_at)s)"
    ),
    N_("%(agency)s reports payment %(payment)s paid before the case was placed"),
    N_("%(agency)s reports payment %(payment)s paid in the future"),
    N_("%(agency)s reports a payment on %(placement)s, which it reported disputed"),
    N_(
        "%(agency)s closed %(placement)s as paid in full with %(collected)s of %(balance)s "
        "collected (minor units, %(currency)s)"
    ),
    N_("%(agency)s returned %(placement)s as recalled, but we never recalled it"),
    # webhook replays (gateway.inbound.store)
    N_("%(agency)s re-sent webhook-id %(webhook)s with different content"),
    # statements (gateway.reconciliation.statements)
    N_("%(agency)s lists %(placement)s more than once"),
    N_("%(agency)s lists %(placement)s which we never placed with them"),
    N_(
        "%(agency)s holds %(placement)s at %(theirs)s %(their_currency)s, we hold %(ours)s "
        "%(our_currency)s outstanding (minor units)"
    ),
    N_("%(agency)s reports %(placement)s %(status)s, our record says %(state)s"),
    N_("%(agency)s does not list %(placement)s, open with them on %(day)s"),
    # the lender's money (gateway.reconciliation.three_way and matching)
    N_(
        "%(agency)s reported payment %(payment)s of %(amount)s %(currency)s (minor units); "
        "the lender has not received it"
    ),
    N_(
        "the lender received a direct payment from the debtor of %(amount)s %(currency)s "
        "(minor units, receipt %(receipt)s) that %(agency)s has not reported"
    ),
    N_(
        "the lender received a %(receipt_kind)s of %(amount)s %(currency)s (minor units, "
        "receipt %(receipt)s) that %(agency)s has not reported"
    ),
    N_(
        "%(side)s record %(record)s has %(n)s equally good counterparts in the %(pass_name)s "
        "pass; nothing was matched (ids %(ids)s)"
    ),
    N_(
        "the agency reported %(theirs)s, the lender received %(ours)s (minor units, "
        "%(currency)s); tolerance %(tolerance)s"
    ),
    N_("the agency reported %(their_currency)s, the lender received %(our_currency)s"),
    N_(
        "paid on day %(paid_day)s, received on day %(received_day)s: %(days)s days apart, "
        "the window is %(window)s"
    ),
    N_(
        "%(agency)s remitted %(amount)s for %(n)s payment(s) of %(gross)s gross, "
        "%(commission)s commission (%(contract)s): expected %(expected)s, short by %(delta)s "
        "(minor units, %(currency)s)"
    ),
    N_(
        "%(agency)s remitted %(amount)s for %(n)s payment(s) of %(gross)s gross, "
        "%(commission)s commission (%(contract)s): expected %(expected)s, over by %(delta)s "
        "(minor units, %(currency)s)"
    ),
    # contact rules (gateway.reconciliation.contact_rules)
    N_("%(agency)s: contact during quiet hours (%(channel)s at %(when)s)"),
    N_("%(agency)s: more effective calls in a day than allowed (%(channel)s at %(when)s)"),
    N_("%(agency)s: more calls in 7 days than allowed (%(channel)s at %(when)s)"),
    # deliveries (gateway.dispatch.hooks, adapters.email.journal)
    N_("%(packet)s to %(agency)s was given up after %(n)s attempt(s): %(error)s"),
    N_("%(packet)s to %(agency)s bounced: %(error)s"),
    N_(
        "a batch of %(n)s packet(s) for %(cases)s case(s) to %(agency)s was given up as a "
        "whole: %(error)s"
    ),
    # law firms' replies (adapters.email.triage)
    N_("reply to %(message)s could not be read in full: %(problem)s"),
    N_("%(agency)s: a reply was not read: %(why)s (reply_signature = %(policy)s)"),
    N_("%(agency)s: a message could not be matched to a dispatch: %(why)s"),
    # the agency's refused requests (gateway.console.inbound_health, gateway.errors titles)
    N_("%(problem)s (HTTP %(http)s)"),
    N_("Bad request"),
    N_("Unknown agency"),
    N_("Invalid signature"),
    N_("Timestamp outside tolerance"),
    N_("Missing or malformed webhook headers"),
    N_("Payload too large"),
    N_("Malformed JSON"),
    N_("Event does not match its schema"),
    N_("Conflicting duplicate"),
    N_("Placement not held by this agency"),
    N_("Document not found"),
    N_("Document gone"),
    N_("Document unavailable"),
    N_("Temporarily unable to store"),
    # escalation to the legal tier (gateway.cases.escalation), before "the case is ..."
    N_("the case is %(bucket)s (dpd %(dpd)s) while %(agency)s is in tier %(tier)s, not %(legal)s"),
    # allocation: why a case is not placed (gateway.allocation.routing and rules)
    N_("the case is %(status)s"),
    N_("claim batch %(batch)s: not approved"),
    N_("on hold: %(codes)s"),
    N_("not overdue (0 days past due)"),
    N_("nothing owed (balance %(balance)s)"),
    N_("cooling off until %(day)s"),
    N_("tier %(tier)s is full: waiting for room at %(agencies)s"),
    N_("escalated to %(tier)s, but no agency of that tier can take it"),
    N_("no agency after tier %(tier)s can take it"),
    N_("no agency can take it (%(verdicts)s)"),
    N_("follows the debtor's other accounts at %(agency)s"),
    N_("debtor's other accounts are with %(agency)s, which %(refusal)s: placed on their own"),
    N_("debtor's other accounts are with %(agency)s, which %(refusal)s"),
    N_("debtor's accounts are with %(agency)s"),
    # allocation: an agency's verdict (gateway.allocation.routing and rules)
    N_("currency %(currency)s not in contract"),
    N_("bucket %(bucket)s not in contract"),
    N_("balance %(balance)s below %(minimum)s"),
    N_("balance %(balance)s above %(maximum)s"),
    N_("region %(region)s not in contract"),
    N_("had this case before"),
    N_("at capacity %(load)s/%(limit)s"),
    N_("no room for %(size)s (%(load)s/%(limit)s)"),
    N_("tier %(tier)s is not one of [allocation] tiers"),
    N_("tier %(tier)s: escalated cases go to %(to_tier)s"),
    N_("tier %(tier)s: the case has been through it"),
    N_("tier %(tier)s: the case is due for %(to_tier)s"),
    N_("is not configured"),
    N_("cannot take them (%(fit)s)"),
    N_("cannot take %(bucket)s"),
    N_("is in tier %(tier)s, not one the cases are due for"),
    N_("is full"),
    # a case's lifecycle steps (gateway.allocation.placements, gateway.cases)
    N_("placed with %(agency)s"),
    N_("balance changed at the lender"),
    N_("renewed until %(day)s"),
    N_("overdue again: %(dpd)s days"),
    N_("lender's file: %(codes)s"),
    N_("no longer in the lender's file: %(codes)s"),
    N_("still held: %(codes)s"),
)
"""Every sentence the core writes that the console shows, as a translatable template."""

CODE_SLOTS: Final = frozenset({"state", "status"})
"""Placeholders that hold a code (a state), shown by its display name."""
PHRASE_SLOTS: Final = frozenset({"refusal", "fit", "problem"})
"""Placeholders that hold a sentence of their own."""
SEPARATOR: Final = N_("; ")
"""Between sentences of one text (a full-width semicolon in Chinese)."""
_SLOT = re.compile(r"%\((\w+)\)s")
_FREE: Final = frozenset({"verdicts", "error", "why", "problem", "ids"})
"""Placeholders whose text may itself hold "; " (the others stop at one: joined sentences)."""
_ANY: Final = r".+?"
_ONE: Final = r"(?:(?!; ).)+?"


@cache
def _patterns() -> tuple[tuple[re.Pattern[str], str], ...]:
    found = []
    for template in TEMPLATES:
        parts = _SLOT.split(template)
        regex = "".join(
            re.escape(part) if n % 2 == 0 else f"(?P<{part}>{_ANY if part in _FREE else _ONE})"
            for n, part in enumerate(parts)
        )
        found.append((re.compile(regex, re.S), template))
    return tuple(found)


def _verdicts(text: str) -> str:
    """``AGY_A: bucket M2 not in contract; AGY_B: disabled`` with each verdict translated."""
    parts = []
    for part in text.split("; "):
        agency, colon, verdict = part.partition(": ")
        parts.append(f"{agency}: {said(verdict)}" if colon else said(part))
    return gettext(SEPARATOR).join(parts)


def _slot(name: str, value: str) -> str:
    if name in CODE_SLOTS:
        return term(value)
    if name in PHRASE_SLOTS:
        return said(value)
    if name == "verdicts":
        return _verdicts(value)
    return value


def recognised(text: str) -> tuple[str, Mapping[str, str]] | None:
    """The template ``text`` was written from, and its placeholders' values (None: none)."""
    for pattern, template in _patterns():
        match = pattern.fullmatch(text)
        if match is not None:
            return template, match.groupdict()
    return None


def said(text: object) -> str:
    """``text`` (written by the core in English) in the current language; a code known to
    gateway.console.vocabulary by its display name; anything not recognised as written."""
    if text is None:
        return ""
    text = str(text)
    found = recognised(text)
    if found is not None:
        template, values = found
        return gettext(template) % {name: _slot(name, v) for name, v in values.items()}
    if "; " in text:
        return gettext(SEPARATOR).join(said(part) for part in text.split("; "))
    return term(text) if text in TERMS else text


__all__ = ["CODE_SLOTS", "PHRASE_SLOTS", "SEPARATOR", "TEMPLATES", "recognised", "said"]
