"""The pure core of the console's list exports (gateway.console.export_format): cells, the
masking of personal data in free text, formula neutralising, and the CSV and XLSX bytes."""

import csv
import io
from datetime import UTC, date, datetime, timedelta, timezone

from hypothesis import given, strategies as st
from openpyxl import load_workbook

from gateway.console.export_format import (
    CSV_BOM,
    XlsxSheet,
    cell,
    csv_chunk,
    csv_head,
    formula_safe,
    mask_free_text,
    shape,
)


def test_cells_are_raw_values_and_times_are_utc() -> None:
    shanghai = timezone(timedelta(hours=8))
    assert cell(datetime(2026, 3, 2, 17, 0, tzinfo=shanghai)) == "2026-03-02T09:00:00Z"
    assert cell(datetime(2026, 3, 2, 9, 0)) == "2026-03-02T09:00:00Z"
    assert cell(date(2026, 3, 2)) == "2026-03-02"
    assert cell(-12345) == -12345
    assert cell(None) == ""
    assert cell(["DISPUTE", "LEGAL"]) == "DISPUTE LEGAL"
    assert cell(True) == "true"


def test_personal_data_in_free_text_is_masked() -> None:
    text = "call +86 13812345678, 13900001111; mail wang.fang@example.cn; id 11010519491231002X"
    masked = mask_free_text(text)
    for secret in ("13812345678", "13900001111", "wang.fang", "11010519491231002X"):
        assert secret not in masked
    assert "138****5678" in masked and "w***@example.cn" in masked and "110" in masked
    assert mask_free_text("payment PAY-1001 reported again with another amount") == (
        "payment PAY-1001 reported again with another amount"
    )
    assert (
        mask_free_text("PL-AC9999999999-1 held by AGY_BETA") == "PL-AC9999999999-1 held by AGY_BETA"
    )


def test_shape_masks_only_free_text_unless_revealed() -> None:
    row = {"id": "C-13812345678", "detail": "debtor said 13812345678", "delta_minor": -500}
    columns = ("id", "delta_minor", "detail")
    assert shape(row, columns, reveal=False) == ["C-13812345678", -500, "debtor said 138****5678"]
    assert shape(row, columns, reveal=True) == ["C-13812345678", -500, "debtor said 13812345678"]


def test_formulas_are_made_inert() -> None:
    assert formula_safe('=HYPERLINK("http://evil")') == '\'=HYPERLINK("http://evil")'
    assert formula_safe("@SUM(A1)") == "'@SUM(A1)"
    assert formula_safe(-5) == -5
    assert formula_safe("AGY_ALPHA") == "AGY_ALPHA"


@given(
    st.lists(
        st.lists(st.one_of(st.text(), st.integers()), min_size=3, max_size=3),
        max_size=20,
    )
)
def test_csv_reads_back_to_the_same_cells(rows: list[list[str | int]]) -> None:
    body = csv_head(["a", "b", "c"]) + csv_chunk(rows)
    assert body.startswith(CSV_BOM.encode())
    text = body.decode("utf-8-sig")
    back = list(csv.reader(io.StringIO(text, newline="")))
    assert back[0] == ["a", "b", "c"]
    assert back[1:] == [[str(v) for v in row] for row in rows]


def test_xlsx_holds_the_rows_typed() -> None:
    sheet = XlsxSheet("mismatches", ["id", "detail", "delta_minor"])
    sheet.append([[1, "张三 回电", -500], [2, formula_safe("=1+1"), 0]])
    target = io.BytesIO()
    sheet.save(target)
    book = load_workbook(io.BytesIO(target.getvalue()), read_only=True)
    assert book.active is not None
    assert [list(r) for r in book.active.iter_rows(values_only=True)] == [
        ["id", "detail", "delta_minor"],
        [1, "张三 回电", -500],
        [2, "'=1+1", 0],
    ]
    assert sheet.rows == 2


def test_naive_and_aware_times_agree() -> None:
    aware = datetime(2026, 1, 1, tzinfo=UTC)
    assert cell(aware) == cell(aware.replace(tzinfo=None))
