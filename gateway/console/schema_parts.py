"""The small JSON Schema building blocks the console's API description is written with
(gateway.console.api_schemas, gateway.console.case_schemas, gateway.console.api_docs)."""

from typing import Any

JsonObject = dict[str, Any]
_REF = "#/components/schemas/{}"


def ref(name: str) -> JsonObject:
    """A reference to the component schema NAME."""
    return {"$ref": _REF.format(name)}


def nullable(name: str) -> JsonObject:
    """The component schema NAME, or null."""
    return {"anyOf": [ref(name), {"type": "null"}]}


def array(name: str) -> JsonObject:
    """An array of the component schema NAME."""
    return {"type": "array", "items": ref(name)}


def obj(required: list[str], properties: JsonObject, description: str = "") -> JsonObject:
    """An object schema with these REQUIRED members and PROPERTIES."""
    schema: JsonObject = {"type": "object", "required": required, "properties": properties}
    if description:
        schema["description"] = description
    return schema


STR, INT, BOOL = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
TIME = {"type": "string", "format": "date-time"}
DAY = {"type": "string", "format": "date"}
NULL_TIME = {"type": ["string", "null"], "format": "date-time"}
NULL_DAY = {"type": ["string", "null"], "format": "date"}
NULL_INT = {"type": ["integer", "null"]}
NULL_STR = {"type": ["string", "null"]}
OPEN_OBJ = {"type": "object", "additionalProperties": True}
STR_LIST = {"type": "array", "items": STR}

__all__ = [
    "BOOL",
    "DAY",
    "INT",
    "NULL_DAY",
    "NULL_INT",
    "NULL_STR",
    "NULL_TIME",
    "OPEN_OBJ",
    "STR",
    "STR_LIST",
    "TIME",
    "JsonObject",
    "array",
    "nullable",
    "obj",
    "ref",
]
