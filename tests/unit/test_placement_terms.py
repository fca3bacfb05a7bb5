"""The end of a placement's term without a database: the date rules, the warning and renewal
packets, the letters a law firm gets for them, and their rows in a fixed-width file."""

import csv
import io
import json
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, strategies as st

from adapters.email.adapter import template_environment
from adapters.email.checks import email_problems
from adapters.email.render import mail_case, render_content
from adapters.sftp.layouts import RecordWriter
from gateway.cases.terms import (
    MAX_RENEWAL_DAYS,
    expiry_cutoff,
    has_expired,
    needs_escalation,
    next_escalation_state,
    recall_on,
    renewed_return_by,
    warning_due,
)
from gateway.config.email import EmailSection
from gateway.config.layouts import LayoutSection
from gateway.dispatch.packets import render_amended, render_expiring
from gateway.errors import GatewayError
from gateway.keys import self_signed
from schemas.packets import PlacementAmended, PlacementExpiring

TEMPLATES = Path(__file__).resolve().parents[2] / "config" / "templates" / "email"
AT = datetime(2026, 8, 15, 9, 30, tzinfo=UTC)
END = date(2026, 8, 29)


def expiring(return_by: date = END, **overrides: Any) -> bytes:
    values: dict[str, Any] = {
        "agency_id": "ZHENGYI",
        "placement_id": "PL-AC0000000001-1",
        "case_id": "AC0000000001",
        "version": 1,
        "return_by": return_by,
        "recall_on": return_by + timedelta(days=1),
        "at": AT,
    }
    values.update(overrides)
    return render_expiring(**values).payload


def amended(return_by: date | None) -> bytes:
    return render_amended(
        agency_id="ZHENGYI",
        placement_id="PL-AC0000000001-1",
        case_id="AC0000000001",
        version=2,
        balance_minor=12_345_678,
        previous_balance_minor=12_345_678 if return_by else 12_000_000,
        currency="CNY",
        reason=f"renewed until {return_by}" if return_by else "balance changed at the lender",
        at=AT,
        return_by=return_by,
    ).payload


# -- dates ------------------------------------------------------------------------------


def test_a_placement_expires_the_day_after_its_grace() -> None:
    assert not has_expired(END, END + timedelta(days=2), grace_days=2)
    assert has_expired(END, END + timedelta(days=3), grace_days=2)
    assert recall_on(END, 2) == END + timedelta(days=3)
    assert not has_expired(END, END, grace_days=0) and has_expired(END, END + timedelta(1), 0)


@given(
    return_by=st.dates(date(2025, 1, 1), date(2030, 1, 1)),
    grace=st.integers(0, 30),
    warning=st.integers(0, 90),
)
def test_the_recall_day_is_the_first_day_expired_and_warnings_end_before_it(
    return_by: date, grace: int, warning: int
) -> None:
    day = recall_on(return_by, grace)
    assert has_expired(return_by, day, grace)
    assert not has_expired(return_by, day - timedelta(days=1), grace)
    assert expiry_cutoff(day, grace) == return_by + timedelta(days=1)
    assert warning_due(
        return_by, return_by - timedelta(days=warning), warning_days=warning, grace_days=grace
    )
    assert not warning_due(
        return_by, return_by - timedelta(days=warning + 1), warning_days=warning, grace_days=grace
    )
    assert warning_due(return_by, day - timedelta(days=1), warning_days=warning, grace_days=grace)
    assert not warning_due(return_by, day, warning_days=warning, grace_days=grace)


def test_a_renewal_must_reach_past_today_and_stay_within_bounds() -> None:
    today = END + timedelta(days=12)
    assert renewed_return_by(END, 30, today=today, grace_days=2) == END + timedelta(days=30)
    assert renewed_return_by(END, 10, today=today, grace_days=2) == END + timedelta(days=10)
    with pytest.raises(GatewayError, match="renew by at least 10 days"):
        renewed_return_by(END, 9, today=today, grace_days=2)
    for days in (0, -5, MAX_RENEWAL_DAYS + 1):
        with pytest.raises(GatewayError, match=f"renew by 1 to {MAX_RENEWAL_DAYS} days"):
            renewed_return_by(END, days, today=END, grace_days=0)


def test_only_a_legal_case_outside_the_legal_tier_needs_escalation() -> None:
    assert needs_escalation("LEGAL", "primary", "legal")
    assert not needs_escalation("LEGAL", "legal", "legal")
    assert not needs_escalation("M6+", "primary", "legal")
    assert not needs_escalation("LEGAL", "primary", "")  # no legal tier: nowhere to go
    assert next_escalation_state("proposed", "approve") == "approved"
    assert next_escalation_state("proposed", "reject") == "rejected"
    assert next_escalation_state("rejected", "approve") is None
    assert next_escalation_state("approved", "reject") is None


# -- packets ----------------------------------------------------------------------------


def test_the_warning_packet_has_one_key_per_term() -> None:
    packet = PlacementExpiring.model_validate_json(expiring())
    assert (packet.data.return_by, packet.data.recall_on) == (END, END + timedelta(days=1))
    first = json.loads(expiring())["data"]["packet_id"]
    assert json.loads(expiring(at=AT + timedelta(hours=5)))["data"]["packet_id"] == first
    renewed = json.loads(expiring(END + timedelta(days=30)))["data"]["packet_id"]
    assert renewed != first


def test_a_balance_amendment_is_byte_for_byte_what_it_was_and_a_renewal_adds_return_by() -> None:
    assert b"return_by" not in amended(None)
    renewal = PlacementAmended.model_validate_json(amended(END + timedelta(days=30)))
    assert renewal.data.return_by == END + timedelta(days=30)
    assert renewal.data.balance == renewal.data.previous_balance


# -- the law firm's letters -------------------------------------------------------------


def render(payload: bytes, template: str, language: str = "zh") -> Any:
    return render_content(
        template_environment(TEMPLATES),
        template=template,
        language=language,
        cases=[mail_case(payload, frozenset())],
        firm_name="正义律师事务所",
        sender_name="贷方法务部",
        case_file_kind="csv",
    )


def test_the_expiry_letter_names_the_end_and_the_recall_day_in_both_languages() -> None:
    zh = render(expiring(), "expiring")
    assert zh.subject == "[案件 PL-AC0000000001-1] 委托即将到期：AC0000000001"
    assert "委托期限将于 2026-08-29 届满" in zh.text
    assert "我司将于 2026-08-30 自动撤回该案件的委托" in zh.text
    assert "委托截止日：2026-08-29" in zh.text and "自动撤案日：2026-08-30" in zh.text
    [row] = list(csv.DictReader(io.StringIO(zh.attachments[0].data.decode("utf-8-sig"))))
    assert (row["packet_type"], row["return_by"], row["recall_on"]) == (
        "placement.expiring",
        "2026-08-29",
        "2026-08-30",
    )
    en = render(expiring(), "expiring", "en")
    assert en.subject == "[Case PL-AC0000000001-1] Referral ending soon: AC0000000001"
    assert "ends on 2026-08-29. Unless it is renewed, we withdraw it on 2026-08-30" in en.text


def test_a_renewal_letter_gives_the_new_end_and_a_balance_change_stays_as_it_was() -> None:
    renewal = render(amended(date(2026, 9, 28)), "amendment")
    assert renewal.subject == "[案件 PL-AC0000000001-1] 委托续期至 2026-09-28：AC0000000001"
    assert "以下委托已续期，新的委托截止日为 2026-09-28" in renewal.text
    balance = render(amended(None), "amendment")
    assert balance.subject == "[案件 PL-AC0000000001-1] 委托案件金额变更：AC0000000001"
    assert "欠款余额已变更" in balance.text and "None" not in balance.text
    assert "委托截止日" not in balance.text
    en = render(amended(date(2026, 9, 28)), "amendment", "en")
    assert en.subject == "[Case PL-AC0000000001-1] Referral renewed until 2026-09-28: AC0000000001"


def test_a_firm_taking_warnings_needs_the_expiry_letter_and_no_other_firm_does(
    tmp_path: Path,
) -> None:
    cert, key = self_signed("LenderX", email="legal@lender.test")
    (tmp_path / "lender.pem").write_text(cert)
    (tmp_path / "lender.key").write_text(key)
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    for part in ("subject", "body"):
        (templates / "zh" / f"expiring.{part}.j2").unlink()
    email = EmailSection.model_validate(
        {
            "from_address": "legal@lender.test",
            "message_id_domain": "lender.test",
            "to": ["intake@zhengyi.test"],
            "smtp": {"host": "127.0.0.1"},
            "smime": {
                "sign_cert": {"file": "lender.pem"},
                "sign_key": {"file": "lender.key"},
                "reply_signature": "off",
            },
            "templates_dir": str(templates),
        }
    )
    assert email_problems("zhengyi.toml", email, tmp_path, {}) == []
    problems = email_problems("zhengyi.toml", email, tmp_path, {}, expiry_warning=True)
    assert len(problems) == 2
    assert all("zh/expiring." in p and "expiry_warning = true" in p for p in problems)


# -- a fixed-width file -----------------------------------------------------------------


def test_a_fixed_width_layout_carries_the_warning_and_the_renewal_without_new_config() -> None:
    fixed: dict[str, Any] = {"format": "fixed", "columns": {}}
    # A fixed-width layout maps every kind it exchanged before expiry warnings existed.
    for kind in (
        "placement.created",
        "placement.amended",
        "placement.recalled",
        "payment.direct",
        "result",
        "statement",
    ):
        fixed["columns"][kind] = [
            {"name": "TYPE", "field": "type", "width": 24},
            {"name": "PLACEMENT_ID", "field": "data.placement_id", "width": 40},
        ]
    fixed["columns"]["placement.amended"].append(
        {"name": "RETURN_BY", "field": "data.return_by", "kind": "date", "width": 10}
    )
    layout = LayoutSection.model_validate(fixed)
    at = datetime(2026, 8, 15, 9, tzinfo=UTC)
    warning = render_expiring(
        agency_id="AGY_F",
        placement_id="PL-AC1-1",
        case_id="AC1",
        version=1,
        return_by=date(2026, 8, 29),
        recall_on=date(2026, 8, 30),
        at=at,
    )
    writer = RecordWriter(layout, "placement.expiring")
    chunk, errors = writer.write([warning.payload])
    assert errors == []
    line = chunk.decode().rstrip("\n")
    assert len(line) == 24 + 44 + 64 + 64 + 10 + 10
    assert line[:24].rstrip() == "placement.expiring"
    assert line.endswith("2026-08-292026-08-30")
    renewal = render_amended(
        agency_id="AGY_F",
        placement_id="PL-AC1-1",
        case_id="AC1",
        version=2,
        balance_minor=100,
        previous_balance_minor=100,
        currency="CNY",
        reason="renewed until 2026-09-28",
        at=at,
        return_by=date(2026, 9, 28),
    )
    amended, errors = RecordWriter(layout, "placement.amended").write([renewal.payload])
    assert errors == [] and amended.decode().rstrip("\n").endswith("2026-09-28")
