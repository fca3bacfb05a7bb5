"""The ops console: server-rendered pages and a JSON API for working the mismatch queue and
the cases.

``routes`` mounts it on the gateway's HTTP server (``gateway.server``); ``login``,
``sessions``, ``accounts`` and ``guards`` authenticate and authorise every route (roles, CSRF,
rate-limited login); ``pages``, ``case_pages`` and ``api`` are the thin handlers; ``read_model``
and ``timeline`` (and gateway.cases.views) are what they read; ``case_actions`` acts on cases;
``search`` finds anything by its id; ``navigation``, ``saved_views`` and ``comparison`` help
work the queue (the list kept across actions, saved filters, the differing fields);
``inbound_health`` is what an agency sent us; ``personal_data`` masks and audits revealing;
``case_evidence`` serves bundles; ``rendering`` is the Jinja2 environment; ``i18n`` (the
catalogues under ``locale/``), ``languages`` (each request's language and the switch),
``formats`` (amounts and times per locale and zone), ``vocabulary`` (codes by their names) and
``catalogues`` (the untranslated-string checks) make it speak Chinese and English; ``api_docs``,
``api_schemas``, ``case_schemas`` and ``schema_parts`` describe the API.
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
