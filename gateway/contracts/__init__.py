"""The published contracts, generated from the code: the JSON Schema documents of the wire
models (``wire_schemas``) and the OpenAPI document of the inbound and console APIs
(``openapi``), written to ``schemas/`` by ``agency-gateway schemas export`` (``export``)."""

from typing import TYPE_CHECKING

from gateway.exports import lazy_exports

if TYPE_CHECKING:
    from gateway.contracts.export import export, render_all

__all__ = ["export", "render_all"]

__getattr__ = lazy_exports(
    __name__,
    {
        "export": "gateway.contracts.export",
        "render_all": "gateway.contracts.export",
    },
)
