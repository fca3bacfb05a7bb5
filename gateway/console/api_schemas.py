"""The component schemas of the ops console's JSON API (``/api/v1``): the JSON bodies its
operations take and return (the ``Console*`` objects in SCHEMAS; those of cases are in
gateway.console.case_schemas), written with the building blocks of
gateway.console.schema_parts. Pure data, merged into ``components.schemas`` of
``schemas/openapi.json`` by gateway.contracts.openapi.
"""

from gateway.console.case_schemas import CASE_SCHEMAS
from gateway.console.read_model import SORTS
from gateway.console.schema_parts import (
    BOOL,
    INT,
    NULL_INT,
    NULL_STR,
    OPEN_OBJ,
    STR,
    TIME,
    JsonObject,
    obj,
    ref,
)
from gateway.resolutions.rules import ACTIONS, DEFAULT_RECALL_CODE, RECALL_CODE_PATTERN, ROLES

_STATES = ["open", "investigating", "resolved", "dismissed", "written_off"]

_SERVICE = obj(
    ["met", "breached", "on_time_bps"],
    {"met": INT, "breached": INT, "on_time_bps": NULL_INT},
    "Expectations met in time and breached; the on-time rate in basis points (null before any).",
)
_PER_CURRENCY = {"type": "object", "additionalProperties": INT}

SCHEMAS: JsonObject = {
    "ConsoleMe": obj(
        ["name", "role", "via", "may_reveal_pii"],
        {
            "name": STR,
            "role": {"enum": list(ROLES)},
            "via": {"enum": ["session", "token"]},
            "csrf_token": {
                **NULL_STR,
                "description": "Send as X-CSRF-Token on unsafe calls made with the session.",
            },
            "may_reveal_pii": BOOL,
        },
    ),
    "ConsoleMismatchRow": obj(
        ["id", "kind", "severity", "state", "agency_id"],
        {
            "id": INT,
            "kind": STR,
            "severity": {"enum": ["high", "medium", "low"]},
            "state": {"enum": _STATES},
            "agency_id": STR,
            "placement_id": NULL_STR,
            "case_id": NULL_STR,
            "currency": NULL_STR,
            "delta_minor": {**NULL_INT, "description": "Theirs minus ours, minor units."},
            "assignee": NULL_STR,
            "detail": STR,
            "rule": STR,
            "rule_version": INT,
            "ours": {"description": "Our record, as the rule saw it."},
            "theirs": {"description": "The agency's report, as the rule saw it."},
            "created_at": TIME,
            "updated_at": TIME,
        },
    ),
    "ConsoleMismatchPage": obj(
        ["total", "page", "pages", "per_page", "sort", "descending", "items"],
        {
            "total": INT,
            "page": INT,
            "pages": INT,
            "per_page": INT,
            "sort": {"enum": sorted(SORTS)},
            "descending": BOOL,
            "items": {"type": "array", "items": ref("ConsoleMismatchRow")},
        },
    ),
    "ConsoleHistoryEntry": obj(
        ["type", "at", "mismatch_id", "actor", "evidence_seq"],
        {
            "type": {"enum": ["action", "comment"]},
            "at": TIME,
            "mismatch_id": INT,
            "actor": STR,
            "action": {"enum": list(ACTIONS)},
            "reason": STR,
            "body": {**STR, "description": "The comment (comments only)."},
            "from_state": STR,
            "to_state": STR,
            "details": OPEN_OBJ,
            "batch": NULL_STR,
            "evidence_seq": {**INT, "description": "The evidence leaf attesting it."},
        },
    ),
    "ConsoleMismatch": {
        "allOf": [
            ref("ConsoleMismatchRow"),
            obj(
                ["ours", "theirs", "rule", "rule_version", "actions_available", "history"],
                {
                    "event_id": NULL_INT,
                    "outbox_id": NULL_INT,
                    "placement": {"type": ["object", "null"]},
                    "event": {"type": ["object", "null"]},
                    "packet": {"type": ["object", "null"]},
                    "resendable_outbox_ids": {"type": "array", "items": INT},
                    "actions_available": {
                        "type": "array",
                        "items": {"enum": list(ACTIONS)},
                        "description": "What the facts allow now (the role is not considered).",
                    },
                    "history": {"type": "array", "items": ref("ConsoleHistoryEntry")},
                },
            ),
        ]
    },
    "ConsoleActionRequest": obj(
        ["action"],
        {
            "action": {
                "enum": list(ACTIONS),
                "description": "; ".join(f"`{a.name}`: {a.description}" for a in ACTIONS.values()),
            },
            "reason": {
                **STR,
                "description": "Why (recorded with your name in the audit and the evidence "
                "log). Required to close a mismatch; for `comment`, the comment.",
            },
            "assignee": {**STR, "description": "`assign` only; empty to unassign."},
            "balance_minor": {
                **INT,
                "minimum": 0,
                "description": "`amend` only: the new balance (default: restate the current).",
            },
            "recall_code": {
                "type": "string",
                "pattern": RECALL_CODE_PATTERN,
                "default": DEFAULT_RECALL_CODE,
                "description": "`recall` only: the reason code the agency receives.",
            },
        },
    ),
    "ConsoleActionResult": obj(
        ["mismatch_id", "action", "from_state", "to_state", "evidence_seq", "details"],
        {
            "mismatch_id": INT,
            "action": {"enum": list(ACTIONS)},
            "from_state": STR,
            "to_state": STR,
            "evidence_seq": INT,
            "details": {**OPEN_OBJ, "description": "What changed (before and after)."},
        },
    ),
    "ConsoleBulkRequest": {
        "allOf": [
            ref("ConsoleActionRequest"),
            obj(
                ["filter"],
                {
                    "filter": {
                        "type": "object",
                        "description": "The set to act on, as the list's query parameters: "
                        "state, kind, agency, severity (string or list), assignee, q, id.",
                        "additionalProperties": True,
                    },
                    "limit": {**INT, "minimum": 1, "maximum": 1000, "default": 1000},
                },
            ),
        ]
    },
    "ConsoleBulkResult": obj(
        ["batch", "matched", "truncated", "done", "refused"],
        {
            "batch": STR,
            "matched": INT,
            "truncated": BOOL,
            "done": {"type": "array", "items": ref("ConsoleActionResult")},
            "refused": {
                "type": "array",
                "items": obj(["mismatch_id", "reason"], {"mismatch_id": INT, "reason": STR}),
            },
        },
    ),
    "ConsoleTimelineEntry": obj(
        ["type", "at"],
        {
            "type": {
                "enum": [
                    "placed",
                    "packet",
                    "attempt",
                    "event",
                    "mismatch",
                    "action",
                    "comment",
                    "status",
                    "hold",
                ]
            },
            "at": TIME,
            "placement_id": NULL_STR,
            "sha256": {
                **STR,
                "description": "packet: SHA-256 of the exact bytes sent; event: of the raw body.",
            },
            "evidence_seq": {**NULL_INT, "description": "The leaf attesting this entry."},
            "channel": {
                "enum": ["webhook", "sftp", "email", "file"],
                "description": "event: how it reached us (`file`: `events import`); "
                "`webhook_id` is its id there (the webhook id, the mail's Message-ID, a "
                "file's hash).",
            },
            "agency_text": {
                "type": "array",
                "items": {"type": "array", "items": STR, "minItems": 2, "maxItems": 2},
                "description": "event: the free text the agency wrote (their case reference, a "
                "reason, a complaint summary, a court), as [label, text] pairs, unchanged.",
            },
            "reply_signature": {
                "type": ["object", "null"],
                "description": "event from an email reply: the verdict on the firm's S/MIME "
                "signature (`verified` with the pinned certificate's fingerprint, `unsigned`, "
                "`not_checked`); null for other channels.",
                "properties": {"status": STR, "signer_sha256": NULL_STR},
            },
        },
        "One fact; the other members depend on `type` (see README, Ops console).",
    ),
    "ConsoleCaseTimeline": obj(
        ["case", "placements", "mismatches", "entries", "debtor_masked"],
        {
            "case": {**OPEN_OBJ, "description": "The case, without personal data."},
            "placements": {"type": "array", "items": {"type": "object"}},
            "mismatches": {"type": "array", "items": {"type": "object"}},
            "entries": {"type": "array", "items": ref("ConsoleTimelineEntry")},
            "debtor_masked": ref("ConsoleDebtor"),
        },
    ),
    "ConsoleDebtor": obj(
        ["name", "national_id", "phones", "address"],
        {
            "name": NULL_STR,
            "national_id": NULL_STR,
            "phones": {"type": "array", "items": STR},
            "address": NULL_STR,
        },
    ),
    "ConsoleAgency": obj(
        ["agency_id", "name", "channel", "open_placements", "pending", "dead", "circuit"],
        {
            "agency_id": STR,
            "name": STR,
            "channel": STR,
            "enabled": BOOL,
            "open_placements": INT,
            "capacity": INT,
            "open_mismatches": INT,
            "pending": INT,
            "dead": INT,
            "unknown": INT,
            "endpoint_disabled": BOOL,
            "disabled_reason": NULL_STR,
            "deletions": obj(
                ["open", "met", "breached"],
                {"open": INT, "met": INT, "breached": INT},
                "Data deletion requests of ended placements (agency page only): awaiting "
                "data.deleted, confirmed, overdue.",
            ),
            "circuit": obj(
                ["state"],
                {
                    "state": {"enum": ["closed", "open", "half_open", "unknown"]},
                    "consecutive_failures": NULL_INT,
                },
                "`unknown` when no dispatcher runs in the serving process.",
            ),
        },
    ),
    "ConsoleScorecards": obj(
        ["period", "agencies"],
        {
            "period": obj(["from", "to"], {"from": TIME, "to": TIME}, "[from, to), UTC."),
            "agencies": {
                "type": "array",
                "items": obj(
                    [
                        "agency_id",
                        "placements",
                        "recalled",
                        "placed_minor",
                        "collected_minor",
                        "recovery_bps",
                        "ack",
                        "first_activity",
                        "promises",
                        "deletions",
                        "contact_violations",
                        "reporting_breaks",
                        "open_mismatches",
                    ],
                    {
                        "agency_id": STR,
                        "placements": INT,
                        "recalled": INT,
                        "placed_minor": _PER_CURRENCY,
                        "collected_minor": _PER_CURRENCY,
                        "recovery_bps": {
                            **_PER_CURRENCY,
                            "description": "Collected / placed per currency, basis points.",
                        },
                        "ack": _SERVICE,
                        "first_activity": _SERVICE,
                        "promises": _SERVICE,
                        "deletions": _SERVICE,
                        "contact_violations": INT,
                        "reporting_breaks": INT,
                        "open_mismatches": INT,
                    },
                    "How an agency served the placements it received in the period.",
                ),
            },
        },
    ),
}

SCHEMAS.update(CASE_SCHEMAS)


__all__ = ["SCHEMAS"]
