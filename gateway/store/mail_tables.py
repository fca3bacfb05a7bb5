"""Tables of the law-firm email channel (messages, mailbox state).

SQLModel needs runtime annotations here: no `from __future__ import annotations`.
"""

__all__: list[str] = []
