"""The OpenAPI description of the document fetch endpoints, pure: a placement's documents
(gateway.documents.fetch) and a settlement statement's (gateway.settlement.fetch).

gateway.contracts.openapi mounts ``DOCUMENTS_PATH`` and ``STATEMENT_DOCUMENTS_PATH`` and adds
``schemas()`` to its components.
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
from gateway.settlement.packets import DOCUMENTS_ROUTE
from schemas.documents import DocumentFetchRequest, StatementDocumentFetchRequest

DOCUMENTS_PATH = "/v1/agencies/{agency_id}/documents"
STATEMENT_DOCUMENTS_PATH = DOCUMENTS_ROUTE
"""``/v1/agencies/{agency_id}/settlement-documents``: the route gateway.server mounts."""
_INSTANCE = "/v1/agencies/ACME_COLLECT/documents"
_STATEMENT_INSTANCE = STATEMENT_DOCUMENTS_PATH.format(agency_id="ACME_COLLECT")
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

_STATEMENT_EXAMPLES: tuple[tuple[type[InboundError], str], ...] = (
    (MalformedPayload, "body is not valid JSON: Invalid JSON: EOF while parsing a value"),
    (
        SchemaViolation,
        "kind: Input should be 'xlsx' or 'pdf'; send {\"statement_id\": ..., "
        '"kind": "xlsx" or "pdf"}',
    ),
    (SignatureInvalid, "No webhook-signature matched a key this agency is trusted with."),
    (UnknownAgency, "no agency 'ACME_COLECT' fetches documents from this gateway"),
    (
        DocumentNotFound,
        "no pdf document of a settlement statement 12 of ACME_COLLECT",
    ),
    (PayloadTooLarge, f"a document request is at most {MAX_REQUEST_BYTES} bytes"),
    (DocumentUnavailable, (DocumentUnavailable.__doc__ or "").strip()),
)


def _problems(
    status: int,
    examples: tuple[tuple[type[InboundError], str], ...] = _EXAMPLES,
    instance: str = _INSTANCE,
) -> JsonObject:
    errors = [(e, detail) for e, detail in examples if e.status == status]
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
                            "instance": instance,
                        },
                    }
                    for e, detail in errors
                },
            }
        },
    }


_SIGNED_PARAMETERS = [
    {"$ref": "#/components/parameters/AgencyId"},
    {"$ref": "#/components/parameters/WebhookId"},
    {"$ref": "#/components/parameters/WebhookTimestamp"},
    {"$ref": "#/components/parameters/WebhookSignature"},
]
_BYTES = {"type": "string", "contentMediaType": "*/*"}


def _fetch_operation(
    *,
    operation_id: str,
    summary: str,
    description: str,
    request: tuple[str, JsonObject],
    media_types: tuple[str, ...],
    problems: JsonObject,
) -> JsonObject:
    """A signed document fetch: the agency's signed JSON request, the stored bytes back with
    their digest, or a problem."""
    schema, example = request
    return {
        "operationId": operation_id,
        "tags": ["documents"],
        "summary": summary,
        "description": description,
        "parameters": _SIGNED_PARAMETERS,
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": f"#/components/schemas/{schema}"},
                    "example": example,
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
                "content": {media: {"schema": _BYTES} for media in media_types},
            },
            **problems,
        },
    }


def documents_operation() -> JsonObject:
    """The ``post`` operation of ``DOCUMENTS_PATH``."""
    return _fetch_operation(
        operation_id="fetchDocument",
        summary="Fetch one document of a placement you hold",
        description="Signed exactly like your events (Standard Webhooks v1.0, your inbound "
        "keys; use a fresh webhook-id per request). Only documents listed in the "
        "placement's `documents`, only for your own placements, and only while the "
        "placement is open: after a recall or the end of the placement the answer is 410. "
        "A placement you do not hold is answered 404 like one that does not exist. Check "
        "the bytes against the descriptor's size and sha256 (also sent as Repr-Digest). "
        "Every request, served or refused, is recorded with its X-Request-Id.",
        request=(
            "DocumentFetchRequest",
            {"placement_id": "PL-AC1000000001-1", "document_id": 42},
        ),
        media_types=("application/octet-stream",),
        problems={
            str(status): _problems(status) for status in sorted({e.status for e, _ in _EXAMPLES})
        },
    )


def statement_documents_operation() -> JsonObject:
    """The ``post`` operation of ``STATEMENT_DOCUMENTS_PATH``."""
    return _fetch_operation(
        operation_id="fetchStatementDocument",
        summary="Fetch the XLSX or the signed PDF of one of your settlement statements",
        description="Signed exactly like your events (Standard Webhooks v1.0, your inbound "
        "keys; use a fresh webhook-id per request). The `settlement.statement` packet lists "
        "each document with its `kind`, `name`, `sha256` and this path in `fetch`. Only your "
        "own statements: another agency's statement, an unknown one or a kind it does not "
        "have is answered 404 alike. The bytes are the stored ones, checked against their "
        "SHA-256 before they leave (also sent as Repr-Digest); check them against the "
        "packet's `sha256`. Every request, served or refused, is recorded with its "
        "X-Request-Id.",
        request=("StatementDocumentFetchRequest", {"statement_id": 12, "kind": "pdf"}),
        media_types=(
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "application/pdf",
        ),
        problems={
            str(status): _problems(status, _STATEMENT_EXAMPLES, _STATEMENT_INSTANCE)
            for status in sorted({e.status for e, _ in _STATEMENT_EXAMPLES})
        },
    )


def schemas() -> JsonObject:
    """Component schemas the operations refer to."""
    return {
        "DocumentFetchRequest": TypeAdapter(DocumentFetchRequest).json_schema(),
        "StatementDocumentFetchRequest": TypeAdapter(StatementDocumentFetchRequest).json_schema(),
    }


HEADERS: JsonObject = {
    "XRequestId": {
        "description": "The id this request is recorded under; quote it to the lender",
        "schema": {"type": "string"},
    }
}

__all__ = [
    "DOCUMENTS_PATH",
    "HEADERS",
    "STATEMENT_DOCUMENTS_PATH",
    "documents_operation",
    "schemas",
    "statement_documents_operation",
]
