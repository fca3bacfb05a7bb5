"""Contact attempts in a law firm's reply sheet: whom the firm contacted, why a third party,
the collector and the recording, in English or Chinese words."""

from datetime import UTC, datetime

from gateway.inbound.sheets import RowDefaults, parse_sheet
from schemas.events import ContactAttempted

RECEIVED = datetime(2026, 3, 3, 2, 0, tzinfo=UTC)
PID = "PL-AC0000000001-1"


def test_contact_rows_carry_party_purpose_collector_and_recording() -> None:
    sheet = (
        "事件 event_type,委托编号 placement_id,日期 occurred_at,渠道 channel,结果 outcome,"
        "联系对象 party,目的 purpose,催收员 collector_id,录音编号 recording_ref\r\n"
        f"联系,{PID},2026-03-02 10:15,call,reached,本人,,L-7,rec/0302/1.mp3\r\n"
        f"contact,{PID},2026-03-02 10:30,visit,no_answer,第三方,查找,,\r\n"
        f"contact,{PID},2026-03-02 10:45,call,refused,third party,债务,L-7,\r\n"
        f"contact,{PID},2026-03-02 11:00,call,,担保人,,,\r\n"
        f"contact,{PID},2026-03-02 11:15,call,reached,neighbour,,,\r\n"
    ).encode()
    parsed = parse_sheet("回复表.csv", sheet, RowDefaults(received_at=RECEIVED))
    debtor, located, about_debt = parsed.events
    assert all(isinstance(e, ContactAttempted) for e in parsed.events)
    assert isinstance(debtor, ContactAttempted)
    assert debtor.data.attempted_at == datetime(2026, 3, 2, 2, 15, tzinfo=UTC)  # Shanghai time
    assert (debtor.data.party, debtor.data.effective) == ("debtor", True)
    assert (debtor.data.collector_id, debtor.data.recording_ref) == ("L-7", "rec/0302/1.mp3")
    assert isinstance(located, ContactAttempted) and isinstance(about_debt, ContactAttempted)
    assert (located.data.party, located.data.purpose, located.data.effective) == (
        "third_party",
        "locate",
        False,
    )
    assert (about_debt.data.party, about_debt.data.purpose) == ("third_party", "debt")
    assert [str(e).split(":")[0:2] for e in parsed.errors] == [
        ["line 5", " outcome"],
        ["line 6", " party"],
    ]
