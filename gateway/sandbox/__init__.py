"""Simulated agencies on loopback, speaking the real protocols (demo, tests, onboarding)."""

__all__: list[str] = []
