"""Tables of the SFTP channel (file batches, sequences, result-file pickups).

SQLModel needs runtime annotations here: no `from __future__ import annotations`.
"""

__all__: list[str] = []
