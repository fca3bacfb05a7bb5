"""The pure parts of holds and scrubs: the intake ``holds`` column, the content hash of rows
without holds, the scrub plan, the hold step table and the case step of an agency outcome."""

import io
import json

import pytest

from gateway.cases.holds import ActiveHold, checked_code, hold_step, source_of
from gateway.cases.outcomes import PlacementEnding, case_step, placement_ending
from gateway.cases.scrubs import ScrubRow, plan
from gateway.errors import GatewayError
from gateway.intake.reader import FIELDS, ParsedRow, RowError, read_accounts
from gateway.intake.writer import content_mac
from gateway.privacy.pii import PiiKeyRing
from schemas.account import IntakeAccount
from tests.factories import event, placement_view
from tests.unit.test_intake_reader import account, csv_text, jsonl_text

PII = PiiKeyRing.parse(PiiKeyRing.generate_line("k1"))


def read(text: str, fmt: str = "csv") -> list[ParsedRow | RowError]:
    return list(read_accounts(io.StringIO(text), fmt=fmt, source="f"))  # type: ignore[arg-type]


def test_the_csv_holds_column_is_optional_and_split_on_semicolons() -> None:
    [without] = read(csv_text([account()]))
    assert isinstance(without, ParsedRow) and without.account.holds == ()
    header = [*FIELDS, "holds"]
    rows = [account(holds="dispute; DECEASED;;DISPUTE"), account(account_id="ACC-2", holds="")]
    first, second = read(csv_text(rows, header=header))
    assert isinstance(first, ParsedRow) and first.account.holds == ("DECEASED", "DISPUTE")
    assert isinstance(second, ParsedRow) and second.account.holds == ()


def test_the_header_may_put_holds_anywhere_once_but_no_unknown_column() -> None:
    [row] = read(csv_text([account(holds="STUDENT")], header=["holds", *FIELDS]))
    assert isinstance(row, ParsedRow) and row.account.holds == ("STUDENT",)
    [twice] = read(csv_text([account()], header=[*FIELDS, "holds", "holds"]))
    assert isinstance(twice, RowError) and twice.fatal and twice.field == "holds"
    [unknown] = read(csv_text([account()], header=[*FIELDS, "hold"]))
    assert isinstance(unknown, RowError) and unknown.fatal and unknown.field == "hold"
    assert "optionally: " in unknown.message and unknown.message.endswith(",holds")
    [missing] = read(csv_text([account()], header=[f for f in FIELDS if f != "dpd"] + ["holds"]))
    assert isinstance(missing, RowError) and missing.field == "dpd"


def test_jsonl_holds_as_a_list_a_string_or_absent() -> None:
    rows = [
        account(holds=["BANKRUPT", "IMPRISONED"]),
        account(account_id="ACC-2", holds="SERIOUS_ILLNESS;COMPLAINT"),
        account(account_id="ACC-3"),
    ]
    parsed = read(jsonl_text(rows), "jsonl")
    assert [p.account.holds for p in parsed if isinstance(p, ParsedRow)] == [
        ("BANKRUPT", "IMPRISONED"),
        ("COMPLAINT", "SERIOUS_ILLNESS"),
        (),
    ]


def test_a_bad_hold_code_is_named_without_quoting_it() -> None:
    [bad] = read(jsonl_text([account(holds=["OK_CODE", "not a code!"])]), "jsonl")
    assert isinstance(bad, RowError)
    assert bad.field == "holds"
    assert bad.message.startswith("item 2: not a hold code")
    assert "not a code!" not in str(bad)


def test_content_mac_of_a_row_without_holds_is_what_it_always_was() -> None:
    plain = IntakeAccount.model_validate(account())
    # The bytes hashed before the holds column existed: the row's compact JSON.
    before = (
        b'{"account_id":"ACC-1","debtor_id":"DEB-1","name":"Li Lei",'
        b'"national_id":"110101199001011234","phones":["+8613800000001","13900000002"],'
        b'"address":"1 Example Road","region":"CN-11","product":"cash-loan","currency":"CNY",'
        b'"principal_minor":1000000,"balance_minor":850000,"dpd":45,"credit_grade":"B",'
        b'"due_date":"2025-11-01"}'
    )
    assert content_mac(plain, PII) == PII.mac(before)
    held = IntakeAccount.model_validate(account(holds="DISPUTE;DECEASED"))
    same_set = IntakeAccount.model_validate(account(holds=["DECEASED", "DISPUTE"]))
    assert content_mac(held, PII) != content_mac(plain, PII)
    assert content_mac(held, PII) == content_mac(same_set, PII)


def row(codes: tuple[str, ...] = (), **kw: object) -> ScrubRow:
    values: dict[str, object] = {"balance_minor": 100, "dpd": 10, "was_overdue": True}
    values.update(kw)
    return ScrubRow("C1", codes, **values)  # type: ignore[arg-type]


def hold(code: str, source: str = "intake", hold_id: int = 1) -> ActiveHold:
    return ActiveHold(hold_id, "C1", code, source)


def summary(status: str, r: ScrubRow, standing: list[ActiveHold] | None = None) -> object:
    p = plan([r], {"C1": status}, {"C1": standing or []})
    return (
        [h.code for h in p.add],
        [h.code for h in p.release],
        [m.event for m in p.moves],
        [(code, event) for _case, code, event in p.recalls],
        [(leaf.fields["action"], leaf.fields["code"]) for leaf in p.leaves],
    )


@pytest.mark.parametrize(
    ("status", "r", "standing", "expected"),
    [
        ("open", row(("DECEASED",)), [], (["DECEASED"], [], ["hold"], [], [])),
        (
            "placed",
            row(("DISPUTE", "BANKRUPT")),
            [],
            (["BANKRUPT", "DISPUTE"], [], [], [("BANKRUPT", "hold")], []),
        ),
        ("legal", row(), [hold("DISPUTE", "ops")], ([], [], [], [], [])),
        ("held", row(("A1", "B2")), [hold("A1")], (["B2"], [], [], [], [("add", "B2")])),
        (
            "held",
            row(),
            [hold("A1"), hold("B2", "ops", 2)],
            ([], ["A1"], [], [], [("release", "A1")]),
        ),
        ("held", row(), [hold("A1")], ([], ["A1"], ["release"], [], [])),
        ("returned", row(("X9",)), [], (["X9"], [], ["hold"], [], [])),
        ("placed", row(balance_minor=0), [], ([], [], [], [("PAID_OFF", "close")], [])),
        ("legal", row(dpd=0), [], ([], [], [], [("CURED", "close")], [])),
        ("held", row(dpd=0), [hold("A1")], ([], ["A1"], ["close"], [], [("release", "A1")])),
        (
            "open",
            row(("DECEASED",), dpd=0),
            [],
            (["DECEASED"], [], ["close"], [], [("add", "DECEASED")]),
        ),
        ("closed", row(dpd=0), [], ([], [], [], [], [])),
        ("written_off", row(balance_minor=0), [], ([], [], [], [], [])),
        ("closed", row(was_overdue=False), [], ([], [], ["reopen"], [], [])),
        (
            "closed",
            row(was_overdue=False),
            [hold("A1", "ops")],
            ([], [], ["reopen", "hold"], [], []),
        ),
        # Closed by the agency (the lender's row was overdue all along): not reopened.
        ("closed", row(was_overdue=True), [], ([], [], [], [], [])),
        ("recalled", row(("STUDENT",)), [], (["STUDENT"], [], ["hold"], [], [])),
    ],
)
def test_scrub_plan(status: str, r: ScrubRow, standing: list[ActiveHold], expected: object) -> None:
    assert summary(status, r, standing) == expected


def test_a_case_that_vanished_is_skipped() -> None:
    p = plan([row(("DECEASED",))], {}, {})
    assert (p.add, p.moves, p.recalls) == ([], [], [])


def test_hold_step_table() -> None:
    assert hold_step("placed", added=True, standing=True) == "recall"
    assert hold_step("legal", added=False, standing=True) is None
    assert hold_step("open", added=True, standing=True) == "hold"
    assert hold_step("recalled", added=True, standing=True) == "hold"
    assert hold_step("held", added=True, standing=True) is None
    assert hold_step("held", added=False, standing=False) == "release"
    assert hold_step("closed", added=True, standing=True) is None


def test_hold_codes_and_sources() -> None:
    assert checked_code(" deceased ") == "DECEASED"
    assert checked_code("LENDER_42") == "LENDER_42"
    for bad in ("", "X", "9LIVES", "two words", "A" * 33):
        with pytest.raises(GatewayError, match="is not a hold code"):
            checked_code(bad)
    assert [source_of(a) for a in ("intake", "agency:AG1", "ops:olga", "olga")] == [
        "intake",
        "agency",
        "ops",
        "ops",
    ]


def ending(event_type: str, reason: str) -> PlacementEnding:
    return PlacementEnding("C1", "PL-1", "AG1", event_type, reason)


def test_case_steps_of_agency_outcomes() -> None:
    assert case_step(ending("placement.rejected", "outside our area")) == ("reject", None)
    assert case_step(ending("case.returned", "uncollectable")) == ("return", None)
    assert case_step(ending("case.returned", "deceased")) == ("hold", "DECEASED")
    assert case_step(ending("case.returned", "bankrupt")) == ("hold", "BANKRUPT")
    assert case_step(ending("case.returned", "disputed")) == ("hold", "DISPUTE")
    assert case_step(ending("case.closed", "paid_in_full")) == ("close", None)
    assert case_step(ending("case.closed", "settled")) == ("close", None)
    assert case_step(ending("case.closed", "written_off")) == ("write_off", None)


def test_only_an_open_placement_ending_is_an_ending() -> None:
    returned = event("case.returned", placement_id="PL-1", reason="deceased")
    active = placement_view(id="PL-1", state="active")
    done = placement_view(id="PL-1", state="returned")
    found = placement_ending(returned, active, done)
    assert found is not None and (found.placement_id, found.reason) == ("PL-1", "deceased")
    recalled = placement_view(id="PL-1", state="recalled")
    assert placement_ending(returned, recalled, done) is None
    assert placement_ending(returned, None, done) is None
    payment = event("payment.reported", placement_id="PL-1")
    assert placement_ending(payment, active, placement_view(id="PL-1", state="active")) is None


def test_json_schema_of_holds_allows_a_list_or_a_string() -> None:
    schema = IntakeAccount.model_json_schema(mode="validation")
    assert "holds" not in schema["required"]
    kinds = {branch["type"] for branch in schema["properties"]["holds"]["anyOf"]}
    assert kinds == {"array", "string", "null"}
    json.dumps(schema)
