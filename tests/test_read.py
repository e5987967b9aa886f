"""Reading extracts as Chinese office software writes them (sources.md)."""

from __future__ import annotations

import datetime as dt
import io

import openpyxl
import pandas as pd
import pytest

from etl.read import ROW_ERROR, UnreadableFile, concat, to_frame

ROSTER_ZH = (
    "工号,姓名,单位编码,单位名称,部门编码,部门,人员类别,岗位系数,邮箱\n"
    "000123,王䶮,court01,某县人民法院,d1,民一庭,员额法官,１．２,a@x.cn\n"
    "000124,李四,court01,某县人民法院,d1,民一庭,assistant,,\n"
)


@pytest.mark.parametrize("encoding", ["utf-8-sig", "gb18030", "utf-8"])
def test_every_encoding_gives_the_same_rows(encoding):
    frame, missing = to_frame("roster", "roster.csv", ROSTER_ZH.encode(encoding))
    assert missing == []
    assert frame["person_id"].tolist() == ["000123", "000124"]  # leading zeros stay text
    assert frame["name"].tolist() == ["王䶮", "李四"]  # 䶮 is GB18030, not GBK
    assert frame["post_coefficient"].tolist() == ["1.2", ""]  # full-width digits normalised
    assert frame["_line"].tolist() == [2, 3]


def test_gbk_and_utf8_bom_files_read_identically():
    text = ROSTER_ZH.replace("王䶮", "王五")  # a name GBK can carry
    a, _ = to_frame("roster", "roster.csv", text.encode("gbk"))
    b, _ = to_frame("roster", "roster.csv", text.encode("utf-8-sig"))
    assert a.equals(b)


def test_fullwidth_headers_and_padding_are_normalised():
    text = "　ＩＤ,工号 , 日期,状态\n x ,０００７, 2026年3月5日 ,正常\n"
    frame, missing = to_frame("attendance", "attendance.csv", text.encode("utf-8"))
    assert missing == []
    assert frame.loc[0, "person_id"] == "0007" and frame.loc[0, "date"] == "2026年3月5日"


def test_blank_rows_are_skipped_but_keep_their_line_numbers():
    text = "工号,日期,考勤结果\n1,2026-03-02,正常\n,,\n2,2026-03-02,正常\n"
    frame, _ = to_frame("attendance", "a.csv", text.encode())
    assert frame["_line"].tolist() == [2, 4]


def test_missing_required_column_is_reported():
    frame, missing = to_frame("attendance", "a.csv", "工号,日期\n1,2026-03-02\n".encode())
    assert missing == ["status"]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"   \n",
        b"\xff\xfe\x00\x01garbage\x80\x81",
        "\ufeff工号,姓名\n".encode() + "张三".encode("gb18030"),  # a BOM, then GB18030
        b"\xef\xbb\xbf",  # a BOM alone: empty
        "\ufeff工号,姓名\n".encode("utf-16-le"),  # Excel's Unicode Text
        "工号,姓名\n".encode("utf-16-le")[2:],  # UTF-16 without a BOM: NUL bytes
        b"a,b\n1,2,3" + b"x" * 200_000,  # a wide row with a cell past the csv module's limit
    ],
)
def test_unreadable_files_raise(data):
    with pytest.raises(UnreadableFile):
        to_frame("roster", "roster.csv", data)


def test_broken_xlsx_is_unreadable():
    with pytest.raises(UnreadableFile):
        to_frame("adjustments", "adjustments.xlsx", b"PK\x03\x04 not really a zip")


def test_xlsx_first_sheet_with_date_cells_and_numbers():
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["工号", "日期", "事项编码", "分值", "次数"])
    ws.append(["000123", dt.datetime(2026, 3, 5), "praise_city", None, 2])
    wb.create_sheet("other").append(["ignored"])
    buf = io.BytesIO()
    wb.save(buf)
    frame, missing = to_frame("adjustments", "adjustments.xlsx", buf.getvalue())
    assert missing == []
    row = frame.iloc[0]
    assert (row.person_id, row.date, row.rule, row.points, row["count"]) == (
        "000123",
        "2026-03-05",
        "praise_city",
        "",
        "2",
    )


def test_text_columns_are_categoricals_of_the_normalised_strings():
    text = "工号,日期,考勤结果\nＡ１,2026-03-02,正常\n A1 ,2026-03-02,正常\nA1,2026-03-03\n"
    frame, _ = to_frame("attendance", "a.csv", text.encode("utf-8"))
    assert isinstance(frame["person_id"].dtype, pd.CategoricalDtype)
    assert frame["person_id"].tolist() == ["A1", "A1", "A1"]
    assert frame["person_id"].cat.categories.tolist().count("A1") == 1  # cleaning merged them
    assert frame["status"].tolist() == ["正常", "正常", ""]  # a short row reads as ''
    assert frame["duty_filed"].tolist() == ["", "", ""]  # an absent optional column


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030"])
def test_quoted_fields_and_line_endings_read_alike_in_every_encoding(encoding):
    head = "工号,姓名,单位编码,单位名称,部门编码,部门,人员类别\r\n"
    text = head + '1,"王,五",u1,"某院\r\n本部",d1,科,x\r\n'
    frame, _ = to_frame("roster", "roster.csv", text.encode(encoding))
    assert frame["name"].tolist() == ["王,五"]
    assert frame["unit_name"].tolist() == ["某院\r\n本部"]
    assert frame["_line"].tolist() == [2]


def test_files_of_one_source_concatenate_keeping_categoricals():
    a, _ = to_frame("attendance", "a.csv", "工号,日期,考勤结果\n1,2026-03-02,正常\n".encode())
    b, _ = to_frame("attendance", "b.csv", "工号,日期,状态\n2,2026-03-02,迟到\n".encode("gb18030"))
    both = concat([a, b])
    assert isinstance(both["person_id"].dtype, pd.CategoricalDtype)
    assert both["person_id"].tolist() == ["1", "2"] and both["status"].tolist() == ["正常", "迟到"]
    assert both["_file"].tolist() == ["a.csv", "b.csv"] and both["_line"].tolist() == [2, 2]


def test_a_row_wider_than_the_header_is_kept_and_says_what_lies_beyond():
    text = (
        "工号,日期,考勤结果\n1,2026-03-02,正常\n2,2026-03-02,正常,,\n"
        "3,2026-03-02,正常,迟到,x\n,,,y\n"
    )
    frame, _ = to_frame("attendance", "a.csv", text.encode())
    assert frame["_line"].tolist() == [2, 3, 4, 5]  # a row with cells beyond only is no blank row
    errors = frame[ROW_ERROR].tolist()
    assert errors[:2] == ["", ""]  # empty cells beyond the header are no damage
    assert errors[2].startswith("5 cells where the header has 3 (beyond it: '迟到 | x')")
    assert errors[3].startswith("4 cells where the header has 3 (beyond it: 'y')")
    assert frame["status"].tolist()[2] == "正常"  # the header's columns read as laid out


def test_zero_width_characters_are_no_part_of_a_value():
    text = "\u200b工号,日期\u2060,考勤结果\n0007\u200b,\ufeff2026-03-02,正常\n"
    frame, missing = to_frame("attendance", "a.csv", text.encode())
    assert missing == []
    assert frame.loc[0, ["person_id", "date"]].tolist() == ["0007", "2026-03-02"]


def test_gbk_names_that_happen_to_be_utf8_bytes_still_read_as_gbk():
    # 卢平, 莫梅, 鲁萍: each character's GBK bytes are also a valid UTF-8 character; the file as
    # a whole is GBK and must not be refused as mixing encodings
    rows = "".join(
        f"{i:04d},{n},u1,某县人民法院,d1,民事审判第一庭,一般工作人员\n"
        for i, n in enumerate(["卢平", "莫梅", "鲁萍"] * 10, start=1)
    )
    text = "工号,姓名,单位编码,单位名称,部门编码,部门,人员类别\n" + rows
    frame, _ = to_frame("roster", "roster.csv", text.encode("gbk"))
    assert frame["name"].tolist()[:3] == ["卢平", "莫梅", "鲁萍"]


def test_an_excel_error_cell_reads_as_its_error_text_not_as_blank():
    from tests.corpus.make_corpus import sheet, xlsx_bytes

    wb = sheet(["工号", "日期", "事项编码", "分值"], [["0001", "2026-03-05", "praise_city"]])
    wb.active["D2"] = "=1/0"
    data = xlsx_bytes(wb, {"D2": ("e", "#DIV/0!")})
    frame, _ = to_frame("adjustments", "adjustments.xlsx", data)
    assert frame.loc[0, "points"] == "#DIV/0!"


def test_xlsx_cells_of_every_type_read_as_a_csv_export_writes_them():
    # converted once per distinct value: 1, 1.0 and True are one value to Python, and one text
    values = [1, 1.0, True, "1", 2.5, False, 0, dt.datetime(2026, 3, 5, 8, 30), None, " x "]
    wb = openpyxl.Workbook()
    wb.active.append(["工号", "日期", "事项编码", "说明"])
    for i, v in enumerate(values):
        wb.active.append([f"{i:04d}", dt.date(2026, 3, 5), "praise_city", v])
    buf = io.BytesIO()
    wb.save(buf)
    frame, _ = to_frame("adjustments", "adjustments.xlsx", buf.getvalue())
    assert frame["note"].tolist() == [
        "1",
        "1",
        "1",
        "1",
        "2.5",
        "0",
        "0",
        "2026-03-05 08:30:00",
        "",
        "x",
    ]
    assert frame["date"].tolist() == ["2026-03-05"] * len(values)


@pytest.mark.parametrize("piece", [1, 3, 1 << 22])
def test_formulas_and_errors_are_found_wherever_the_sheet_xml_is_cut(monkeypatch, piece):
    # the sheet's XML is scanned in pieces; a mark cut between pieces must still be seen
    from tests.corpus.make_corpus import sheet, xlsx_bytes

    monkeypatch.setattr("etl.read._PIECE", piece)
    wb = sheet(["工号", "日期", "事项编码", "分值"], [["0001", "2026-03-05", "praise_city"]])
    wb.active["D2"] = "=1/0"
    frame, _ = to_frame("adjustments", "a.xlsx", xlsx_bytes(wb, {"D2": ("e", "#DIV/0!")}))
    assert frame.loc[0, "points"] == "#DIV/0!"
    with pytest.raises(UnreadableFile, match="never computed .first at D2"):
        to_frame("adjustments", "a.xlsx", xlsx_bytes(wb))
