"""Reading extracts as Chinese office software writes them (sources.md)."""

from __future__ import annotations

import datetime as dt
import io

import openpyxl
import pytest

from etl.read import UnreadableFile, to_frame

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


@pytest.mark.parametrize("data", [b"", b"   \n", b"\xff\xfe\x00\x01garbage\x80\x81"])
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
