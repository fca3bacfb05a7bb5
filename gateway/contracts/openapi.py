"""The OpenAPI 3.1 document: the inbound API we serve and the packets we send as webhooks.

Paths: the events endpoint (its signed headers, and one problem example per
:class:`~gateway.errors.InboundError` it can answer, grouped by status), the probes and the
ops console's ``/api/v1`` (from gateway.console.api_docs). ``webhooks``: one per packet type.
``components.schemas``: the ``AgencyEvent`` and ``CasePacket`` unions with every wire model
they reference, the problem and acknowledgement bodies, and gateway.console.api_schemas; a name
clash between them is an error, never a silent overwrite. Pure: gateway.contracts.export writes
the result to ``schemas/openapi.json``.
"""

from pydantic import TypeAdapter

from gateway.console import api_docs as console_api, api_schemas as console_schemas
from gateway.contracts import document_api
from gateway.contracts.wire_schemas import (
    DIALECT,
    EVENTS_PATH,
    PACKET_MODELS,
    SCHEMA_BASE_URI,
    JsonObject,
)
from gateway.errors import (
    ConflictingDuplicate,
    ForeignPlacement,
    InboundError,
    MalformedPayload,
    MissingHeaders,
    PayloadTooLarge,
    SchemaViolation,
    SettlementAnswerRefused,
    SignatureInvalid,
    StoreUnavailable,
    TimestampOutOfTolerance,
    UnknownAgency,
)
from gateway.inbound.problems import PROBLEM_BASE, PROBLEM_CONTENT_TYPE
from schemas.base import SCHEMA_VERSION
from schemas.events import EVENT_TYPES, AgencyEvent, example_event
from schemas.packets import PACKET_TYPES, CasePacket

AGENCY_ID_PATTERN = r"^[A-Z][A-Z0-9_]{1,31}$"

_COMPONENTS = "#/components/schemas/{model}"


def _param(name: str, where: str, description: str, schema: JsonObject) -> JsonObject:
    return {
        "name": name,
        "in": where,
        "required": True,
        "description": description,
        "schema": schema,
    }


_PARAMETERS: JsonObject = {
    "AgencyId": _param(
        "agency_id",
        "path",
        "Your agency id as configured at the lender, e.g. `ACME_COLLECT`.",
        {"type": "string", "pattern": AGENCY_ID_PATTERN},
    ),
    "WebhookId": _param(
        "webhook-id",
        "header",
        "Unique id of this message, the idempotency key. Stays the same on every retry of "
        "the same message. 1-255 characters, no `.`.",
        {"type": "string", "minLength": 1, "maxLength": 255, "pattern": r"^[^.]+$"},
    ),
    "WebhookTimestamp": _param(
        "webhook-timestamp",
        "header",
        "Unix time in seconds of this attempt (new on each retry). Refused when more than "
        "5 minutes away from the receiver's clock, in the past or the future.",
        {"type": "integer", "minimum": 0},
    ),
    "WebhookSignature": _param(
        "webhook-signature",
        "header",
        "Standard Webhooks v1.0 signatures over `{webhook-id}.{webhook-timestamp}.{raw body}`, "
        "space-separated as `<version>,<base64>`: `v1` is HMAC-SHA256 with the shared "
        "`whsec_` secret, `v1a` is Ed25519 with the key whose public half (`whpk_`) the "
        "receiver trusts. During key rotation send one signature per key; any match is "
        "accepted.",
        {"type": "string", "minLength": 1},
    ),
}

_PROBLEM_SCHEMAS: JsonObject = {
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details. Branch on `status` and `type`; "
        "`title` and `detail` are for people.",
        "required": ["type", "title", "status"],
        "properties": {
            "type": {
                "type": "string",
                "format": "uri-reference",
                "description": f"`{PROBLEM_BASE}<slug>`; the slug is stable.",
            },
            "title": {"type": "string", "description": "Short summary of the problem type."},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string", "description": "What was wrong with this request."},
            "instance": {"type": "string", "format": "uri-reference"},
            "webhook_id": {
                "type": "string",
                "description": "The webhook-id of the refused request, once it was read.",
            },
            "errors": {
                "type": "array",
                "description": "Schema violations (422 only): one entry per invalid field.",
                "items": {"$ref": "#/components/schemas/ProblemFieldError"},
            },
        },
    },
    "ProblemFieldError": {
        "type": "object",
        "required": ["loc", "msg"],
        "properties": {
            "loc": {
                "type": "string",
                "description": "Dotted path of the field, starting with the event type, "
                "e.g. `payment.reported.data.amount.amount_minor`.",
            },
            "msg": {"type": "string", "description": "Why the value was refused."},
        },
    },
    "EventAccepted": {
        "type": "object",
        "description": "The event is stored durably. Unknown members may be added later; "
        "ignore them.",
        "required": ["status", "webhook_id"],
        "properties": {
            "status": {"const": "accepted"},
            "webhook_id": {"type": "string", "description": "The webhook-id you sent."},
            "event_type": {"type": "string", "description": "The `type` of the stored event."},
        },
    },
}

_EXAMPLE_ID = "evt_01HQ3V7K2M8N4P6R9S1T3V5X7Z"
_BAD_AMOUNT = "Input should be a valid integer, got a number with a fractional part"
_PROBLEM_EXAMPLES: tuple[tuple[type[InboundError], str], ...] = (
    (MissingHeaders, "missing header(s): webhook-signature"),
    (MalformedPayload, "body is not valid JSON: Expecting value: line 1 column 10 (char 9)"),
    (SignatureInvalid, "No webhook-signature matched a key this agency is trusted with."),
    (TimestampOutOfTolerance, "webhook-timestamp 1767225600 is +912 s from server time; …"),
    (ForeignPlacement, "placement PL-AC10000999-1 is not held by agency ACME_COLLECT; …"),
    (UnknownAgency, "no agency 'ACME_COLECT' sends events to this gateway"),
    (ConflictingDuplicate, f"webhook-id {_EXAMPLE_ID} was received before with other content"),
    (PayloadTooLarge, "body is 300000 bytes; the limit is 262144 bytes"),
    (SchemaViolation, f"payment.reported.data.amount.amount_minor: {_BAD_AMOUNT}"),
    (SettlementAnswerRefused, "statement 42 is at revision 2, not 1: confirm the revision …"),
    (StoreUnavailable, "The gateway could not store the message; retry later."),
)
_REFUSED_BEFORE_HEADERS = (UnknownAgency, PayloadTooLarge, MissingHeaders)


def _problem_response(status: int) -> JsonObject:
    errors = [(e, detail) for e, detail in _PROBLEM_EXAMPLES if e.status == status]
    examples: JsonObject = {}
    for error, detail in errors:
        value: JsonObject = {
            "type": PROBLEM_BASE + error.slug,
            "title": error.title,
            "status": error.status,
            "detail": detail,
            "instance": "/v1/agencies/ACME_COLLECT/events",
        }
        if error not in _REFUSED_BEFORE_HEADERS:
            value["webhook_id"] = _EXAMPLE_ID
        if error is SchemaViolation:
            value["errors"] = [
                {"loc": "payment.reported.data.amount.amount_minor", "msg": _BAD_AMOUNT}
            ]
        elif error is SettlementAnswerRefused:
            value["errors"] = [{"loc": "settlement.confirmed.data.revision", "msg": detail}]
        examples[error.slug] = {"summary": (error.__doc__ or "").strip(), "value": value}
    return {
        "description": " ".join((e.__doc__ or "").strip() for e, _ in errors),
        "content": {
            PROBLEM_CONTENT_TYPE: {
                "schema": {"$ref": "#/components/schemas/Problem"},
                "examples": examples,
            }
        },
    }


def _headers_refs() -> list[JsonObject]:
    return [
        {"$ref": f"#/components/parameters/{name}"}
        for name in ("WebhookId", "WebhookTimestamp", "WebhookSignature")
    ]


def _events_operation() -> JsonObject:
    return {
        "operationId": "submitAgencyEvent",
        "tags": ["events"],
        "summary": "Report one event about a placement you hold",
        "description": "One event per request, signed per Standard Webhooks v1.0. We answer "
        "200 only after the event is stored durably. Retry with the same webhook-id and the "
        "same bytes after a timeout, a connection error or a 503; an identical retransmission "
        "gets the first answer again.",
        "parameters": [{"$ref": "#/components/parameters/AgencyId"}, *_headers_refs()],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/AgencyEvent"},
                    "examples": {
                        event_type: {"value": example_event(event_type)}
                        for event_type in EVENT_TYPES
                    },
                }
            },
        },
        "responses": {
            "200": {
                "description": "Stored (or already stored with identical bytes).",
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/EventAccepted"},
                        "example": {
                            "status": "accepted",
                            "webhook_id": _EXAMPLE_ID,
                            "event_type": "payment.reported",
                        },
                    }
                },
            },
            **{
                str(status): _problem_response(status)
                for status in sorted({e.status for e, _ in _PROBLEM_EXAMPLES})
            },
        },
    }


def _packet_webhook(type_name: str) -> JsonObject:
    model = PACKET_MODELS[type_name]
    return {
        "post": {
            "operationId": "receive" + model.__name__,
            "tags": ["packets"],
            "summary": (model.__doc__ or type_name).strip(),
            "description": "Sent by the gateway to your endpoint, signed like the events you "
            "send us. Deduplicate on webhook-id and answer 2xx only once the packet is stored.",
            "parameters": _headers_refs(),
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": _COMPONENTS.format(model=model.__name__)}
                    }
                },
            },
            "responses": {
                "2XX": {"description": "Stored durably; delivery is complete."},
                "410": {"description": "Endpoint retired: we disable it until ops re-enable it."},
                "429": {"description": "Slow down; we honour Retry-After."},
                "503": {"description": "Slow down; we honour Retry-After."},
            },
        }
    }


def _status_json(description: str, status: str | None) -> JsonObject:
    schema: JsonObject = {"type": "string"} if status is None else {"const": status}
    body = {"type": "object", "required": ["status"], "properties": {"status": schema}}
    return {"description": description, "content": {"application/json": {"schema": body}}}


def _probe(summary: str, ok: JsonObject, not_ready: JsonObject | None = None) -> JsonObject:
    responses: JsonObject = {"200": ok}
    if not_ready is not None:
        responses["503"] = not_ready
    return {"get": {"tags": ["operations"], "summary": summary, "responses": responses}}


def openapi_document() -> JsonObject:
    """Return the OpenAPI 3.1 document of the inbound API (and the outbound packets)."""
    keyed, definitions = TypeAdapter.json_schemas(
        [
            ("AgencyEvent", "validation", TypeAdapter(AgencyEvent)),
            ("CasePacket", "validation", TypeAdapter(CasePacket)),
        ],
        ref_template=_COMPONENTS,
    )
    components: JsonObject = dict(definitions.get("$defs", {}))
    for (name, _mode), schema in keyed.items():
        components[name] = schema
    clashes = sorted(set(components) & (set(_PROBLEM_SCHEMAS) | set(console_schemas.SCHEMAS)))
    if clashes:
        raise ValueError(f"wire model names clash with OpenAPI components: {clashes}")
    components.update(_PROBLEM_SCHEMAS)
    components.update(console_schemas.SCHEMAS)
    components.update(document_api.schemas())
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": DIALECT,
        "info": {
            "title": "agency-gateway agency API",
            "version": SCHEMA_VERSION,
            "summary": "Events agencies send to the lender's gateway, and the packets it sends.",
            "description": "Protocol guide: docs/agency-protocol.md. JSON Schemas: "
            f"{SCHEMA_BASE_URI}. Money is integer minor units plus an ISO 4217 code; "
            "timestamps are RFC 3339 with an offset.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "tags": [
            {"name": "events", "description": "Agency to gateway."},
            {
                "name": "documents",
                "description": "Agencies fetch their placements' and statements' documents.",
            },
            {"name": "packets", "description": "Gateway to agency (webhooks)."},
            {"name": "operations", "description": "Probes and metrics for the lender's ops."},
            console_api.TAG_DOC,
        ],
        "paths": {
            EVENTS_PATH: {"post": _events_operation()},
            document_api.DOCUMENTS_PATH: {"post": document_api.documents_operation()},
            document_api.STATEMENT_DOCUMENTS_PATH: {
                "post": document_api.statement_documents_operation()
            },
            "/healthz": _probe("Liveness probe", _status_json("The process is running.", "ok")),
            "/readyz": _probe(
                "Readiness probe",
                _status_json("Ready: the database answers.", "ready"),
                not_ready=_status_json("Not ready: the database is unreachable.", None),
            ),
            "/metrics": _probe(
                "Prometheus metrics",
                {
                    "description": "Prometheus text exposition format.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
            ),
            **console_api.paths(),
        },
        "webhooks": {type_name: _packet_webhook(type_name) for type_name in PACKET_TYPES},
        "components": {
            "schemas": components,
            "parameters": _PARAMETERS,
            "headers": document_api.HEADERS,
            "securitySchemes": console_api.SECURITY_SCHEMES,
        },
    }


__all__ = ["AGENCY_ID_PATTERN", "openapi_document"]
