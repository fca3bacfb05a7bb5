"""Simulated agencies on loopback, speaking the real protocols (demo, tests, onboarding)."""

from gateway.sandbox.webhook_agency import (
    PLACEMENT_FAULTS,
    EventPlanner,
    FaultKind,
    InjectedFault,
    PlannedEvent,
    SandboxWebhookAgency,
    plan_placement,
)

__all__ = [
    "PLACEMENT_FAULTS",
    "EventPlanner",
    "FaultKind",
    "InjectedFault",
    "PlannedEvent",
    "SandboxWebhookAgency",
    "plan_placement",
]
