"""The record of what was sent and received: tables, engines, migrations."""

__all__: list[str] = []
