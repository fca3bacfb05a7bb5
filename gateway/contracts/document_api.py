"""The OpenAPI description of the document fetch endpoint (gateway.documents.fetch), pure.

gateway.contracts.openapi mounts ``DOCUMENTS_PATH`` and adds ``schemas()`` to its components.
"""

from pydantic import TypeAdapter

from gateway.contracts.wire_schemas import JsonObject
from gateway.documents.fetch import MAX_REQUEST_BYTES
from gateway.errors import (
    DocumentGone,
    DocumentNotFound,
    DocumentUnavailable,
    InboundError,
    MalformedPayload,
    PayloadTooLarge,
    SchemaViolation,
    SignatureInvalid,
    UnknownAgency,
)
from gateway.inbound.problems import PROBLEM_BASE, PROBLEM_CONTENT_TYPE
from schemas.documents import DocumentFetchRequest

DOCUMENTS_PATH = "/v1/agencies/{agency_id}/documents"
_INSTANCE = "/v1/agencies/ACME_COLLECT/documents"
_DIGEST = "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"

_EXAMPLES: tuple[tuple[type[InboundError], str], ...] = (
    (MalformedPayload, "body is not valid JSON: Invalid JSON: EOF while parsing a value"),
    (SchemaViolation, "document_id: Field required; send {...}"),
    (SignatureInvalid, "No webhook-signature matched a key this agency is trusted with."),
    (UnknownAgency, "no agency 'ACME_COLECT' fetches documents from this gateway"),
    (
        DocumentNotFound,
        "no document 42 in a placement PL-AC1000000001-1 held by ACME_COLLECT",
    ),
    (
        DocumentGone,
        "placement PL-AC1000000001-1 was recalled: its documents can no longer be fetched; "
        "delete your copies as the data.deletion_requested packet asks",
    ),
    (PayloadTooLarge, f"a document request is at most {MAX_REQUEST_BYTES} bytes"),
    (DocumentUnavailable, (DocumentUnavailable.__doc__ or "").strip()),
)


def _problems(status: int) -> JsonObject:
    errors = [(e, detail) for e, detail in _EXAMPLES if e.status == status]
    return {
        "description": " ".join((e.__doc__ or "").strip() for e, _ in errors),
        "headers": {"X-Request-Id": {"$ref": "#/components/headers/XRequestId"}},
        "content": {
            PROBLEM_CONTENT_TYPE: {
                "schema": {"$ref": "#/components/schemas/Problem"},
                "examples": {
                    e.slug: {
                        "summary": (e.__doc__ or "").strip(),
                        "value": {
                            "type": PROBLEM_BASE + e.slug,
                            "title": e.title,
                            "status": e.status,
                            "detail": detail,
                            "instance": _INSTANCE,
                        },
                    }
                    for e, detail in errors
                },
            }
        },
    }


def documents_operation() -> JsonObject:
    """The ``post`` operation of ``DOCUMENTS_PATH``."""
    return {
        "operationId": "fetchDocument",
        "tags": ["documents"],
        "summary": "Fetch one document of a placement you hold",
        "description": "Signed exactly like your events (Standard Webhooks v1.0, your inbound "
        "keys; use a fresh webhook-id per request). Only documents listed in the "
        "placement's `documents`, only for your own placements, and only while the "
        "placement is open: after a recall or the end of the placement the answer is 410. "
        "A placement you do not hold is answered 404 like one that does not exist. Check "
        "the bytes against the descriptor's size and sha256 (also sent as Repr-Digest). "
        "Every request, served or refused, is recorded with its X-Request-Id.",
        "parameters": [
            {"$ref": "#/components/parameters/AgencyId"},
            {"$ref": "#/components/parameters/WebhookId"},
            {"$ref": "#/components/parameters/WebhookTimestamp"},
            {"$ref": "#/components/parameters/WebhookSignature"},
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/DocumentFetchRequest"},
                    "example": {"placement_id": "PL-AC1000000001-1", "document_id": 42},
                }
            },
        },
        "responses": {
            "200": {
                "description": "The document's bytes, exactly as listed in the packet.",
                "headers": {
                    "Repr-Digest": {
                        "description": "RFC 9530: the SHA-256 of the bytes, base64",
                        "schema": {"type": "string", "example": _DIGEST},
                    },
                    "Content-Disposition": {
                        "description": "attachment, with the document's name (RFC 6266)",
                        "schema": {"type": "string"},
                    },
                    "X-Request-Id": {"$ref": "#/components/headers/XRequestId"},
                },
                "content": {
                    "application/octet-stream": {
                        "schema": {"type": "string", "contentMediaType": "*/*"}
                    }
                },
            },
            **{
                str(status): _problems(status)
                for status in sorted({e.status for e, _ in _EXAMPLES})
            },
        },
    }


def schemas() -> JsonObject:
    """Component schemas the operation refers to."""
    return {"DocumentFetchRequest": TypeAdapter(DocumentFetchRequest).json_schema()}


HEADERS: JsonObject = {
    "XRequestId": {
        "description": "The id this request is recorded under; quote it to the lender",
        "schema": {"type": "string"},
    }
}

__all__ = ["DOCUMENTS_PATH", "HEADERS", "documents_operation", "schemas"]
