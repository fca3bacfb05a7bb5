"""Published contracts generated from the wire models: JSON Schema documents and OpenAPI.

Agencies code against ``schemas/json/*.json`` (JSON Schema draft 2020-12, one document per
packet and event type plus the unions and the intake row) and ``schemas/openapi.json``
(OpenAPI 3.1: the inbound API we serve, and the packets we send as ``webhooks``). Both are
rendered from ``schemas/`` by pure functions (gateway.contracts.wire_schemas,
gateway.contracts.openapi); this module turns them into exact file text, and only :func:`export`
writes files. A unit test compares the checked-in files with :func:`render_all`, so a model change
without ``make schemas`` fails the build.
"""

import json
from pathlib import Path

from gateway.contracts.openapi import openapi_document
from gateway.contracts.wire_schemas import JsonObject, json_schemas

JSON_DIR = Path("schemas/json")
OPENAPI_PATH = Path("schemas/openapi.json")


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


__all__ = ["JSON_DIR", "OPENAPI_PATH", "export", "render_all"]
