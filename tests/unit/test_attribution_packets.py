"""The attribution on the wire: ``payment.direct`` with and without it, ``payment.attributed``
as JSON, as an SFTP file row (both ways) and as the firm's letter (gateway.dispatch.packets,
adapters.sftp.layouts, adapters.email.render)."""

import io
import json
from datetime import UTC, datetime
from pathlib import Path

from adapters.email.adapter import template_environment
from adapters.email.render import mail_case, render_content
from adapters.sftp.layouts import ParsedRecord, RecordWriter
from adapters.sftp.parsing import read_records
from gateway.config.layouts import LayoutSection
from gateway.dispatch.packets import render_attributed_payment, render_direct_payment

AT = datetime(2026, 3, 4, 2, 0, tzinfo=UTC)
TEMPLATES = Path(__file__).resolve().parents[2] / "config" / "templates" / "email"
COMMON = {
    "agency_id": "AGA",
    "placement_id": "PL-AC1-1",
    "case_id": "AC1",
    "version": 1,
    "payment_id": "R-1",
    "amount_minor": 1_001,
    "currency": "CNY",
    "paid_at": AT,
    "at": AT,
}


def test_payment_direct_carries_the_attribution_only_when_given() -> None:
    plain = json.loads(render_direct_payment(**COMMON).payload)
    assert "attribution" not in plain["data"], "agency_remits agencies see what they saw"
    direct = json.loads(
        render_direct_payment(**COMMON, attribution=("grace_shared", 6_000, 601)).payload
    )
    assert direct["data"]["attribution"] == {
        "rule": "grace_shared",
        "share_bps": 6_000,
        "amount": {"amount_minor": 601, "currency": "CNY"},
    }


def test_payment_attributed_round_trips_an_sftp_file() -> None:
    packet = render_attributed_payment(**COMMON, attribution=("grace_old", 10_000, 1_001))
    layout = LayoutSection()
    writer = RecordWriter(layout, "payment.attributed")
    chunk, errors = writer.write([packet.payload])
    assert errors == []
    data = writer.start() + chunk + writer.finish()
    header = data.split(b"\n")[0]
    assert header.endswith(b",ATTRIBUTION_RULE,ATTRIBUTION_SHARE_BPS,ATTRIBUTED_AMOUNT")
    assert b",grace_old,10000,10.01" in data
    [row] = list(read_records(io.BytesIO(data), layout, "payment.attributed"))
    assert isinstance(row, ParsedRecord)
    assert row.record["data"]["attribution"] == json.loads(packet.payload)["data"]["attribution"]
    assert row.record["data"]["payment_id"] == "R-1"


def test_the_firms_letter_names_the_rule_share_and_amount() -> None:
    packet = render_attributed_payment(**COMMON, attribution=("grace_shared", 4_000, 400))
    case = mail_case(packet.payload, frozenset())
    assert (case.fields["attribution_rule"], case.fields["attribution_share"]) == (
        "grace_shared",
        "40.00%",
    )
    assert case.fields["attribution_amount"] == "4.00" and case.fields["amount"] == "10.01"
    for language in ("zh", "en"):
        content = render_content(
            template_environment(TEMPLATES),
            template="attributed_payment",
            language=language,
            cases=[case],
            firm_name="正义律师事务所",
            sender_name="贷方法务部",
            case_file_kind="none",
        )
        assert "AC1" in content.subject and "4.00" in content.text
    assert "归属金额：4.00" in render_content(
        template_environment(TEMPLATES), template="attributed_payment", language="zh",
        cases=[case], firm_name="x", sender_name="y", case_file_kind="none",
    ).text  # fmt: skip
