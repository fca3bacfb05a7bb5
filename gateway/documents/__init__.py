"""The document pack of each placement (授权委托书 and the case's documents).

Owns the lender's document store (``store``: each case's files, read safely), hashing them
at intake into ``case_documents`` and the evidence log (``hashing``), the kinds of documents
(``kinds``) and the statements generated for each placement (``statements``: repayment
history and balance breakdown; both pure), preparing the packs when placements are created
or renewed (``prepare``, called by gateway.allocation and gateway.cases), listing a
placement's pack and reading its bytes checked against their SHA-256 (``pack``, which every
channel uses), and the agency-scoped fetch of a document by a webhook agency (``fetch``,
served by gateway.server).
"""

from gateway.documents.pack import PackDocument, document_bytes, document_stream, pack_of
from gateway.documents.prepare import PackPreparer, PackRequest, PreparedPack
from gateway.documents.store import DocumentStore, FolderStore, StoreFile

__all__ = [
    "DocumentStore",
    "FolderStore",
    "PackDocument",
    "PackPreparer",
    "PackRequest",
    "PreparedPack",
    "StoreFile",
    "document_bytes",
    "document_stream",
    "pack_of",
]
