"""The published contracts: generated files are current, examples validate, docs stay true.

``jsonschema`` and ``openapi_spec_validator`` are not project dependencies. When they are
importable the examples are validated against the JSON Schema documents and the OpenAPI
document is validated; otherwise examples are validated with the pydantic models the schemas
are generated from, and the OpenAPI validation test is skipped.
"""

import copy
import importlib
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from adapters.sftp.batches import read_manifest
from gateway.contracts.export import JSON_DIR, export, render_all
from gateway.contracts.openapi import openapi_document
from gateway.contracts.wire_schemas import (
    EVENT_MODELS,
    EVENTS_PATH,
    PACKET_MODELS,
    SCHEMA_BASE_URI,
    json_schemas,
)
from gateway.errors import InboundError
from gateway.inbound.problems import PROBLEM_BASE, PROBLEM_CONTENT_TYPE
from schemas.base import MAX_MINOR
from schemas.events import AGENCY_EVENT_ADAPTER, EVENT_EXAMPLES, EVENT_TYPES, example_event
from schemas.packets import PACKET_TYPES, CasePacket

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "agency-protocol.md"


def _optional(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


JSONSCHEMA = _optional("jsonschema")
OPENAPI_VALIDATOR = _optional("openapi_spec_validator")


def _event(type_name: str) -> dict[str, Any]:
    return copy.deepcopy(example_event(type_name, "2026-01-16T02:15:00Z"))


def _validate(schema_name: str, instance: dict[str, Any]) -> None:
    """Validate with jsonschema against the checked-in file, else with the pydantic model."""
    if JSONSCHEMA is not None:
        schema = json.loads((ROOT / JSON_DIR / f"{schema_name}.json").read_text(encoding="utf-8"))
        JSONSCHEMA.Draft202012Validator(schema).validate(instance)
    elif schema_name == "agency-event":
        AGENCY_EVENT_ADAPTER.validate_json(json.dumps(instance))
    else:
        EVENT_MODELS[schema_name].model_validate_json(json.dumps(instance))


def _refusals() -> tuple[type[Exception], ...]:
    if JSONSCHEMA is not None:
        return (JSONSCHEMA.ValidationError,)
    return (ValidationError,)


def test_checked_in_files_match_the_code() -> None:
    rendered = render_all()
    stale = [
        path
        for path, text in rendered.items()
        if not (ROOT / path).is_file() or (ROOT / path).read_text(encoding="utf-8") != text
    ]
    assert not stale, f"out of date with the code: {stale}; run `make schemas`"
    on_disk = {p.relative_to(ROOT).as_posix() for p in (ROOT / JSON_DIR).glob("*.json")}
    extra = sorted(on_disk - set(rendered))
    assert not extra, f"no model produces {extra}; run `make schemas` to remove them"


def test_one_document_per_wire_type_with_unique_ids() -> None:
    docs = json_schemas()
    assert set(docs) == {
        "intake-account",
        "case-packet",
        "agency-event",
        "borrower-notice",
        *PACKET_TYPES,
        *EVENT_TYPES,
    }
    ids = [doc["$id"] for doc in docs.values()]
    assert len(set(ids)) == len(ids)
    for name, doc in docs.items():
        assert doc["$id"] == f"{SCHEMA_BASE_URI}{name}.json"
        assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert doc["title"]
    assert sorted(EVENT_MODELS) == sorted(EVENT_TYPES)
    assert sorted(PACKET_MODELS) == sorted(PACKET_TYPES)


@pytest.mark.skipif(JSONSCHEMA is None, reason="jsonschema is not installed")
def test_documents_are_valid_json_schema() -> None:
    assert JSONSCHEMA is not None
    for doc in json_schemas().values():
        JSONSCHEMA.Draft202012Validator.check_schema(doc)


def test_examples_cover_every_event_type_and_are_in_the_documents() -> None:
    assert sorted(EVENT_EXAMPLES) == sorted(EVENT_TYPES)
    operation = openapi_document()["paths"]["/v1/agencies/{agency_id}/events"]["post"]
    documented = operation["requestBody"]["content"]["application/json"]["examples"]
    for type_name in EVENT_TYPES:
        assert documented[type_name]["value"] == example_event(type_name)
        schema = json.loads((ROOT / JSON_DIR / f"{type_name}.json").read_text(encoding="utf-8"))
        assert schema["examples"] == [example_event(type_name)]


@pytest.mark.parametrize("type_name", EVENT_TYPES)
def test_event_example_validates_against_its_schema_and_the_union(type_name: str) -> None:
    _validate(type_name, _event(type_name))
    _validate("agency-event", _event(type_name))


@pytest.mark.parametrize(
    ("type_name", "spoil"),
    [
        ("payment.reported", lambda e: e["data"]["amount"].update(amount_minor=3000.5)),
        ("promise.made", lambda e: e["data"].update(note="typo field")),
        ("case.closed", lambda e: e["data"].update(reason="paid")),
        ("contact.attempted", lambda e: e["data"].pop("effective")),
        ("payment.reported", lambda e: e["data"]["amount"].update(amount_minor=MAX_MINOR + 1)),
        ("case.returned", lambda e: e["data"]["balance"].update(amount_minor=-1)),
    ],
)
def test_schemas_refuse_spoilt_examples(type_name: str, spoil: Any) -> None:
    event = _event(type_name)
    spoil(event)
    with pytest.raises(_refusals()):
        _validate(type_name, event)


@pytest.mark.parametrize(
    ("moment", "reason"),
    [
        ("0001-01-01T00:00:00+01:00", "outside the years 1 to 9999"),
        ("9999-12-31T23:59:59-05:00", "outside the years 1 to 9999"),
        ("2026-01-16T09:00:00", "must carry a UTC offset"),
    ],
)
def test_timestamps_without_a_place_in_utc_are_refused_with_a_reason(
    moment: str, reason: str
) -> None:
    """What JSON Schema's ``date-time`` cannot say, the models do (and never crash on it)."""
    event = _event("contact.attempted")
    event["data"]["attempted_at"] = moment
    with pytest.raises(ValidationError) as refused:
        AGENCY_EVENT_ADAPTER.validate_json(json.dumps(event))
    [error] = refused.value.errors()
    assert error["loc"] == ("contact.attempted", "data", "attempted_at")
    assert reason in error["msg"]


def test_intake_account_schema_describes_the_intake_row() -> None:
    doc = json_schemas()["intake-account"]
    assert doc["additionalProperties"] is False
    assert "phones" in doc["required"]
    assert doc["properties"]["principal_minor"]["type"] == "integer"


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_openapi_references_resolve() -> None:
    doc = openapi_document()
    refs = _refs(doc)
    assert "#/components/schemas/AgencyEvent" in refs
    for ref in refs:
        node: Any = doc
        for part in ref.removeprefix("#/").split("/"):
            assert part in node, f"dangling $ref {ref}"
            node = node[part]
    assert list(doc["webhooks"]) == list(PACKET_TYPES)
    for model in EVENT_MODELS.values():
        assert model.__name__ in doc["components"]["schemas"]


def test_openapi_events_operation_contract() -> None:
    operation = openapi_document()["paths"][EVENTS_PATH]["post"]
    assert set(operation["responses"]) == {
        "200",
        "400",
        "401",
        "403",
        "404",
        "409",
        "413",
        "422",
        "503",
    }
    params = {p["$ref"].rsplit("/", 1)[-1] for p in operation["parameters"]}
    assert params == {"AgencyId", "WebhookId", "WebhookTimestamp", "WebhookSignature"}
    slugs = {cls.slug: cls.status for cls in _inbound_errors()}
    for status, response in operation["responses"].items():
        if status == "200":
            continue
        content = response["content"]["application/problem+json"]
        assert content["schema"] == {"$ref": "#/components/schemas/Problem"}
        for example in content["examples"].values():
            value = example["value"]
            slug = value["type"].removeprefix(PROBLEM_BASE)
            assert slugs[slug] == value["status"] == int(status)
            assert ("errors" in value) == (status == "422")


def _inbound_errors() -> list[type[InboundError]]:
    pending, found = [InboundError], []
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def test_openapi_paths_for_operations() -> None:
    paths = openapi_document()["paths"]
    assert {"/healthz", "/readyz", "/metrics"} <= set(paths)
    assert "text/plain" in paths["/metrics"]["get"]["responses"]["200"]["content"]
    assert re.fullmatch(
        openapi_document()["components"]["parameters"]["AgencyId"]["schema"]["pattern"],
        "ACME_COLLECT",
    )


@pytest.mark.skipif(OPENAPI_VALIDATOR is None, reason="openapi_spec_validator is not installed")
def test_openapi_document_is_valid() -> None:
    assert OPENAPI_VALIDATOR is not None
    OPENAPI_VALIDATOR.validate(openapi_document())


def test_export_writes_every_file_and_drops_stale_ones(tmp_path: Path) -> None:
    stale = tmp_path / JSON_DIR / "retired.type.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}\n", encoding="utf-8")
    written = export(tmp_path)
    rendered = render_all()
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == sorted(rendered)
    for relative, text in rendered.items():
        assert (tmp_path / relative).read_bytes() == text.encode("utf-8")
    assert not stale.exists()


def _doc_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def test_protocol_doc_json_examples_are_valid() -> None:
    packets = TypeAdapter[Any](CasePacket)
    seen: set[str] = set()
    for block in _doc_blocks("json"):
        value = json.loads(block)
        if value.get("type") in EVENT_MODELS:
            AGENCY_EVENT_ADAPTER.validate_json(block)
            seen.add(value["type"])
        elif value.get("type") in PACKET_MODELS:
            packets.validate_json(block)
            seen.add(value["type"])
        elif "batch_id" in value:  # an SFTP manifest (section 7): our reader takes it
            assert read_manifest(block.encode())
        elif "status" in value and value["status"] != "accepted":
            slug = value["type"].removeprefix(PROBLEM_BASE)
            assert {cls.slug: cls.status for cls in _inbound_errors()}[slug] == value["status"]
        else:
            assert value["status"] == "accepted"
            assert set(value) == {"status", "webhook_id", "event_type"}
            assert value["event_type"] in EVENT_MODELS
    assert seen == {*EVENT_TYPES, *PACKET_TYPES}, "every type needs an example in the doc"


def test_protocol_doc_signing_examples_reproduce_the_test_vectors() -> None:
    outputs = []
    for block in _doc_blocks("python"):
        result = subprocess.run(
            [sys.executable, "-c", block], capture_output=True, text=True, check=True, timeout=60
        )
        outputs.append(result.stdout.strip())
    assert outputs == [
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg==",
    ]


def test_openapi_describes_the_statement_document_fetch_the_server_mounts() -> None:
    """``POST /v1/agencies/{agency_id}/settlement-documents`` (gateway.settlement.fetch) is in
    the document, at the route gateway.server mounts, with its request schema and example and
    the problems it answers (never 410: a statement's documents do not expire)."""
    from gateway.server import STATEMENT_DOCUMENTS_ROUTE
    from schemas.documents import StatementDocumentFetchRequest

    document = openapi_document()
    operation = document["paths"][STATEMENT_DOCUMENTS_ROUTE]["post"]
    body = operation["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/StatementDocumentFetchRequest"}
    StatementDocumentFetchRequest.model_validate(body["example"], strict=True)
    assert "StatementDocumentFetchRequest" in document["components"]["schemas"]
    assert set(operation["responses"]) == {"200", "400", "401", "404", "413", "422", "503"}
    examples = operation["responses"]["404"]["content"][PROBLEM_CONTENT_TYPE]["examples"]
    assert "document-not-found" in examples
    assert all(e["value"]["instance"].endswith("/settlement-documents") for e in examples.values())
