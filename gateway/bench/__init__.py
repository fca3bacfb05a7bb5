"""Benchmarks that report the gateway's rate as a ratio to a bare baseline measured in the
same run (``agency-gateway bench ...``); see DESIGN.md "Performance targets"."""

__all__: list[str] = []
