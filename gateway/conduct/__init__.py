"""Collector conduct: violations raised as contact events arrive, and the monthly QA sample of call recordings per agency."""

__all__: list[str] = []
