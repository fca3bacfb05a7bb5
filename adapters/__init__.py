"""Channel adapters, one module per agency protocol."""

__all__: list[str] = []
