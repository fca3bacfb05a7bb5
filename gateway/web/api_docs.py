"""The OpenAPI description of the ops console's JSON API (``/api/v1``), merged into
``schemas/openapi.json`` by gateway.schema_export. Pure data; the handlers are in
gateway.web.console_api and must keep to it (a test calls every documented path).
"""

from typing import Any

from gateway.resolution_rules import ACTIONS, DEFAULT_RECALL_CODE, RECALL_CODE_PATTERN, ROLES
from gateway.web.read_model import MAX_PAGE_SIZE, SORTS

JsonObject = dict[str, Any]
TAG = "ops-console"
_REF = "#/components/schemas/{}"
_STATES = ["open", "investigating", "resolved", "dismissed", "written_off"]
_SECURITY: list[JsonObject] = [{"consoleToken": []}, {"consoleSession": []}]


def _ref(name: str) -> JsonObject:
    return {"$ref": _REF.format(name)}


def _obj(required: list[str], properties: JsonObject, description: str = "") -> JsonObject:
    schema: JsonObject = {"type": "object", "required": required, "properties": properties}
    if description:
        schema["description"] = description
    return schema


_STR, _INT, _BOOL = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
_TIME = {"type": "string", "format": "date-time"}
_NULL_INT = {"type": ["integer", "null"]}
_NULL_STR = {"type": ["string", "null"]}
_OPEN_OBJ = {"type": "object", "additionalProperties": True}

_SERVICE = _obj(
    ["met", "breached", "on_time_bps"],
    {"met": _INT, "breached": _INT, "on_time_bps": _NULL_INT},
    "Expectations met in time and breached; the on-time rate in basis points (null before any).",
)
_PER_CURRENCY = {"type": "object", "additionalProperties": _INT}

SCHEMAS: JsonObject = {
    "ConsoleMe": _obj(
        ["name", "role", "via", "may_reveal_pii"],
        {
            "name": _STR,
            "role": {"enum": list(ROLES)},
            "via": {"enum": ["session", "token"]},
            "csrf_token": {
                **_NULL_STR,
                "description": "Send as X-CSRF-Token on unsafe calls made with the session.",
            },
            "may_reveal_pii": _BOOL,
        },
    ),
    "ConsoleMismatchRow": _obj(
        ["id", "kind", "severity", "state", "agency_id"],
        {
            "id": _INT,
            "kind": _STR,
            "severity": {"enum": ["high", "medium", "low"]},
            "state": {"enum": _STATES},
            "agency_id": _STR,
            "placement_id": _NULL_STR,
            "case_id": _NULL_STR,
            "currency": _NULL_STR,
            "delta_minor": {**_NULL_INT, "description": "Theirs minus ours, minor units."},
            "assignee": _NULL_STR,
            "detail": _STR,
            "rule": _STR,
            "rule_version": _INT,
            "ours": {"description": "Our record, as the rule saw it."},
            "theirs": {"description": "The agency's report, as the rule saw it."},
            "created_at": _TIME,
            "updated_at": _TIME,
        },
    ),
    "ConsoleMismatchPage": _obj(
        ["total", "page", "pages", "per_page", "sort", "descending", "items"],
        {
            "total": _INT,
            "page": _INT,
            "pages": _INT,
            "per_page": _INT,
            "sort": {"enum": sorted(SORTS)},
            "descending": _BOOL,
            "items": {"type": "array", "items": _ref("ConsoleMismatchRow")},
        },
    ),
    "ConsoleHistoryEntry": _obj(
        ["type", "at", "mismatch_id", "actor", "evidence_seq"],
        {
            "type": {"enum": ["action", "comment"]},
            "at": _TIME,
            "mismatch_id": _INT,
            "actor": _STR,
            "action": {"enum": list(ACTIONS)},
            "reason": _STR,
            "body": {**_STR, "description": "The comment (comments only)."},
            "from_state": _STR,
            "to_state": _STR,
            "details": _OPEN_OBJ,
            "batch": _NULL_STR,
            "evidence_seq": {**_INT, "description": "The evidence leaf attesting it."},
        },
    ),
    "ConsoleMismatch": {
        "allOf": [
            _ref("ConsoleMismatchRow"),
            _obj(
                ["ours", "theirs", "rule", "rule_version", "actions_available", "history"],
                {
                    "event_id": _NULL_INT,
                    "outbox_id": _NULL_INT,
                    "placement": {"type": ["object", "null"]},
                    "event": {"type": ["object", "null"]},
                    "packet": {"type": ["object", "null"]},
                    "resendable_outbox_ids": {"type": "array", "items": _INT},
                    "actions_available": {
                        "type": "array",
                        "items": {"enum": list(ACTIONS)},
                        "description": "What the facts allow now (the role is not considered).",
                    },
                    "history": {"type": "array", "items": _ref("ConsoleHistoryEntry")},
                },
            ),
        ]
    },
    "ConsoleActionRequest": _obj(
        ["action"],
        {
            "action": {
                "enum": list(ACTIONS),
                "description": "; ".join(f"`{a.name}`: {a.description}" for a in ACTIONS.values()),
            },
            "reason": {
                **_STR,
                "description": "Why (recorded with your name in the audit and the evidence "
                "log). Required to close a mismatch; for `comment`, the comment.",
            },
            "assignee": {**_STR, "description": "`assign` only; empty to unassign."},
            "balance_minor": {
                **_INT,
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
    "ConsoleActionResult": _obj(
        ["mismatch_id", "action", "from_state", "to_state", "evidence_seq", "details"],
        {
            "mismatch_id": _INT,
            "action": {"enum": list(ACTIONS)},
            "from_state": _STR,
            "to_state": _STR,
            "evidence_seq": _INT,
            "details": {**_OPEN_OBJ, "description": "What changed (before and after)."},
        },
    ),
    "ConsoleBulkRequest": {
        "allOf": [
            _ref("ConsoleActionRequest"),
            _obj(
                ["filter"],
                {
                    "filter": {
                        "type": "object",
                        "description": "The set to act on, as the list's query parameters: "
                        "state, kind, agency, severity (string or list), assignee, q, id.",
                        "additionalProperties": True,
                    },
                    "limit": {**_INT, "minimum": 1, "maximum": 1000, "default": 1000},
                },
            ),
        ]
    },
    "ConsoleBulkResult": _obj(
        ["batch", "matched", "truncated", "done", "refused"],
        {
            "batch": _STR,
            "matched": _INT,
            "truncated": _BOOL,
            "done": {"type": "array", "items": _ref("ConsoleActionResult")},
            "refused": {
                "type": "array",
                "items": _obj(["mismatch_id", "reason"], {"mismatch_id": _INT, "reason": _STR}),
            },
        },
    ),
    "ConsoleTimelineEntry": _obj(
        ["type", "at"],
        {
            "type": {
                "enum": ["placed", "packet", "attempt", "event", "mismatch", "action", "comment"]
            },
            "at": _TIME,
            "placement_id": _NULL_STR,
            "sha256": {
                **_STR,
                "description": "packet: SHA-256 of the exact bytes sent; event: of the raw body.",
            },
            "evidence_seq": {**_NULL_INT, "description": "The leaf attesting this entry."},
        },
        "One fact; the other members depend on `type` (see README, Ops console).",
    ),
    "ConsoleCaseTimeline": _obj(
        ["case", "placements", "mismatches", "entries", "debtor_masked"],
        {
            "case": {**_OPEN_OBJ, "description": "The case, without personal data."},
            "placements": {"type": "array", "items": {"type": "object"}},
            "mismatches": {"type": "array", "items": {"type": "object"}},
            "entries": {"type": "array", "items": _ref("ConsoleTimelineEntry")},
            "debtor_masked": _ref("ConsoleDebtor"),
        },
    ),
    "ConsoleDebtor": _obj(
        ["name", "national_id", "phones", "address"],
        {
            "name": _NULL_STR,
            "national_id": _NULL_STR,
            "phones": {"type": "array", "items": _STR},
            "address": _NULL_STR,
        },
    ),
    "ConsoleAgency": _obj(
        ["agency_id", "name", "channel", "open_placements", "pending", "dead", "circuit"],
        {
            "agency_id": _STR,
            "name": _STR,
            "channel": _STR,
            "enabled": _BOOL,
            "open_placements": _INT,
            "capacity": _INT,
            "open_mismatches": _INT,
            "pending": _INT,
            "dead": _INT,
            "unknown": _INT,
            "endpoint_disabled": _BOOL,
            "disabled_reason": _NULL_STR,
            "circuit": _obj(
                ["state"],
                {
                    "state": {"enum": ["closed", "open", "half_open", "unknown"]},
                    "consecutive_failures": _NULL_INT,
                },
                "`unknown` when no dispatcher runs in the serving process.",
            ),
        },
    ),
    "ConsoleScorecards": _obj(
        ["period", "agencies"],
        {
            "period": _obj(["from", "to"], {"from": _TIME, "to": _TIME}, "[from, to), UTC."),
            "agencies": {
                "type": "array",
                "items": _obj(
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
                        "contact_violations",
                        "reporting_breaks",
                        "open_mismatches",
                    ],
                    {
                        "agency_id": _STR,
                        "placements": _INT,
                        "recalled": _INT,
                        "placed_minor": _PER_CURRENCY,
                        "collected_minor": _PER_CURRENCY,
                        "recovery_bps": {
                            **_PER_CURRENCY,
                            "description": "Collected / placed per currency, basis points.",
                        },
                        "ack": _SERVICE,
                        "first_activity": _SERVICE,
                        "promises": _SERVICE,
                        "contact_violations": _INT,
                        "reporting_breaks": _INT,
                        "open_mismatches": _INT,
                    },
                    "How an agency served the placements it received in the period.",
                ),
            },
        },
    ),
}


def _params(*names: str) -> list[JsonObject]:
    described = {
        "state": "Repeatable; default open and investigating; `all` for every state.",
        "kind": "Repeatable.",
        "agency": "Repeatable.",
        "severity": "Repeatable.",
        "assignee": "A user name, or `-` for unassigned.",
        "q": "Placement or case id prefix.",
        "sort": f"One of {', '.join(sorted(SORTS))}.",
        "dir": "`asc` or `desc` (default).",
        "page": "1-based.",
        "per_page": f"At most {MAX_PAGE_SIZE}.",
    }
    return [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": described[name],
            "schema": _INT if name in ("page", "per_page") else _STR,
        }
        for name in names
    ]


def _path_param(name: str) -> JsonObject:
    schema = _INT if name == "mismatch_id" else _STR
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _problems(*statuses: int) -> JsonObject:
    meaning = {
        400: "The request is malformed.",
        401: "No valid token or session.",
        403: "Your role may not do this, or a session call lacks X-CSRF-Token.",
        404: "No such mismatch, case or agency.",
        409: "The action does not apply to the mismatch as it stands (the reason says why).",
    }
    problem = {"application/problem+json": {"schema": _ref("Problem")}}
    return {str(s): {"description": meaning[s], "content": problem} for s in statuses}


def _op(
    op_id: str,
    summary: str,
    ok: JsonObject,
    *,
    role: str = "viewer",
    params: list[JsonObject] | None = None,
    body: str | None = None,
    errors: tuple[int, ...] = (401, 403),
) -> JsonObject:
    operation: JsonObject = {
        "operationId": op_id,
        "tags": [TAG],
        "summary": summary,
        "description": f"Role: {role} or stronger.",
        "security": _SECURITY,
        "parameters": params or [],
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": ok}}},
            **_problems(*errors),
        },
    }
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    return operation


_LIST_PARAMS = ("state", "kind", "agency", "severity", "assignee", "q", "sort", "dir", "page")


def paths() -> JsonObject:
    """The ``/api/v1`` paths of the console API."""
    mismatch = [_path_param("mismatch_id")]
    case = [_path_param("case_id")]
    agency = [_path_param("agency_id")]
    act = (400, 401, 403, 404, 409)
    return {
        "/api/v1/me": {"get": _op("consoleMe", "Who you are", _ref("ConsoleMe"))},
        "/api/v1/dashboard": {
            "get": _op(
                "consoleDashboard",
                "Open mismatches by kind and agency, today's deliveries and failures, dead "
                "items, endpoint and circuit state per agency",
                _OPEN_OBJ,
            )
        },
        "/api/v1/mismatches": {
            "get": _op(
                "listMismatches",
                "The mismatch queue: filters, sorting, paging",
                _ref("ConsoleMismatchPage"),
                params=_params(*_LIST_PARAMS, "per_page"),
            )
        },
        "/api/v1/mismatches/bulk": {
            "post": _op(
                "bulkMismatchAction",
                "Apply one action to every mismatch a filter matches (each audited)",
                _ref("ConsoleBulkResult"),
                role="operator",
                body="ConsoleBulkRequest",
                errors=(400, 401, 403, 409),
            )
        },
        "/api/v1/mismatches/{mismatch_id}": {
            "get": _op(
                "getMismatch",
                "One mismatch: both sides, what it points at, history, available actions",
                _ref("ConsoleMismatch"),
                params=mismatch,
                errors=(401, 403, 404),
            )
        },
        "/api/v1/mismatches/{mismatch_id}/actions": {
            "post": _op(
                "actOnMismatch",
                "Act on a mismatch; the action takes effect and is attested",
                _ref("ConsoleActionResult"),
                role="operator",
                params=mismatch,
                body="ConsoleActionRequest",
                errors=act,
            )
        },
        "/api/v1/cases/{case_id}/timeline": {
            "get": _op(
                "caseTimeline",
                "Everything sent and received for a case, with hashes and evidence leaves",
                _ref("ConsoleCaseTimeline"),
                params=case,
                errors=(401, 403, 404),
            )
        },
        "/api/v1/cases/{case_id}/pii": {
            "post": {
                **_op(
                    "revealCasePii",
                    "Reveal a case's personal data (audited; roles in pii_reveal_roles)",
                    _obj(["case_id", "debtor"], {"case_id": _STR, "debtor": _ref("ConsoleDebtor")}),
                    params=case,
                    errors=(400, 401, 403, 404),
                ),
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _obj(["reason"], {"reason": _STR})}},
                },
            }
        },
        "/api/v1/agencies": {
            "get": _op(
                "listAgencies",
                "Every agency: placements, backlog, endpoint and circuit state",
                {"type": "array", "items": _ref("ConsoleAgency")},
            )
        },
        "/api/v1/scorecards": {
            "get": _op(
                "agencyScorecards",
                "Each agency's scorecard for the placements placed in a period: recovery, "
                "service on time, contact-rule violations, reporting breaks, open mismatches",
                _ref("ConsoleScorecards"),
                params=[
                    {
                        "name": "from",
                        "in": "query",
                        "required": False,
                        "description": "First day (UTC), YYYY-MM-DD. Default: 30 days before `to`.",
                        "schema": {"type": "string", "format": "date"},
                    },
                    {
                        "name": "to",
                        "in": "query",
                        "required": False,
                        "description": "Day after the last day (UTC). Default: tomorrow.",
                        "schema": {"type": "string", "format": "date"},
                    },
                ],
                errors=(400, 401, 403),
            )
        },
        "/api/v1/agencies/{agency_id}": {
            "get": _op(
                "getAgency",
                "One agency: health over 24 hours, backlog, recent attempts, SLA breaches",
                {"allOf": [_ref("ConsoleAgency"), _OPEN_OBJ]},
                params=agency,
                errors=(401, 403, 404),
            )
        },
    }


SECURITY_SCHEMES: JsonObject = {
    "consoleToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token from `agency-gateway users token NAME`; acts as that user.",
    },
    "consoleSession": {
        "type": "apiKey",
        "in": "cookie",
        "name": "agw_session",
        "description": "The console login session (`__Host-agw_session` over https). Unsafe "
        "methods must also send the session's CSRF token as `X-CSRF-Token` (see /api/v1/me).",
    },
}

TAG_DOC: JsonObject = {
    "name": TAG,
    "description": "The lender's ops console as JSON: mismatch queue, actions, case "
    "timelines, agency health. Not for agencies.",
}


__all__ = ["SCHEMAS", "SECURITY_SCHEMES", "TAG", "TAG_DOC", "paths"]
