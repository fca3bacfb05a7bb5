"""Published contracts generated from the wire models: JSON Schema documents and OpenAPI.

Agencies code against ``schemas/json/*.json`` (JSON Schema draft 2020-12, one document per
packet and event type plus the unions and the intake row) and ``schemas/openapi.json``
(OpenAPI 3.1: the inbound API we serve, and the packets we send as ``webhooks``). Both are
rendered from ``schemas/`` by pure functions here; only :func:`export` writes files. A unit
test compares the checked-in files with :func:`render_all`, so a model change without
``make schemas`` fails the build.
"""

import json
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, TypeAdapter

from gateway.errors import (
    ConflictingDuplicate,
    ForeignPlacement,
    InboundError,
    MalformedPayload,
    MissingHeaders,
    PayloadTooLarge,
    SchemaViolation,
    SignatureInvalid,
    StoreUnavailable,
    TimestampOutOfTolerance,
    UnknownAgency,
)
from gateway.problems import PROBLEM_BASE, PROBLEM_CONTENT_TYPE
from gateway.web import api_docs as console_api, api_schemas as console_schemas
from schemas.account import IntakeAccount
from schemas.base import SCHEMA_VERSION
from schemas.events import EVENT_TYPES, AgencyEvent
from schemas.packets import PACKET_TYPES, CasePacket

JsonObject = dict[str, Any]

DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_BASE_URI = f"https://agency-gateway.dev/schemas/v{SCHEMA_VERSION}/"

JSON_DIR = Path("schemas/json")
OPENAPI_PATH = Path("schemas/openapi.json")
EVENTS_PATH = "/v1/agencies/{agency_id}/events"
AGENCY_ID_PATTERN = r"^[A-Z][A-Z0-9_]{1,31}$"

_COMPONENTS = "#/components/schemas/{model}"


def _models_by_type(union: object) -> dict[str, type[BaseModel]]:
    """Map each wire ``type`` literal of a discriminated union to its model class."""
    members = get_args(get_args(union)[0])
    found: dict[str, type[BaseModel]] = {}
    for model in members:
        (literal,) = get_args(model.model_fields["type"].annotation)
        found[literal] = model
    return found


PACKET_MODELS = _models_by_type(CasePacket)
EVENT_MODELS = _models_by_type(AgencyEvent)


def _document(name: str, title: str, schema: JsonObject) -> JsonObject:
    return {**schema, "$schema": DIALECT, "$id": f"{SCHEMA_BASE_URI}{name}.json", "title": title}


def json_schemas() -> dict[str, JsonObject]:
    """Return every JSON Schema document keyed by its file stem (``payment.reported``...)."""
    docs: dict[str, JsonObject] = {
        "intake-account": _document(
            "intake-account",
            "Intake account (one overdue account from the lender)",
            IntakeAccount.model_json_schema(mode="validation"),
        ),
        "case-packet": _document(
            "case-packet",
            "Case packet (any packet the gateway sends to an agency)",
            {
                **TypeAdapter(CasePacket).json_schema(mode="validation"),
                "description": "The envelope's `type` selects one of the packet schemas.",
            },
        ),
        "agency-event": _document(
            "agency-event",
            "Agency event (any event an agency sends to the gateway)",
            {
                **TypeAdapter(AgencyEvent).json_schema(mode="validation"),
                "description": f"POST one per request to {EVENTS_PATH}; "
                "the envelope's `type` selects one of the event schemas.",
            },
        ),
    }
    for type_name in PACKET_TYPES:
        schema = PACKET_MODELS[type_name].model_json_schema(mode="validation")
        docs[type_name] = _document(type_name, f"{type_name} packet", schema)
    for type_name in EVENT_TYPES:
        schema = EVENT_MODELS[type_name].model_json_schema(mode="validation")
        docs[type_name] = _document(type_name, f"{type_name} event", schema)
    return docs


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
                "application/json": {"schema": {"$ref": "#/components/schemas/AgencyEvent"}}
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
            {"name": "packets", "description": "Gateway to agency (webhooks)."},
            {"name": "operations", "description": "Probes and metrics for the lender's ops."},
            console_api.TAG_DOC,
        ],
        "paths": {
            EVENTS_PATH: {"post": _events_operation()},
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
            "securitySchemes": console_api.SECURITY_SCHEMES,
        },
    }


def _dumps(document: JsonObject) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def render_all() -> dict[str, str]:
    """Return every generated file as relative path (POSIX) -> exact text."""
    files = {
        (JSON_DIR / f"{name}.json").as_posix(): _dumps(doc) for name, doc in json_schemas().items()
    }
    files[OPENAPI_PATH.as_posix()] = _dumps(openapi_document())
    return files


def export(directory_root: Path) -> list[Path]:
    """Write the generated files under ``directory_root`` (the repository root).

    Stale ``schemas/json/*.json`` files that no model produces any more are removed, so a
    renamed type does not leave a dead contract behind. Returns the written paths.
    """
    files = render_all()
    json_dir = directory_root / JSON_DIR
    json_dir.mkdir(parents=True, exist_ok=True)
    for stale in json_dir.glob("*.json"):
        if stale.relative_to(directory_root).as_posix() not in files:
            stale.unlink()
    written: list[Path] = []
    for relative, text in files.items():
        path = directory_root / relative
        path.write_bytes(text.encode("utf-8"))
        written.append(path)
    return written


__all__ = [
    "AGENCY_ID_PATTERN",
    "DIALECT",
    "EVENTS_PATH",
    "EVENT_MODELS",
    "JSON_DIR",
    "OPENAPI_PATH",
    "PACKET_MODELS",
    "SCHEMA_BASE_URI",
    "export",
    "json_schemas",
    "openapi_document",
    "render_all",
]
