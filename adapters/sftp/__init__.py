"""The SFTP channel: placement files dropped on the agency's server, result files picked up.

Outbound, due packets of one agency become one file batch per packet type (``drop``): named
and numbered with a manifest (``batches``), rendered in the agency's layout (``layouts``) into
a local spool (``spool``) with the documents its packets list (``documents``), optionally
OpenPGP-encrypted (``pgp``) and uploaded without ever
overwriting a file (``upload``), each batch on record (``batch_store``). Inbound, result and
statement files are seen, claimed and read (``pickup``, ``pickup_store``), parsed row by row
(``parsing``) into agency events (``result_rows``) and handed to reconciliation. Sessions pin
the agency's host key (``session``); ``checks`` validates the channel's keys at start-up.
"""

from typing import TYPE_CHECKING

from gateway.exports import lazy_exports

if TYPE_CHECKING:
    from adapters.sftp.adapter import SftpAdapter, build_sftp_adapter
    from adapters.sftp.checks import check_sftp_agency
    from adapters.sftp.pickup import ResultPickup

__all__ = ["ResultPickup", "SftpAdapter", "build_sftp_adapter", "check_sftp_agency"]

__getattr__ = lazy_exports(
    __name__,
    {
        "ResultPickup": "adapters.sftp.pickup",
        "SftpAdapter": "adapters.sftp.adapter",
        "build_sftp_adapter": "adapters.sftp.adapter",
        "check_sftp_agency": "adapters.sftp.checks",
    },
)
