"""The component schemas of the console API's case operations (``/api/v1/cases``): a page of
the case list, and one case with its holds, placements, allocation decisions ("why this
agency"), escalations and history, as gateway.cases.views returns them. Pure data, part of
gateway.console.api_schemas.SCHEMAS.
"""

from gateway.console.case_actions import CASE_ACTIONS, NOTE_OPTIONAL
from gateway.console.schema_parts import (
    BOOL,
    DAY,
    INT,
    NULL_DAY,
    NULL_INT,
    NULL_STR,
    NULL_TIME,
    STR,
    STR_LIST,
    TIME,
    JsonObject,
    array,
    nullable,
    obj,
    ref,
)
from gateway.lifecycle import CASE_STATES
from schemas.account import HOLD_CODE_PATTERN

_CASE_STATUS: JsonObject = {"enum": list(CASE_STATES)}

CASE_SCHEMAS: JsonObject = {
    "ConsoleCaseRow": obj(
        ["id", "debtor_id", "status", "bucket", "dpd", "currency", "balance_minor", "holds"],
        {
            "id": STR,
            "debtor_id": STR,
            "debtor_key": {
                **NULL_STR,
                "description": "Keyed hash of the debtor id: filter by it (`debtor_key`).",
            },
            "status": _CASE_STATUS,
            "bucket": STR,
            "dpd": INT,
            "currency": STR,
            "balance_minor": INT,
            "product": STR,
            "unallocated_reason": {
                **NULL_STR,
                "description": "Why the last allocation round left it unplaced.",
            },
            "updated_at": TIME,
            "placement_id": {**NULL_STR, "description": "Its open placement, if any."},
            "agency_id": NULL_STR,
            "placement_state": NULL_STR,
            "tier": NULL_STR,
            "return_by": NULL_DAY,
            "holds": {**STR_LIST, "description": "Codes of its active holds."},
        },
        "A case in the list: no personal data.",
    ),
    "ConsoleCasePage": obj(
        ["total", "limit", "after", "next_after", "items"],
        {
            "total": {**INT, "description": "Cases matching the filters, all pages."},
            "limit": INT,
            "after": NULL_STR,
            "next_after": {
                **NULL_STR,
                "description": "Pass as `after` for the next page; null on the last.",
            },
            "items": array("ConsoleCaseRow"),
        },
    ),
    "ConsoleCaseRecord": obj(
        ["id", "debtor_id", "status", "bucket", "dpd", "currency", "balance_minor"],
        {
            "id": STR,
            "debtor_id": STR,
            "region": STR,
            "product": STR,
            "currency": STR,
            "principal_minor": INT,
            "balance_minor": INT,
            "dpd": INT,
            "credit_grade": STR,
            "due_date": DAY,
            "bucket": STR,
            "status": _CASE_STATUS,
            "unallocated_reason": NULL_STR,
            "created_at": TIME,
            "updated_at": TIME,
        },
        "The case without the debtor's personal data.",
    ),
    "ConsoleCaseHold": obj(
        ["id", "code", "source", "placed_by", "placed_at", "active"],
        {
            "id": INT,
            "case_id": STR,
            "code": STR,
            "source": {"enum": ["intake", "ops", "agency"]},
            "note": NULL_STR,
            "placed_by": STR,
            "placed_at": TIME,
            "released_at": NULL_TIME,
            "released_by": NULL_STR,
            "release_note": NULL_STR,
            "active": {**BOOL, "description": "Not released yet."},
        },
    ),
    "ConsoleAllocationDecision": obj(
        ["id", "round_id", "bucket", "rule", "strategy", "seed", "candidates", "chosen_agency"],
        {
            "id": INT,
            "round_id": STR,
            "debtor_id": STR,
            "case_ids": {**STR_LIST, "description": "The debtor's cases decided together."},
            "bucket": {**STR, "description": "The bucket the group was placed by."},
            "tier": NULL_STR,
            "rule": {**STR, "description": "Mixed-debtor rule: single, worst or split."},
            "strategy": STR,
            "seed": INT,
            "candidates": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "agency": STR,
                        "tier": NULL_STR,
                        "verdict": {
                            **STR,
                            "description": "`eligible`, or why the agency could not take it.",
                        },
                        "weight": {"type": ["number", "null"]},
                        "factor": {"type": ["number", "null"]},
                    },
                    "additionalProperties": True,
                },
                "description": "Every agency considered, with its verdict and weight.",
            },
            "draw": {"type": ["number", "null"], "description": "The weighted draw, in [0, 1)."},
            "chosen_agency": {**NULL_STR, "description": "Null: no agency took the cases."},
            "reason": NULL_STR,
            "decided_at": TIME,
        },
        "Why a debtor's cases went where they went in one allocation round.",
    ),
    "ConsoleCasePlacement": obj(
        ["id", "agency_id", "state", "balance_minor", "collected_minor", "return_by", "open"],
        {
            "id": STR,
            "case_id": STR,
            "agency_id": STR,
            "state": STR,
            "open": {**BOOL, "description": "The agency works it now."},
            "version": INT,
            "currency": STR,
            "balance_minor": INT,
            "acked_balance_minor": NULL_INT,
            "collected_minor": INT,
            "agency_case_ref": NULL_STR,
            "placed_at": TIME,
            "return_by": DAY,
            "recalled_at": NULL_TIME,
            "recall_reason": NULL_STR,
            "strategy": STR,
            "tier": NULL_STR,
            "decision_id": NULL_INT,
            "expiry_warned_at": NULL_TIME,
            "renewals": INT,
            "updated_at": TIME,
            "decision": {
                **nullable("ConsoleAllocationDecision"),
                "description": "Why this agency (null when no decision was recorded).",
            },
        },
    ),
    "ConsoleEscalation": obj(
        ["id", "placement_id", "agency_id", "state", "reason", "proposed_at"],
        {
            "id": INT,
            "case_id": STR,
            "placement_id": STR,
            "agency_id": STR,
            "state": {"enum": ["proposed", "approved", "rejected"]},
            "reason": STR,
            "proposed_at": TIME,
            "decided_by": NULL_STR,
            "decided_at": NULL_TIME,
            "note": NULL_STR,
        },
    ),
    "ConsoleCaseStep": obj(
        ["at", "event", "from_status", "to_status", "actor"],
        {
            "id": INT,
            "at": TIME,
            "event": STR,
            "from_status": _CASE_STATUS,
            "to_status": _CASE_STATUS,
            "actor": {
                **STR,
                "description": "intake, allocation, expiry, escalation, agency:ID or ops:NAME.",
            },
            "reason": NULL_STR,
            "placement_id": NULL_STR,
        },
        "One change of the case's status.",
    ),
    "ConsoleCase": obj(
        ["case", "holds", "placements", "unallocated_decision", "escalations", "history"],
        {
            "case": ref("ConsoleCaseRecord"),
            "holds": {**array("ConsoleCaseHold"), "description": "Newest first."},
            "placements": {**array("ConsoleCasePlacement"), "description": "Newest first."},
            "unallocated_decision": {
                **nullable("ConsoleAllocationDecision"),
                "description": "The newest round since its last placement that left it unplaced.",
            },
            "escalations": {**array("ConsoleEscalation"), "description": "Newest first."},
            "history": {**array("ConsoleCaseStep"), "description": "Oldest first."},
        },
        "Everything about one case but the debtor's personal data.",
    ),
    "ConsoleCaseActionRequest": obj(
        ["action"],
        {
            "action": {
                "enum": list(CASE_ACTIONS),
                "description": "`hold` (needs `code`), `release` (`code`), `reopen`, `renew` "
                "(`placement_id`, `days`), `approve_escalation` / `reject_escalation` "
                "(`escalation_id`).",
            },
            "note": {
                **STR,
                "description": "Why (recorded with your name in the case's history and the "
                "evidence log); required for every action but "
                + ", ".join(f"`{a}`" for a in sorted(NOTE_OPTIONAL))
                + ".",
            },
            "code": {**STR, "pattern": HOLD_CODE_PATTERN, "description": "The hold code."},
            "placement_id": {**STR, "description": "`renew`: one of the case's open placements."},
            "days": {**INT, "minimum": 1, "description": "`renew`: by how many days."},
            "escalation_id": {**INT, "description": "One of the case's proposed escalations."},
        },
    ),
    "ConsoleCaseActionResult": obj(
        ["case_id", "action", "evidence_seq", "details"],
        {
            "case_id": STR,
            "action": {"enum": list(CASE_ACTIONS)},
            "evidence_seq": {**INT, "description": "The `action` leaf attesting it."},
            "details": {
                "type": "object",
                "additionalProperties": True,
                "description": "What came of it: the hold outcome (status, recalled placement, "
                "holds standing), the status after a reopening, the renewal (new return_by, "
                "version) or the escalation decided.",
            },
        },
    ),
}


__all__ = ["CASE_SCHEMAS"]
