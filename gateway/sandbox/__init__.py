"""Simulated agencies on loopback, speaking the real protocols (demo, tests, onboarding)."""

from gateway.sandbox.agency_script import (
    PLACEMENT_FAULTS,
    CaseFile,
    EventPlanner,
    FaultKind,
    PlannedEvent,
    Step,
    plan_placement,
)
from gateway.sandbox.event_pusher import AgencyStats, EventPusher, InjectedFault
from gateway.sandbox.webhook_agency import SandboxWebhookAgency

__all__ = [
    "PLACEMENT_FAULTS",
    "AgencyStats",
    "CaseFile",
    "EventPlanner",
    "EventPusher",
    "FaultKind",
    "InjectedFault",
    "PlannedEvent",
    "SandboxWebhookAgency",
    "Step",
    "plan_placement",
]
