"""The OpenAPI description of the ops console's JSON API (``/api/v1``): its operations
(paths, parameters, error responses), security schemes and tag, merged into
``schemas/openapi.json`` by gateway.contracts.openapi together with the component schemas in
gateway.console.api_schemas. Pure data; the handlers are in gateway.console.api and must keep
to it (a test calls every documented path).
"""

from gateway.cases.views import DEFAULT_LIMIT, MAX_LIMIT
from gateway.console.read_model import MAX_PAGE_SIZE, SORTS
from gateway.console.schema_parts import (
    BOOL,
    INT,
    NULL_STR,
    OPEN_OBJ,
    STR,
    TIME,
    JsonObject,
    obj,
    ref,
)

TAG = "ops-console"
_SECURITY: list[JsonObject] = [{"consoleToken": []}, {"consoleSession": []}]


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
        "older_than": "Raised more than this many days ago.",
        "newer_than": "Raised less than this many days ago.",
        "min_amount": "The difference is at least this in size (`1234.56`).",
        "max_amount": "The difference is at most this in size.",
    }
    return [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": described[name],
            "schema": INT if name in ("page", "per_page") else STR,
        }
        for name in names
    ]


_CASE_PARAMS: tuple[tuple[str, str, JsonObject], ...] = (
    ("status", "Repeatable; a case status (README, Case lifecycle).", STR),
    ("bucket", "Repeatable.", STR),
    ("agency", "Repeatable; the agency of the case's open placement.", STR),
    ("tier", "Repeatable; the tier of the case's open placement.", STR),
    ("held", "`true`: with an active hold; `false`: without.", BOOL),
    ("hold", "Repeatable; with an active hold of this code.", STR),
    (
        "debtor_key",
        "One debtor's keyed hash (64 hex digits; `debtor_key` of a case row). A debtor id in "
        "clear (`debtor`) is refused: it would sit in URLs and logs.",
        STR,
    ),
    ("unallocated", "`true`: the last allocation round left it unplaced.", BOOL),
    (
        "q",
        "Any id, exactly: case, placement, the agency's case reference, or a debtor id "
        "(found by its key).",
        STR,
    ),
    ("limit", f"Rows per page (default {DEFAULT_LIMIT}, at most {MAX_LIMIT}).", INT),
    ("after", "The `next_after` of the previous page (cases come in id order).", STR),
)


def _case_params() -> list[JsonObject]:
    return [
        {"name": name, "in": "query", "required": False, "description": text, "schema": schema}
        for name, text, schema in _CASE_PARAMS
    ]


def _path_param(name: str) -> JsonObject:
    schema = INT if name == "mismatch_id" else STR
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _problems(*statuses: int) -> JsonObject:
    meaning = {
        400: "The request is malformed.",
        401: "No valid token or session.",
        403: "Your role may not do this, or a session call lacks X-CSRF-Token.",
        404: "No such mismatch, case, placement, escalation or agency.",
        409: "The action does not apply to the mismatch or case as it stands (the reason says "
        "why).",
    }
    problem = {"application/problem+json": {"schema": ref("Problem")}}
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
            "content": {"application/json": {"schema": ref(body)}},
        }
    return operation


_LIST_PARAMS = (
    "state",
    "kind",
    "agency",
    "severity",
    "assignee",
    "q",
    "older_than",
    "newer_than",
    "min_amount",
    "max_amount",
    "sort",
    "dir",
    "page",
)


_COMPLAINT = obj(
    ["id", "source", "source_ref", "case_id", "state", "deadline_at", "overdue"],
    {
        "id": INT,
        "source": STR,
        "source_ref": STR,
        "case_id": STR,
        "placement_id": NULL_STR,
        "agency_id": NULL_STR,
        "collector_id": NULL_STR,
        "channel": STR,
        "category": STR,
        "received_at": TIME,
        "deadline_at": TIME,
        "state": STR,
        "outcome": NULL_STR,
        "owner": NULL_STR,
        "held": BOOL,
        "overdue": BOOL,
    },
    "A complaint (gateway.complaints); the summary is never in it.",
)
_LENDER_COMPLAINT = obj(
    ["complaint_id", "received_at", "channel"],
    {
        "complaint_id": STR,
        "case_id": STR,
        "placement_id": STR,
        "received_at": TIME,
        "channel": STR,
        "category": STR,
        "contact_at": TIME,
        "collector_id": STR,
        "summary": STR,
    },
    "One complaint from the lender's channel: case_id or placement_id names the case "
    '(README "Complaints").',
)


def paths() -> JsonObject:
    """The ``/api/v1`` paths of the console API."""
    mismatch = [_path_param("mismatch_id")]
    case = [_path_param("case_id")]
    agency = [_path_param("agency_id")]
    act = (400, 401, 403, 404, 409)
    return {
        "/api/v1/me": {"get": _op("consoleMe", "Who you are", ref("ConsoleMe"))},
        "/api/v1/dashboard": {
            "get": _op(
                "consoleDashboard",
                "Open mismatches by kind and agency, today's deliveries and failures, dead "
                "items, endpoint and circuit state per agency",
                OPEN_OBJ,
            )
        },
        "/api/v1/mismatches": {
            "get": _op(
                "listMismatches",
                "The mismatch queue: filters, sorting, paging",
                ref("ConsoleMismatchPage"),
                params=_params(*_LIST_PARAMS, "per_page"),
            )
        },
        "/api/v1/mismatches/bulk": {
            "post": _op(
                "bulkMismatchAction",
                "Apply one action to every mismatch a filter matches (each audited)",
                ref("ConsoleBulkResult"),
                role="operator",
                body="ConsoleBulkRequest",
                errors=(400, 401, 403, 409),
            )
        },
        "/api/v1/mismatches/{mismatch_id}": {
            "get": _op(
                "getMismatch",
                "One mismatch: both sides, what it points at, history, available actions",
                ref("ConsoleMismatch"),
                params=mismatch,
                errors=(401, 403, 404),
            )
        },
        "/api/v1/mismatches/{mismatch_id}/actions": {
            "post": _op(
                "actOnMismatch",
                "Act on a mismatch; the action takes effect and is attested",
                ref("ConsoleActionResult"),
                role="operator",
                params=mismatch,
                body="ConsoleActionRequest",
                errors=act,
            )
        },
        "/api/v1/cases": {
            "get": _op(
                "listCases",
                "Cases, filtered and searched by any id, in id order, a page at a time",
                ref("ConsoleCasePage"),
                params=_case_params(),
                errors=(400, 401, 403),
            )
        },
        "/api/v1/cases/{case_id}": {
            "get": _op(
                "getCase",
                "One case without personal data: holds, placements and why each went to its "
                "agency, the last round that left it unplaced, escalations, history",
                ref("ConsoleCase"),
                params=case,
                errors=(401, 403, 404),
            )
        },
        "/api/v1/cases/{case_id}/actions": {
            "post": _op(
                "actOnCase",
                "Act on a case: hold, release, reopen, renew a placement, decide an "
                "escalation; done through the case's services and attested",
                ref("ConsoleCaseActionResult"),
                role="operator",
                params=case,
                body="ConsoleCaseActionRequest",
                errors=act,
            )
        },
        "/api/v1/cases/{case_id}/timeline": {
            "get": _op(
                "caseTimeline",
                "Everything sent and received for a case, with hashes and evidence leaves",
                ref("ConsoleCaseTimeline"),
                params=case,
                errors=(401, 403, 404),
            )
        },
        "/api/v1/cases/{case_id}/pii": {
            "post": {
                **_op(
                    "revealCasePii",
                    "Reveal a case's personal data (audited; roles in pii_reveal_roles)",
                    obj(["case_id", "debtor"], {"case_id": STR, "debtor": ref("ConsoleDebtor")}),
                    params=case,
                    errors=(400, 401, 403, 404),
                ),
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": obj(["reason"], {"reason": STR})}},
                },
            }
        },
        "/api/v1/agencies": {
            "get": _op(
                "listAgencies",
                "Every agency: placements, backlog, endpoint and circuit state",
                {"type": "array", "items": ref("ConsoleAgency")},
            )
        },
        "/api/v1/scorecards": {
            "get": _op(
                "agencyScorecards",
                "Each agency's scorecard for the placements placed in a period: recovery, "
                "service on time, contact-rule violations, reporting breaks, open mismatches",
                ref("ConsoleScorecards"),
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
        "/api/v1/complaints": {
            "get": _op(
                "listComplaints",
                "Complaints, the nearest deadline first: by default those waiting for an "
                "answer (`state`: open, investigating, resolved, closed, waiting or all; "
                "`agency`; `overdue=1`)",
                {"type": "array", "items": _COMPLAINT},
            ),
            "post": {
                **_op(
                    "receiveComplaint",
                    "The lender's complaint channel: open one complaint (the same "
                    "complaint_id answers with the complaint it opened, created false)",
                    {"allOf": [_COMPLAINT, obj(["created"], {"created": BOOL})]},
                    role="operator",
                    errors=(400, 401, 403, 404),
                ),
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _LENDER_COMPLAINT}},
                },
            },
        },
        "/api/v1/agencies/{agency_id}": {
            "get": _op(
                "getAgency",
                "One agency: health over 24 hours, backlog, recent attempts, SLA breaches",
                {"allOf": [ref("ConsoleAgency"), OPEN_OBJ]},
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
    "description": "The lender's ops console as JSON: mismatch queue, actions, cases and "
    "their timelines, agency health. Not for agencies.",
}


__all__ = ["SECURITY_SCHEMES", "TAG", "TAG_DOC", "paths"]
