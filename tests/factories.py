"""Factories for valid test models; every factory takes ``**overrides``.

Nested config sections merge: ``agency_config(capacity={"weight": 3.0})`` keeps the other
capacity keys. Event factories take ``data`` overrides as keywords.
"""

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

from gateway.allocation.rules import CaseToAllocate
from gateway.config.agencies import AgencyConfig, WebhookAgency, parse_agency
from gateway.dispatch.packets import RenderedPacket, render_created
from gateway.ports import OutboundPacket
from gateway.reconciliation.kinds import PlacementView
from schemas.base import Money
from schemas.events import AGENCY_EVENT_ADAPTER, AgencyEvent

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
"""A fixed instant for tests that do not care about the wall clock."""

PII: dict[str, object] = {
    "name": "张三",
    "national_id": "110101199003074514",
    "phones": ["13800138000", "+86 139 0013 9000"],
    "address": "上海市浦东新区世纪大道100号",
}
"""A debtor's personal data, as the intake stores it (fictional)."""


def merged(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``overrides`` into ``base``: dicts merge, anything else replaces."""
    result = dict(base)
    for key, value in overrides.items():
        current = result.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            result[key] = merged(current, value)
        else:
            result[key] = value
    return result


def agency_raw(**overrides: Any) -> dict[str, Any]:
    """The raw (TOML-shaped) mapping of a valid webhook agency."""
    agency_id = str(overrides.get("id", "AGY_TEST"))
    base: dict[str, Any] = {
        "id": agency_id,
        "name": f"{agency_id} 测试催收",
        "channel": "webhook",
        "endpoint": {"url": "https://agency.example/hooks"},
        "signing": {"scheme": "v1", "keys": [{"env": f"{agency_id}_OUTBOUND"}]},
        "inbound": {"scheme": "v1", "keys": [{"env": f"{agency_id}_INBOUND"}]},
        "fields": ["debtor.name", "debtor.region"],
        "eligibility": {
            "buckets": ["M1", "M2", "M3", "M4-6", "M6+", "LEGAL"],
            "currencies": ["CNY"],
        },
        "capacity": {"max_open_placements": 1000, "weight": 1.0},
    }
    return merged(base, overrides)


def agency_config(**overrides: Any) -> AgencyConfig:
    """A valid AgencyConfig; nested sections merge with the defaults."""
    return parse_agency(agency_raw(**overrides))


def webhook_agency(**overrides: Any) -> WebhookAgency:
    """A valid webhook agency, typed as such (for the webhook adapter)."""
    return WebhookAgency.model_validate(agency_raw(**overrides))


def case_to_allocate(**overrides: Any) -> CaseToAllocate:
    values: dict[str, Any] = {
        "case_id": "AC0000000001",
        "debtor_id": "CU0000000001",
        "bucket": "M2",
        "balance_minor": 250_000,
        "currency": "CNY",
        "region": "CN-31",
        "dpd": 45,
        "excluded_agencies": frozenset(),
    }
    values.update(overrides)
    return CaseToAllocate(**values)


def placement_view(**overrides: Any) -> PlacementView:
    """An acknowledged CNY 1,000.00 placement held by AGY_TEST with nothing collected."""
    view = PlacementView(
        id="PL-AC0000000001-1",
        case_id="AC0000000001",
        agency_id="AGY_TEST",
        state="acknowledged",
        currency="CNY",
        balance_minor=100_000,
        collected_minor=0,
        acked_balance_minor=100_000,
        agency_case_ref="EXT-1",
    )
    return replace(view, **overrides)


def money(amount_minor: int, currency: str = "CNY") -> Money:
    return Money(amount_minor=amount_minor, currency=currency)


def _event_data(event_type: str, placement_id: str) -> dict[str, Any]:
    cny = {"amount_minor": 10_000, "currency": "CNY"}
    defaults: dict[str, dict[str, Any]] = {
        "placement.acknowledged": {
            "agency_case_ref": "EXT-1",
            "balance": {"amount_minor": 100_000, "currency": "CNY"},
        },
        "placement.rejected": {"reason": "outside our licence area"},
        "contact.attempted": {
            "channel": "call",
            "outcome": "reached",
            "attempted_at": NOW.isoformat(),
            "effective": True,
        },
        "promise.made": {"promise_id": "PR-1", "amount": cny, "promised_date": "2026-03-10"},
        "payment.reported": {"payment_id": "PAY-1", "amount": cny, "paid_at": NOW.isoformat()},
        "payment.reversed": {"payment_id": "PAY-1", "amount": cny, "reason": "bounced"},
        "dispute.opened": {"reason": "debtor says the loan was repaid"},
        "legal.action": {"action": "lawyer_letter", "occurred_at": NOW.isoformat()},
        "case.returned": {
            "reason": "uncollectable",
            "balance": {"amount_minor": 90_000, "currency": "CNY"},
        },
        "case.closed": {"reason": "paid_in_full"},
        "complaint.received": {"channel": "12378", "summary": "called at night"},
        "data.deleted": {"method": "deleted", "reference": "DEL-0001"},
    }
    if event_type == "statement.submitted":
        return {
            "statement_id": "ST-1",
            "period_start": "2026-02-01",
            "period_end": "2026-02-28",
            "items": [
                {
                    "placement_id": placement_id,
                    "balance": {"amount_minor": 100_000, "currency": "CNY"},
                    "status": "active",
                }
            ],
        }
    return {"placement_id": placement_id, **defaults[event_type]}


def _plain(value: Any) -> Any:
    return value.model_dump(mode="json") if isinstance(value, Money) else value


def event(
    event_type: str,
    *,
    placement_id: str = "PL-AC0000000001-1",
    timestamp: datetime = NOW,
    **data: Any,
) -> AgencyEvent:
    """A valid agency event of ``event_type``; keywords override fields of its ``data``.

    Money fields accept a ``Money`` or an int (CNY minor units).
    """
    values = _event_data(event_type, placement_id)
    for key, value in data.items():
        if isinstance(value, int) and not isinstance(value, bool) and key in ("amount", "balance"):
            value = {"amount_minor": value, "currency": "CNY"}
        values[key] = _plain(value)
    return AGENCY_EVENT_ADAPTER.validate_python(
        {"type": event_type, "timestamp": timestamp.isoformat(), "data": values}
    )


def created_packet(**overrides: Any) -> RenderedPacket:
    """A rendered ``placement.created`` packet; keywords override ``render_created`` args."""
    values: dict[str, Any] = {
        "agency_id": "AGY_TEST",
        "placement_id": "PL-AC0000000001-1",
        "case_id": "AC0000000001",
        "bucket": "M2",
        "dpd": 45,
        "balance_minor": 250_000,
        "principal_minor": 200_000,
        "currency": "CNY",
        "due_date": date(2026, 1, 16),
        "product": "consumer-loan",
        "credit_grade": "C",
        "debtor_id": "CU0000000001",
        "region": "CN-31",
        "pii": PII,
        "allowed_fields": frozenset({"debtor.name", "debtor.region"}),
        "placed_at": NOW,
        "return_by": date(2026, 8, 29),
    }
    values.update(overrides)
    return render_created(**values)


def outbound_packet(**overrides: Any) -> OutboundPacket:
    """One send attempt of a rendered packet (the dispatcher's view)."""
    rendered = created_packet()
    values: dict[str, Any] = {
        "outbox_id": 1,
        "dedupe_key": rendered.dedupe_key,
        "agency_id": "AGY_TEST",
        "packet_type": rendered.packet_type,
        "payload": rendered.payload,
        "attempt_no": 1,
    }
    values.update(overrides)
    return OutboundPacket(**values)


__all__ = [
    "NOW",
    "PII",
    "agency_config",
    "agency_raw",
    "case_to_allocate",
    "created_packet",
    "event",
    "merged",
    "money",
    "outbound_packet",
    "placement_view",
    "webhook_agency",
]
