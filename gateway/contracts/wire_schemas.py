"""The JSON Schema documents of the wire models (draft 2020-12).

One document per packet and event type, plus the two discriminated unions (``case-packet``,
``agency-event``), the intake row (``intake-account``) and the borrower notice sent to the
lender's messaging service (``borrower-notice``), each with a stable ``$id`` under
:data:`SCHEMA_BASE_URI`. Pure: gateway.contracts.export writes them to ``schemas/json/``, and
gateway.contracts.openapi reuses the dialect, the base URI and the per-type models.
"""

from typing import Any, get_args

from pydantic import BaseModel, TypeAdapter

from schemas.account import IntakeAccount
from schemas.base import SCHEMA_VERSION
from schemas.events import EVENT_TYPES, AgencyEvent
from schemas.notices import BorrowerNotice
from schemas.packets import PACKET_TYPES, CasePacket

JsonObject = dict[str, Any]

DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_BASE_URI = f"https://agency-gateway.dev/schemas/v{SCHEMA_VERSION}/"
EVENTS_PATH = "/v1/agencies/{agency_id}/events"


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
    docs["borrower-notice"] = _document(
        "borrower-notice",
        "Borrower notice (what the gateway POSTs to the lender's messaging service)",
        BorrowerNotice.model_json_schema(mode="validation"),
    )
    for type_name in PACKET_TYPES:
        schema = PACKET_MODELS[type_name].model_json_schema(mode="validation")
        docs[type_name] = _document(type_name, f"{type_name} packet", schema)
    for type_name in EVENT_TYPES:
        schema = EVENT_MODELS[type_name].model_json_schema(mode="validation")
        docs[type_name] = _document(type_name, f"{type_name} event", schema)
    return docs


__all__ = [
    "DIALECT",
    "EVENTS_PATH",
    "EVENT_MODELS",
    "PACKET_MODELS",
    "SCHEMA_BASE_URI",
    "JsonObject",
    "json_schemas",
]
