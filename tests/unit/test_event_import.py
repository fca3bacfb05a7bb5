"""Agency events from reply sheets and forms: columns, amounts, dates and line errors."""

import io
from datetime import UTC, datetime

from openpyxl import Workbook

from gateway.inbound.reply_sheet import EVENT_ALIASES, amount_minor, column_name
from gateway.inbound.sheets import (
    RowDefaults,
    form_rows,
    json_events,
    parse_sheet,
    rows_to_events,
)
from schemas.events import SettlementConfirmed, SettlementDisputed

RECEIVED = datetime(2026, 3, 3, 2, 0, tzinfo=UTC)
DEFAULTS = RowDefaults(received_at=RECEIVED)
PID = "PL-AC0000000001-1"


def test_headers_in_english_chinese_or_both():
    assert column_name("\ufeffevent_type") == "event_type"
    assert column_name("事件 event_type") == "event_type"
    assert column_name("案号") == "court_case_number"
    assert column_name("委托编号") == "placement_id"


def test_amounts_are_exact_and_never_floats():
    assert amount_minor("1,234.56", "CNY") == 123456
    assert amount_minor("¥88", "CNY") == 8800
    assert amount_minor("1200", "JPY") == 1200
    for bad in ("12.345", "abc", "Infinity", "-inf", "NaN", "-sNaN", "1e400", "9" * 30):
        try:
            amount_minor(bad, "CNY")
        except ValueError:
            continue
        raise AssertionError(f"{bad} was accepted")


def test_a_csv_sheet_with_good_and_bad_lines():
    sheet = (
        "\ufeff事件 event_type,委托编号 placement_id,日期 occurred_at,律所案号 agency_case_ref,"
        "行动 action,法院 court,案号 court_case_number,payment_id,amount,currency,reason\r\n"
        f"placement.acknowledged,{PID},2026-03-03,ZY-1,,,,,100.00,,\r\n"
        f"legal,{PID},2026-03-05,,起诉,上海市浦东新区人民法院,(2026)沪0115民初1号,,,,\r\n"
        f"payment.reported,{PID},2026-03-06 10:00,,,,,P1,50,,\r\n"
        f"case.returned,{PID},,,,,,,,,uncollectable\r\n"
        f"legal.action,{PID},2026-13-01,,lawyer_letter,,,,,,\r\n"
        f"nonsense,{PID},,,,,,,,,\r\n"
        f",{PID},,,,,,,,,\r\n"
    ).encode()
    parsed = parse_sheet("回复表.csv", sheet, DEFAULTS)
    assert [e.type for e in parsed.events] == [
        "placement.acknowledged",
        "legal.action",
        "payment.reported",
    ]
    suit = parsed.events[1].data
    assert suit.action == "suit_filed" and suit.court_case_number == "(2026)沪0115民初1号"
    # A date without an offset is the firm's local date (Asia/Shanghai).
    assert suit.occurred_at == datetime(2026, 3, 4, 16, 0, tzinfo=UTC)
    assert parsed.events[2].data.amount.amount_minor == 5000
    assert [str(e) for e in parsed.errors] == [
        "line 5: amount: required for case.returned",
        "line 6: occurred_at: '2026-13-01' is not a date (write e.g. 2026-03-01)",
        "line 7: event_type: unknown event 'nonsense'; use one of "
        + ", ".join(sorted(set(EVENT_ALIASES.values()))),
    ]


def test_a_deletion_confirmation_carries_its_method_in_the_reason_column():
    sheet = (
        "\ufeff事件 event_type,委托编号 placement_id,日期 occurred_at,律所案号 agency_case_ref,"
        "行动 action,法院 court,案号 court_case_number,payment_id,amount,currency,reason\r\n"
        f"data.deleted,{PID},2026-03-20,,,,,,,,deleted\r\n"
        f"删除,{PID},,,,,,,,,已返还\r\n"
        f"data.deleted,{PID},2026-03-21,,,,,,,,shredded\r\n"
        f"data.deleted,{PID},2026-03-21,,,,,,,,\r\n"
    ).encode()
    parsed = parse_sheet("回复表.csv", sheet, DEFAULTS)
    assert [e.type for e in parsed.events] == ["data.deleted", "data.deleted"]
    erased, handed_back = (e.data for e in parsed.events)
    assert erased.method == "deleted" and erased.reference is None
    # When it was done is the event's time: the firm's local date, else the reply's time.
    assert parsed.events[0].timestamp == datetime(2026, 3, 19, 16, 0, tzinfo=UTC)
    assert handed_back.method == "returned" and parsed.events[1].timestamp == RECEIVED
    assert [str(e) for e in parsed.errors] == [
        "line 4: reason: 'shredded' is not a deletion method; use deleted or returned",
        "line 5: reason: required for data.deleted",
    ]


def test_gb18030_csv_from_chinese_excel():
    sheet = f"事件,委托编号,行动\r\nlegal.action,{PID},律师函\r\n".encode("gb18030")
    parsed = parse_sheet("reply.csv", sheet, DEFAULTS)
    assert parsed.errors == () and parsed.events[0].data.action == "lawyer_letter"


def test_an_xlsx_sheet_with_float_cells_and_dates():
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["event_type", "placement_id", "occurred_at", "payment_id", "amount"])
    sheet.append(["payment.reported", PID, datetime(2026, 3, 6, 9, 0), "P9", 1234.56])
    sheet.append(["payment.reported", PID, None, "P10", 0.001])
    data = io.BytesIO()
    book.save(data)
    parsed = parse_sheet("回复表.xlsx", data.getvalue(), DEFAULTS)
    assert parsed.events[0].data.amount.amount_minor == 123456
    assert [str(e) for e in parsed.errors] == [
        "line 3: amount: '0.001' has more than 2 decimal places"
    ]


def test_wire_format_json_items_are_checked_one_by_one():
    data = (
        b'{"events": [{"type": "legal.action", "timestamp": "2026-03-05T00:00:00Z", '
        b'"data": {"placement_id": "PL-1", "action": "judgment", '
        b'"occurred_at": "2026-03-05T00:00:00Z"}}, {"type": "legal.action"}]}'
    )
    parsed = json_events(data)
    assert len(parsed.events) == 1 and parsed.errors[0].line == 2


def test_the_body_form_ignores_quoted_lines_and_uses_the_matched_placement():
    text = (
        "您好，进展如下。\n"
        "---- REPLY FORM 回复表 ----\n"
        "事件 event_type: legal.action\n"
        "行动 action: suit_filed\n"
        "法院 court：北京市朝阳区人民法院\n"
        "案号 court_case_number: (2026)京0105民初7号\n"
        "---- END ----\n"
        "> ---- REPLY FORM 回复表 ----\n"
        "> 事件 event_type: \n"
    )
    parsed = rows_to_events(form_rows(text), RowDefaults(received_at=RECEIVED, placement_id=PID))
    assert parsed.errors == ()
    [event] = parsed.events
    assert event.data.placement_id == PID and event.data.court == "北京市朝阳区人民法院"
    assert event.timestamp == RECEIVED


def test_a_deletion_confirmed_in_the_body_form():
    text = (
        "---- REPLY FORM 回复表 ----\n"
        "事件 event_type: data.deleted\n"
        "日期 occurred_at: 2026-03-20 15:30\n"
        "原因 reason: Returned\n"
        "---- END ----\n"
        "---- REPLY FORM 回复表 ----\n"
        "事件 event_type: data.deleted\n"
        "原因 reason: archived\n"
        "---- END ----\n"
    )
    parsed = rows_to_events(form_rows(text), RowDefaults(received_at=RECEIVED, placement_id=PID))
    [event] = parsed.events
    assert event.type == "data.deleted" and event.data.placement_id == PID
    assert event.data.method == "returned"
    assert event.timestamp == datetime(2026, 3, 20, 7, 30, tzinfo=UTC)
    assert [str(e) for e in parsed.errors] == [
        "line 6: reason: 'archived' is not a deletion method; use deleted or returned"
    ]


def test_an_unknown_file_type_is_one_error():
    parsed = parse_sheet("reply.docx", b"x", DEFAULTS)
    assert parsed.events == () and "use a .csv, .xlsx or .json file" in parsed.errors[0].message


SHA = "ab" * 32


def test_settlement_answers_in_a_sheet_name_the_statement_not_a_placement():
    sheet = (
        "事件 event_type,委托编号 placement_id,结算单编号 statement_id,版本 revision,"
        "哈希 sha256,行号 line_nos,原因 reason,金额 amount\r\n"
        f"结算确认,,7,2,{SHA.upper()},,,\r\n"
        "结算异议,,7,2,,1；3、4,深度逾期费率,600.00\r\n"
        f"settlement.confirmed,,7,,{SHA},,,\r\n"
        "settlement.disputed,,7,2,,x,why,1\r\n"
        "settlement.disputed,,7,2,,1,,1\r\n"
    ).encode()
    # The reply's placement is not put into a settlement answer.
    parsed = parse_sheet("回复表.csv", sheet, RowDefaults(received_at=RECEIVED, placement_id=PID))
    confirmed, disputed = parsed.events
    assert confirmed.type == "settlement.confirmed"
    assert confirmed.data.model_dump() == {"statement_id": 7, "revision": 2, "sha256": SHA}
    assert disputed.type == "settlement.disputed"
    assert disputed.data.line_nos == (1, 3, 4) and disputed.data.reason == "深度逾期费率"
    assert disputed.data.claimed.amount_minor == 60_000
    assert [str(e) for e in parsed.errors] == [
        "line 4: revision: required for settlement.confirmed",
        "line 5: line_nos: 'x' is not a whole number",
        "line 6: reason: required for settlement.disputed",
    ]


def test_a_settlement_dispute_in_the_body_form():
    text = (
        "---- REPLY FORM 回复表 ----\n"
        "事件 event_type: settlement_disputed\n"
        "statement_id: 7\n"
        "revision: 1\n"
        "line_nos: 2, 5\n"
        "reason: paid before recall\n"
        "amount: 12.50\n"
        "---- END ----\n"
        "---- REPLY FORM 回复表 ----\n"
        "事件 event_type: settlement_confirmed\n"
        "statement_id: 8\n"
        "revision: 1\n"
        f"sha256: {SHA}\n"
        "---- END ----\n"
    )
    parsed = rows_to_events(form_rows(text), RowDefaults(received_at=RECEIVED, placement_id=PID))
    assert parsed.errors == ()
    disputed, confirmed = parsed.events
    assert isinstance(disputed, SettlementDisputed) and isinstance(confirmed, SettlementConfirmed)
    assert disputed.data.line_nos == (2, 5) and disputed.data.claimed.amount_minor == 1250
    assert confirmed.data.sha256 == SHA and confirmed.data.statement_id == 8
