"""The ops console: server-rendered pages and a JSON API for working the mismatch queue.

``routes`` mounts it on the gateway's HTTP server (``gateway.server``); ``login``,
``sessions``, ``accounts`` and ``guards`` authenticate and authorise every route (roles, CSRF,
rate-limited login); ``pages`` and ``api`` are the thin handlers; ``read_model`` and ``timeline``
are what they read; ``personal_data`` masks and audits revealing; ``case_evidence`` serves bundles;
``rendering`` is the Jinja2 environment; ``api_docs`` and ``api_schemas`` describe the API.
"""

from typing import TYPE_CHECKING

from gateway.exports import lazy_exports

if TYPE_CHECKING:
    from gateway.console.routes import CONSOLE_KEY, add_console
    from gateway.console.services import ConsoleServices

__all__ = ["CONSOLE_KEY", "ConsoleServices", "add_console"]

__getattr__ = lazy_exports(
    __name__,
    {
        "CONSOLE_KEY": "gateway.console.routes",
        "ConsoleServices": "gateway.console.services",
        "add_console": "gateway.console.routes",
    },
)
