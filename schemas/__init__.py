"""Wire contracts of agency-gateway: the models agencies and the lender code against.

Pure pydantic v2 models; this package imports nothing from ``gateway`` or ``adapters``.
"""

from schemas.account import IntakeAccount
from schemas.base import SCHEMA_VERSION, Money, StrictModel
from schemas.events import AGENCY_EVENT_ADAPTER, EVENT_TYPES, AgencyEvent
from schemas.packets import PACKET_TYPES, CasePacket

__all__ = [
    "AGENCY_EVENT_ADAPTER",
    "EVENT_TYPES",
    "PACKET_TYPES",
    "SCHEMA_VERSION",
    "AgencyEvent",
    "CasePacket",
    "IntakeAccount",
    "Money",
    "StrictModel",
]
