"""Bonus tables for finance (bonus-<unit_id>.xlsx/.csv): exact money, text safety, determinism."""

from __future__ import annotations

import codecs
import csv
import io
from datetime import UTC, datetime
from decimal import Decimal

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook

from reports.bonus_tables import (
    AMOUNT_FORMAT,
    COLUMNS,
    CSV_COLUMNS,
    SHEET_TITLE,
    WEIGHT_FORMAT,
    BonusHeader,
    bonus_rows,
    write_csv,
    write_xlsx,
)

GRADES = {"excellent": "优秀", "good": "称职", "basic": "基本称职"}
AMOUNT = "金额（元）"
EVIL = '=HYPERLINK("http://x","y")'
WHEN = datetime(2026, 1, 5, 8, 30, tzinfo=UTC)


def header(pool_cents=1_000_000, **changes) -> BonusHeader:
    base = dict(
        scheme_id="court",
        scheme_name="某市法院审判人员考核",
        unit_id="u1",
        unit_name="第一人民法院",
        period="2026",
        period_label="2026年度",
        pool_cents=pool_cents,
        revision=1,
        method_label="按等次系数",
        generated_at=WHEN,
    )
    return BonusHeader(**{**base, **changes})


def allocation(rows) -> pd.DataFrame:
    """rows: (person_id, grade, weight, amount_cents), all of unit u1."""
    frame = pd.DataFrame(rows, columns=["person_id", "grade", "weight", "amount_cents"])
    frame.insert(0, "unit_id", "u1")
    return frame


def people(rows) -> pd.DataFrame:
    """rows: (person_id, name, dept_name, category)."""
    frame = pd.DataFrame(rows, columns=["person_id", "name", "dept_name", "category"])
    frame["post_coefficient"] = 1.0
    return frame


def example_rows() -> pd.DataFrame:
    """scheme.md: ¥10,000.00 over weights 1.5, 1.0, 1.0 → 4285.72, 2857.14, 2857.14.

    Given in shuffled order so that the ordering is bonus_rows' doing."""
    alloc = allocation(
        [
            ("c", "good", 1.0, 285_714),
            ("00123", "excellent", 1.5, 428_572),
            ("b", None, 1.0, 285_714),
        ]
    )
    who = people(
        [
            ("b", "欧阳䶮", "民二庭", "法官助理"),
            ("c", "张三", "刑一庭", "法官"),
            ("00123", EVIL, "+立案庭", "法官"),
            ("zz", "不相干", "执行局", "法官"),  # not in the allocation: ignored
        ]
    )
    return bonus_rows(alloc, who, GRADES)


def cents(x: float) -> int:
    return round(x * 100)


def table(path):
    """(sheet, row number of the table header, data rows, total row) of a written workbook."""
    ws = load_workbook(path)[SHEET_TITLE]
    head = next(r for r in range(1, ws.max_row + 1) if ws.cell(r, 1).value == "序号")
    data = []
    r = head + 1
    while ws.cell(r, 1).value != "合计":
        data.append([ws.cell(r, c) for c in range(1, len(COLUMNS) + 1)])
        r += 1
    return ws, head, data, r


def read_csv(path) -> list[list[str]]:
    raw = path.read_bytes()
    return list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))


# -- bonus_rows ---------------------------------------------------------------------------------


def test_rows_ordered_named_and_exact():
    rows = example_rows()
    assert list(rows.columns) == COLUMNS
    assert rows["人员编号"].tolist() == ["00123", "b", "c"]  # amount desc, then id asc
    assert rows["序号"].tolist() == [1, 2, 3]
    assert rows["等次"].tolist() == ["优秀", "—", "称职"]
    assert rows["姓名"].tolist() == [EVIL, "欧阳䶮", "张三"]
    assert rows["权重"].tolist() == [1.5, 1.0, 1.0]
    amounts = rows[AMOUNT].tolist()
    assert amounts == [Decimal("4285.72"), Decimal("2857.14"), Decimal("2857.14")]
    assert all(isinstance(a, Decimal) for a in amounts)
    assert sum(amounts) == Decimal("10000.00")


def test_rows_small_amounts_keep_two_places():
    rows = bonus_rows(
        allocation([("a", None, 1.0, 5), ("b", None, 1.0, 0), ("c", None, 1.0, 100)]),
        people([("a", "甲", "", ""), ("b", "乙", "", ""), ("c", "丙", "", "")]),
        GRADES,
    )
    assert [str(a) for a in rows[AMOUNT]] == ["1.00", "0.05", "0.00"]


def test_rows_person_missing_from_people_is_named():
    alloc = allocation([("a", None, 1.0, 50), ("ghost-7", None, 1.0, 50)])
    with pytest.raises(ValueError, match="ghost-7"):
        bonus_rows(alloc, people([("a", "甲", "一庭", "法官")]), GRADES)


@pytest.mark.parametrize(
    "alloc, match",
    [
        (allocation([("a", "unknown", 1.0, 1)]), "unknown"),
        (allocation([("a", None, 1.0, -1)]), "amount_cents"),
        (allocation([("a", None, float("nan"), 1)]), "weight"),
        (allocation([("a", None, 1.0, 1), ("a", None, 1.0, 1)]), "more than once"),
    ],
)
def test_rows_refuse_bad_input(alloc, match):
    with pytest.raises(ValueError, match=match):
        bonus_rows(alloc, people([("a", "甲", "一庭", "法官")]), GRADES)


def test_rows_refuse_two_units():
    alloc = allocation([("a", None, 1.0, 1), ("b", None, 1.0, 1)])
    alloc.loc[1, "unit_id"] = "u2"
    with pytest.raises(ValueError, match="several units"):
        bonus_rows(alloc, people([("a", "甲", "", ""), ("b", "乙", "", "")]), GRADES)


# -- XLSX ---------------------------------------------------------------------------------------


def test_xlsx_spec_example(tmp_path):
    path = write_xlsx(tmp_path / "bonus-u1.xlsx", header(), example_rows())
    assert path == tmp_path / "bonus-u1.xlsx"
    ws, head, data, total_row = table(path)

    amount_col = COLUMNS.index(AMOUNT)
    amounts = [row[amount_col] for row in data]
    assert [a.value for a in amounts] == [4285.72, 2857.14, 2857.14]
    assert all(a.data_type == "n" and a.number_format == AMOUNT_FORMAT for a in amounts)
    weights = [row[COLUMNS.index("权重")] for row in data]
    assert [w.value for w in weights] == [1.5, 1.0, 1.0]
    assert all(w.number_format == WEIGHT_FORMAT for w in weights)

    total = ws.cell(total_row, amount_col + 1)
    assert total.data_type == "n"  # a value, not a formula
    assert total.number_format == AMOUNT_FORMAT
    assert cents(total.value) == 1_000_000 == sum(cents(a.value) for a in amounts)

    block = {ws.cell(r, 1).value: ws.cell(r, 2) for r in range(2, head) if ws.cell(r, 1).value}
    assert ws.cell(1, 1).value == "某市法院审判人员考核 奖金分配表"
    assert "第一人民法院" in block["单位"].value and "u1" in block["单位"].value
    assert "2026年度" in block["期间"].value
    assert cents(block["奖金池"].value) == 1_000_000
    assert block["奖金池"].number_format == AMOUNT_FORMAT
    assert block["分配方式"].value == "按等次系数"
    assert block["版本"].value == "第1版"
    assert "court" in block["方案"].value

    assert [ws.cell(head, c).value for c in range(1, len(COLUMNS) + 1)] == COLUMNS
    assert all(ws.cell(head, c).font.b for c in range(1, len(COLUMNS) + 1))
    assert ws.print_title_rows == f"${head}:${head}"
    assert ws.freeze_panes == f"A{head + 1}"
    assert ws.column_dimensions["C"].width >= 10  # sized for Chinese names

    props = ws.parent.properties
    assert props.creator == "kaohe"
    assert props.created == props.modified == datetime(2026, 1, 5, 8, 30)


def test_xlsx_keeps_ids_and_formula_like_text_as_text(tmp_path):
    _, _, data, _ = table(write_xlsx(tmp_path / "b.xlsx", header(), example_rows()))
    pid, name, dept = data[0][1], data[0][2], data[0][3]
    assert (pid.value, pid.data_type) == ("00123", "s")
    assert (name.value, name.data_type) == (EVIL, "s")
    assert (dept.value, dept.data_type) == ("+立案庭", "s")
    assert data[1][2].value == "欧阳䶮"
    # and nothing in the sheet is a formula
    ws = load_workbook(tmp_path / "b.xlsx")[SHEET_TITLE]
    assert not [c for row in ws.iter_rows() for c in row if c.data_type == "f"]


def test_xlsx_formula_like_text_carries_the_quote_prefix_numbers_stay_numbers(tmp_path):
    # the quote prefix is what Excel stores for a cell typed as '=…: shown without the quote,
    # and still text when someone edits the cell and presses Enter
    rows = example_rows()
    rows.loc[rows.index[1], "部门"] = "-3"  # text that looks like a negative number
    ws, head, data, total_row = table(write_xlsx(tmp_path / "b.xlsx", header(), rows))
    name, dept = data[0][2], data[0][3]
    assert (name.value, name.quotePrefix) == (EVIL, True)
    assert (dept.value, dept.quotePrefix) == ("+立案庭", True)
    assert (data[1][3].value, data[1][3].data_type, data[1][3].quotePrefix) == ("-3", "s", True)
    assert not data[0][1].quotePrefix and not data[1][2].quotePrefix  # 00123, 欧阳䶮: plain text
    numbers = [row[c] for row in data for c in (0, COLUMNS.index("权重"), COLUMNS.index(AMOUNT))]
    assert all(c.data_type == "n" and not c.quotePrefix for c in numbers)
    assert ws.cell(total_row, COLUMNS.index(AMOUNT) + 1).value == 10_000.0


def test_xlsx_control_characters_become_spaces_not_a_failed_table(tmp_path):
    rows = example_rows()
    rows.loc[rows.index[0], "姓名"] = "张\x01三"
    _, head, data, _ = table(write_xlsx(tmp_path / "b.xlsx", header(unit_name="一\x02庭"), rows))
    assert data[0][2].value == "张 三"


def test_xlsx_correction_revision(tmp_path):
    ws, head, _, _ = table(write_xlsx(tmp_path / "b.xlsx", header(revision=3), example_rows()))
    assert any(ws.cell(r, 2).value == "更正第3版" for r in range(2, head))


# -- CSV ----------------------------------------------------------------------------------------


def test_csv_spec_example(tmp_path):
    path = write_csv(tmp_path / "bonus-u1.csv", header(), example_rows())
    raw = path.read_bytes()
    assert raw.startswith(codecs.BOM_UTF8)
    assert b"\r\n" in raw and raw.count(b"\n") == raw.count(b"\r\n")
    rows = read_csv(path)
    assert rows[0] == CSV_COLUMNS
    body, total = rows[1:-1], dict(zip(CSV_COLUMNS, rows[-1], strict=True))
    amount = CSV_COLUMNS.index(AMOUNT)
    assert [r[amount] for r in body] == ["4285.72", "2857.14", "2857.14"]
    assert [r[CSV_COLUMNS.index("权重")] for r in body] == ["1.5", "1", "1"]
    assert total["姓名"] == "合计" and total[AMOUNT] == "10000.00"
    assert sum(Decimal(r[amount]) for r in body) == Decimal(total[AMOUNT])
    assert {r[0] for r in rows[1:]} == {"court"} and {r[2] for r in rows[1:]} == {"u1"}
    assert {r[1] for r in rows[1:]} == {"2026"}
    assert body[1][CSV_COLUMNS.index("姓名")] == "欧阳䶮"
    assert body[2][CSV_COLUMNS.index("部门")] == "刑一庭"


def test_csv_injection_quoted_and_ids_kept(tmp_path):
    rows = example_rows()
    rows.loc[rows.index[1], "部门"] = "-3"
    rows.loc[rows.index[2], "部门"] = "@SUM(1+1)*cmd|' /C calc'!A0"
    out = read_csv(write_csv(tmp_path / "b.csv", header(), rows))
    first, second, third = (dict(zip(CSV_COLUMNS, r, strict=True)) for r in out[1:4])
    assert first["人员编号"] == "00123"
    assert first["姓名"] == "'" + EVIL
    assert first["部门"] == "'+立案庭"
    assert second["部门"] == "'-3"  # a text cell, however numeric it looks
    assert third["部门"] == "'@SUM(1+1)*cmd|' /C calc'!A0"
    assert first[AMOUNT] == "4285.72" and first["权重"] == "1.5"  # numbers never quoted
    assert [r["序号"] for r in (first, second, third)] == ["1", "2", "3"]


# -- refusing, determinism ----------------------------------------------------------------------


@pytest.mark.parametrize("write", [write_xlsx, write_csv])
def test_rows_not_summing_to_pool_are_refused(tmp_path, write):
    rows = example_rows()
    with pytest.raises(ValueError, match="pool"):
        write(tmp_path / "bonus-u1.out", header(pool_cents=1_000_001), rows)
    assert list(tmp_path.iterdir()) == []  # no file, no temporary left behind


@pytest.mark.parametrize("write", [write_xlsx, write_csv])
def test_refusal_leaves_earlier_file_untouched(tmp_path, write):
    path = write(tmp_path / "bonus-u1.out", header(), example_rows())
    before = path.read_bytes()
    with pytest.raises(ValueError):
        write(path, header(pool_cents=999_999), example_rows())
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize("write", [write_xlsx, write_csv])
def test_same_inputs_same_bytes(tmp_path, write):
    a = write(tmp_path / "a.out", header(), example_rows()).read_bytes()
    b = write(tmp_path / "b.out", header(), example_rows()).read_bytes()
    assert a == b
    later = header(generated_at=datetime(2026, 2, 1, tzinfo=UTC))
    c = write(tmp_path / "c.out", later, example_rows()).read_bytes()
    assert (a == c) is (write is write_csv)  # only the workbook carries the timestamp


# -- property -----------------------------------------------------------------------------------

_PERSON = st.tuples(
    st.sampled_from([None, *GRADES]),
    st.floats(0, 3, allow_nan=False).map(lambda w: round(w, 2)),
    st.integers(0, 10**9),
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(_PERSON, min_size=0, max_size=12))
def test_property_total_is_pool_and_rows_descend(tmp_path, persons):
    alloc = allocation([(f"{i:05d}", g, w, c) for i, (g, w, c) in enumerate(persons)])
    who = people([(f"{i:05d}", f"人{i}", "一庭", "法官") for i in range(len(persons))])
    rows = bonus_rows(alloc, who, GRADES)
    pool = sum(c for _, _, c in persons)
    ws, _, data, total_row = table(write_xlsx(tmp_path / "p.xlsx", header(pool), rows))
    amount_col = COLUMNS.index(AMOUNT)
    got = [cents(row[amount_col].value) for row in data]
    assert cents(ws.cell(total_row, amount_col + 1).value) == pool == sum(got)
    assert sorted(got) == sorted(c for _, _, c in persons)
    keys = [(-c, row[1].value) for c, row in zip(got, data, strict=True)]
    assert keys == sorted(keys)  # amount descending, then person id ascending
