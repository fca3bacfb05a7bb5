"""Evidence: a tamper-evident record of everything sent and received.

``log`` is an append-only RFC 9162 Merkle log in the same database as the rows it attests,
appended in the same transaction, with signed checkpoints (``signed_note``, C2SP notes) and
inclusion and consistency proofs (``merkle``, pure); ``leaf_template`` builds many leaves of
one shape quickly; ``verification`` recomputes the whole log and re-checks leaves against
their rows (``checks``); ``bundle`` exports one
case's evidence with its proofs for offline verification.
"""

from typing import TYPE_CHECKING

from gateway.exports import lazy_exports

if TYPE_CHECKING:
    from gateway.evidence.bundle import BundleReport, export_case, verify_bundle
    from gateway.evidence.log import EvidenceLog, LeafInput, append_leaves

__all__ = [
    "BundleReport",
    "EvidenceLog",
    "LeafInput",
    "append_leaves",
    "export_case",
    "verify_bundle",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "BundleReport": "gateway.evidence.bundle",
        "EvidenceLog": "gateway.evidence.log",
        "LeafInput": "gateway.evidence.log",
        "append_leaves": "gateway.evidence.log",
        "export_case": "gateway.evidence.bundle",
        "verify_bundle": "gateway.evidence.bundle",
    },
)
