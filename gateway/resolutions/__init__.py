"""Resolutions: what ops do about a mismatch, each action in one transaction with evidence.

``rules`` says, as data and pure functions, which actions a mismatch allows, who may take them
and how accepting the agency's figure changes our record; ``facts`` reads what the rules need;
``actions`` applies an action (or a bulk action over a filter) and its effects (recall,
resend, amend, write-off, vouching for an unsigned reply through ``gateway.ports``).
"""

from typing import TYPE_CHECKING

from gateway.exports import lazy_exports

if TYPE_CHECKING:
    from gateway.resolutions.actions import ActionResult, BulkResult, ResolutionService
    from gateway.resolutions.rules import ActionRequest, MismatchFilter

__all__ = ["ActionRequest", "ActionResult", "BulkResult", "MismatchFilter", "ResolutionService"]

__getattr__ = lazy_exports(
    __name__,
    {
        "ActionRequest": "gateway.resolutions.rules",
        "ActionResult": "gateway.resolutions.actions",
        "BulkResult": "gateway.resolutions.actions",
        "MismatchFilter": "gateway.resolutions.rules",
        "ResolutionService": "gateway.resolutions.actions",
    },
)
