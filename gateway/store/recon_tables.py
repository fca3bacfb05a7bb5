"""Tables of the reconciliation engine (lender payment feed, statements, runs).

SQLModel needs runtime annotations here: no `from __future__ import annotations`.
"""

__all__: list[str] = []
