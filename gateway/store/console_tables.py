"""Tables of the ops console (users, sessions, mismatch comments and actions).

SQLModel needs runtime annotations here: no `from __future__ import annotations`.
"""

__all__: list[str] = []
