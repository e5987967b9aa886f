"""Bonus allocation tables (奖金分配表) for finance: ``bonus-<unit_id>.xlsx`` and ``.csv``.

One table per unit and bonus period, built from ``mart_bonus_allocation`` (interfaces.md) and
the people of the unit. Money stays exact: amounts travel as integer cents and as ``Decimal``
yuan; the XLSX holds them as numbers (the float nearest to cents/100, which rounds back to the
same cents), the CSV as plain ``1234.56`` text. A table whose rows do not add up to the pool
exactly is never written.

Both writers are deterministic: the same inputs give the same bytes. For the XLSX this needs two
fixes over a plain ``Workbook.save``, which stamps the current time into ``docProps/core.xml``
(``modified``) and into every zip member's header: here the document properties ``created`` and
``modified`` are ``header.generated_at`` and the zip members carry that same timestamp, so two
workbooks differ only when ``generated_at`` does. An aware ``generated_at`` is converted to UTC;
a naive one is taken to be UTC already (the document properties are UTC by definition).
"""

from __future__ import annotations

import csv
import io
import unicodedata
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.utils import get_column_letter
from openpyxl.writer.excel import ExcelWriter

from reports.files import write_atomic

__all__ = [
    "AMOUNT_FORMAT",
    "COLUMNS",
    "CSV_COLUMNS",
    "SHEET_TITLE",
    "WEIGHT_FORMAT",
    "BonusHeader",
    "bonus_rows",
    "write_csv",
    "write_xlsx",
]

AMOUNT = "金额（元）"
COLUMNS = ["序号", "人员编号", "姓名", "部门", "类别", "等次", "权重", AMOUNT]
CSV_COLUMNS = ["方案编号", "期间", "单位编号", *COLUMNS]
TEXT_COLUMNS = ["人员编号", "姓名", "部门", "类别", "等次"]
TOTAL_LABEL = "合计"
NO_GRADE = "—"
SHEET_TITLE = "奖金分配"
AMOUNT_FORMAT = "¥#,##0.00"
WEIGHT_FORMAT = "0.0000"
CREATOR = "kaohe"
# characters that make a spreadsheet treat a CSV cell as a formula (OWASP "CSV injection")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_ZIP_EPOCH = datetime(1980, 1, 1)  # the earliest time a zip member header can hold


@dataclass(frozen=True)
class BonusHeader:
    """What the table is about; printed above the rows and repeated in every CSV row."""

    scheme_id: str
    scheme_name: str
    unit_id: str
    unit_name: str
    period: str  # "2026", "2026-Q1", …
    period_label: str  # "2026年度", given by the caller
    pool_cents: int
    revision: int
    method_label: str  # "按等次系数" / "按得分占比"
    generated_at: datetime  # the workbook's created/modified timestamps


# ---------------------------------------------------------------------------------------------
# rows


def _text(series: pd.Series) -> pd.Series:
    """Text cells: missing → "", everything else its str()."""
    return series.astype(object).where(series.notna(), "").map(str)


def _yuan(cents: pd.Series) -> pd.Series:
    """Exact Decimal yuan with two places from integer cents (no float on the way)."""
    text = (cents // 100).astype(str) + "." + (cents % 100).astype(str).str.zfill(2)
    return text.map(Decimal)


def bonus_rows(
    allocation: pd.DataFrame, people: pd.DataFrame, grade_names: Mapping[str, str]
) -> pd.DataFrame:
    """The rows of one unit's bonus table, largest amount first, then by person_id.

    ``allocation``: unit_id, person_id, grade (code or None), weight, amount_cents (one unit).
    ``people``: person_id, name, dept_name, category, post_coefficient.
    Returns the columns ``COLUMNS``; 金额（元） holds ``Decimal`` yuan (cents/100 exactly), 等次 the
    grade's name from ``grade_names`` ("—" without a grade). Raises ValueError for a person
    missing from ``people`` (or listed twice), a grade without a name, more than one unit, a
    person allocated twice, or amounts/weights that are missing, negative or not whole cents.
    """
    need = {"unit_id", "person_id", "grade", "weight", "amount_cents"}
    if missing_cols := need - set(allocation.columns):
        raise ValueError(f"allocation lacks columns {sorted(missing_cols)}")
    need_people = {"person_id", "name", "dept_name", "category"}
    if missing_cols := need_people - set(people.columns):
        raise ValueError(f"people lacks columns {sorted(missing_cols)}")

    alloc = allocation.loc[:, ["unit_id", "person_id", "grade", "weight", "amount_cents"]].copy()
    alloc["person_id"] = _text(alloc["person_id"])
    units = alloc["unit_id"].dropna().unique()
    if len(units) > 1:
        raise ValueError(f"allocation spans several units: {sorted(map(str, units))}")
    if (dup := alloc["person_id"][alloc["person_id"].duplicated()]).any():
        raise ValueError(f"allocation lists persons more than once: {sorted(set(dup))}")

    cents = pd.to_numeric(alloc["amount_cents"], errors="coerce")
    bad = cents.isna() | (cents < 0) | (cents != cents.round())
    if bad.any():
        raise ValueError(
            "amount_cents must be non-negative whole cents; bad for "
            f"{sorted(alloc.loc[bad, 'person_id'])}"
        )
    alloc["amount_cents"] = cents.astype("int64")
    weight = pd.to_numeric(alloc["weight"], errors="coerce").astype("float64")
    bad = weight.isna() | (weight < 0) | ~np.isfinite(weight)
    if bad.any():
        raise ValueError(
            f"weight must be a finite number ≥ 0; bad for {sorted(alloc.loc[bad, 'person_id'])}"
        )
    alloc["weight"] = weight

    who = people.loc[:, ["person_id", "name", "dept_name", "category"]].copy()
    who["person_id"] = _text(who["person_id"])
    who = who[who["person_id"].isin(alloc["person_id"])]
    if (dup := who["person_id"][who["person_id"].duplicated()]).any():
        raise ValueError(f"people lists persons more than once: {sorted(set(dup))}")
    if (absent := ~alloc["person_id"].isin(who["person_id"])).any():
        raise ValueError(
            "persons with a bonus are missing from people: "
            f"{sorted(alloc.loc[absent, 'person_id'])}"
        )

    grade = alloc["grade"].astype(object).where(alloc["grade"].notna(), None)
    coded = grade.notna()
    named = grade[coded].astype(str).map(dict(grade_names))
    if (unnamed := named.isna()).any():
        raise ValueError(f"grades without a name: {sorted(set(map(str, grade[coded][unnamed])))}")
    alloc["等次"] = NO_GRADE
    alloc.loc[coded, "等次"] = named

    table = alloc.merge(who, on="person_id", how="left", validate="one_to_one")
    table = table.sort_values(
        ["amount_cents", "person_id"], ascending=[False, True], kind="mergesort"
    ).reset_index(drop=True)
    out = pd.DataFrame(
        {
            "序号": pd.RangeIndex(1, len(table) + 1),
            "人员编号": table["person_id"],
            "姓名": _text(table["name"]),
            "部门": _text(table["dept_name"]),
            "类别": _text(table["category"]),
            "等次": _text(table["等次"]),
            "权重": table["weight"].astype("float64"),
            AMOUNT: _yuan(table["amount_cents"]).astype(object),
        },
        columns=COLUMNS,
    )
    return out


# ---------------------------------------------------------------------------------------------
# shared checks and file handling


def _cents_of(value: object) -> int:
    """Whole cents of an amount in yuan (Decimal, int or numeric text); ValueError otherwise."""
    if isinstance(value, float):
        raise ValueError(f"amount {value!r} is a float; pass Decimal yuan (bonus_rows does)")
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value))
    except ArithmeticError:
        raise ValueError(f"amount {value!r} is not a number") from None
    cents = amount * 100 if amount.is_finite() else Decimal(-1)
    if cents != cents.to_integral_value() or cents < 0:
        raise ValueError(f"amount {value!r} is not a non-negative whole number of cents")
    return int(cents)


def _checked(header: BonusHeader, rows: pd.DataFrame) -> list[int]:
    """The rows' amounts in cents, after making sure they sum to the pool exactly."""
    if missing := [c for c in COLUMNS if c not in rows.columns]:
        raise ValueError(f"rows lack columns {missing}")
    if not isinstance(header.pool_cents, int) or header.pool_cents < 0:
        raise ValueError(f"pool_cents must be a non-negative int, not {header.pool_cents!r}")
    cents = [_cents_of(v) for v in rows[AMOUNT]]
    if sum(cents) != header.pool_cents:
        raise ValueError(
            f"bonus table of unit {header.unit_id} for {header.period}: rows sum to "
            f"{sum(cents)} cents, the pool is {header.pool_cents} cents; not written"
        )
    return cents


def _yuan_text(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def _atomic_write(path: Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, data, sync=True)


def _utc_naive(moment: datetime) -> datetime:
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.replace(microsecond=0)


# ---------------------------------------------------------------------------------------------
# XLSX


def _display_width(text: str) -> int:
    """Columns a text takes on screen: CJK (wide/fullwidth) characters count twice."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _put_text(cell, text: str) -> None:
    """Store ``text`` as a string cell: openpyxl would make '=…' a formula otherwise. A text
    that starts like a formula (= + - @ tab CR) also gets Excel's quote prefix, what Excel itself
    stores for a cell typed with a leading apostrophe: shown as is, and still text when someone
    edits the cell and presses Enter (a plain string cell would then turn into the formula).
    Control characters XML cannot hold (an Alt-Enter pasted from another sheet is fine, \x01 is
    not) become spaces, so one odd name never stops a unit's table."""
    cell.value = ILLEGAL_CHARACTERS_RE.sub(" ", text)
    cell.data_type = "s"
    if cell.value.startswith(_FORMULA_START):
        cell.quotePrefix = True


def _version_label(revision: int) -> str:
    return f"第{revision}版" if revision <= 1 else f"更正第{revision}版"


def _period_text(header: BonusHeader) -> str:
    if header.period_label == header.period:
        return header.period
    return f"{header.period_label}（{header.period}）"


def _workbook_bytes(wb: Workbook, moment: datetime) -> bytes:
    """The workbook's bytes with every timestamp set to ``moment`` (see module docstring)."""
    raw = io.BytesIO()
    # ExcelWriter rather than Workbook.save: save() overwrites properties.modified with now()
    ExcelWriter(wb, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED, allowZip64=True)).save()
    stamp = max(moment, _ZIP_EPOCH).timetuple()[:6]
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(raw.getvalue())) as src,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst,
    ):
        for info in src.infolist():
            member = zipfile.ZipInfo(info.filename, date_time=stamp)
            member.compress_type = zipfile.ZIP_DEFLATED
            member.create_system = 3
            member.external_attr = 0o644 << 16
            dst.writestr(member, src.read(info.filename))
    return out.getvalue()


def write_xlsx(path: Path, header: BonusHeader, rows: pd.DataFrame) -> Path:
    """Write the bonus table as an Excel workbook (sheet "奖金分配"), atomically; returns path.

    Layout: title, the header block (方案, 单位, 期间, 奖金池, 分配方式, 版本), an empty row, the
    bold table header (repeated on every printed page, panes frozen below it), one row per
    person and a 合计 row whose amount is a number (a value, not a formula) equal to the pool.
    Amounts are numbers formatted ¥#,##0.00, weights 0.0000; ids and all texts are string cells,
    those that start like a formula with Excel's quote prefix (``_put_text``).
    Raises ValueError, writing nothing, unless the rows sum to ``header.pool_cents`` exactly.
    """
    cents = _checked(header, rows)
    moment = _utc_naive(header.generated_at)
    ncols = len(COLUMNS)
    last = get_column_letter(ncols)

    wb = Workbook()
    ws = wb.active
    ws.title = SHEET_TITLE
    props = wb.properties
    props.creator = CREATOR
    props.lastModifiedBy = CREATOR
    props.title = f"{header.scheme_name} 奖金分配表"
    props.created = moment
    props.modified = moment

    bold = Font(bold=True)
    thin = Side(style="thin", color="808080")
    grid = Border(left=thin, right=thin, top=thin, bottom=thin)
    head_fill = PatternFill("solid", fgColor="D9E1F2")
    center = Alignment(horizontal="center", vertical="center")
    widths = [_display_width(c) for c in COLUMNS]

    # title and header block
    title = ws.cell(row=1, column=1)
    _put_text(title, f"{header.scheme_name} 奖金分配表")
    title.font = Font(bold=True, size=14)
    title.alignment = center
    ws.merge_cells(f"A1:{last}1")
    ws.row_dimensions[1].height = 24
    block: list[tuple[str, str | float]] = [
        ("方案", f"{header.scheme_name}（{header.scheme_id}）"),
        ("单位", f"{header.unit_name}（{header.unit_id}）"),
        ("期间", _period_text(header)),
        ("奖金池", header.pool_cents / 100),
        ("分配方式", header.method_label),
        ("版本", _version_label(header.revision)),
    ]
    for r, (label, value) in enumerate(block, start=2):
        label_cell = ws.cell(row=r, column=1)
        _put_text(label_cell, label)
        label_cell.font = bold
        value_cell = ws.cell(row=r, column=2)
        if isinstance(value, str):
            _put_text(value_cell, value)
        else:
            value_cell.value = value
            value_cell.number_format = AMOUNT_FORMAT
        value_cell.alignment = Alignment(horizontal="left")
        ws.merge_cells(start_row=r, start_column=2, end_row=r, end_column=ncols)
    widths[0] = max(widths[0], *(_display_width(label) for label, _ in block))

    # table header
    head = len(block) + 3  # title, block, one empty row
    for c, name in enumerate(COLUMNS, start=1):
        cell = ws.cell(row=head, column=c)
        _put_text(cell, name)
        cell.font = bold
        cell.fill = head_fill
        cell.alignment = center
        cell.border = grid

    # one row per person
    amount_col = COLUMNS.index(AMOUNT) + 1
    weight_col = COLUMNS.index("权重") + 1
    text_cols = [COLUMNS.index(name) + 1 for name in TEXT_COLUMNS]
    texts = [rows[name].tolist() for name in TEXT_COLUMNS]
    for i, (seq, weight, amount) in enumerate(
        zip(rows["序号"].tolist(), rows["权重"].tolist(), cents, strict=True)
    ):
        r = head + 1 + i
        ws.cell(row=r, column=1, value=int(seq)).alignment = center
        for c, column in zip(text_cols, texts, strict=True):
            value = "" if column[i] is None or column[i] != column[i] else str(column[i])
            if value:  # an empty text stays an empty cell
                _put_text(ws.cell(row=r, column=c), value)
                widths[c - 1] = max(widths[c - 1], _display_width(value))
        w = ws.cell(row=r, column=weight_col, value=float(weight))
        w.number_format = WEIGHT_FORMAT
        a = ws.cell(row=r, column=amount_col, value=amount / 100)
        a.number_format = AMOUNT_FORMAT
        for c in range(1, ncols + 1):
            ws.cell(row=r, column=c).border = grid

    # total: a value, so readers without a calculation engine see it
    total_row = head + 1 + len(cents)
    label_cell = ws.cell(row=total_row, column=1)
    _put_text(label_cell, TOTAL_LABEL)
    label_cell.font = bold
    label_cell.alignment = center
    ws.merge_cells(start_row=total_row, start_column=1, end_row=total_row, end_column=ncols - 1)
    total = ws.cell(row=total_row, column=amount_col, value=header.pool_cents / 100)
    total.number_format = AMOUNT_FORMAT
    total.font = bold
    for c in range(1, ncols + 1):
        ws.cell(row=total_row, column=c).border = grid

    # widths (Chinese text counts double), numbers sized for their formats
    widths[weight_col - 1] = max(widths[weight_col - 1], 8)
    widths[amount_col - 1] = max(widths[amount_col - 1], len(f"¥{header.pool_cents / 100:,.2f}"))
    for c, width in enumerate(widths, start=1):
        ws.column_dimensions[get_column_letter(c)].width = min(max(width + 2, 6), 60)

    ws.freeze_panes = ws.cell(row=head + 1, column=1)
    ws.print_title_rows = f"{head}:{head}"
    ws.page_setup.orientation = "portrait"
    ws.page_setup.paperSize = ws.PAPERSIZE_A4
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0
    ws.sheet_properties.pageSetUpPr.fitToPage = True
    ws.print_options.horizontalCentered = True

    return _atomic_write(path, _workbook_bytes(wb, moment))


# ---------------------------------------------------------------------------------------------
# CSV


def _safe(text: object) -> str:
    """A text cell that no spreadsheet will run: formula starters get a leading quote."""
    value = "" if text is None or text != text else str(text)
    return "'" + value if value.startswith(_FORMULA_START) else value


def _weight_text(weight: float) -> str:
    """A weight as plain decimal text (no exponent, float noise beyond 10 places dropped)."""
    return f"{float(weight):.10f}".rstrip("0").rstrip(".")


def write_csv(path: Path, header: BonusHeader, rows: pd.DataFrame) -> Path:
    """Write the bonus table as CSV for finance, atomically; returns path.

    UTF-8 with BOM (Excel opens it as UTF-8), CRLF line endings, columns ``CSV_COLUMNS``; amounts
    as plain "1234.56" text, a last row with 姓名 = 合计 and the pool. Text cells starting with
    = + - @ tab or CR are prefixed with a single quote; numbers (序号, 权重, 金额) never are.
    Raises ValueError, writing nothing, unless the rows sum to ``header.pool_cents`` exactly.
    """
    cents = _checked(header, rows)
    lead = [_safe(header.scheme_id), _safe(header.period), _safe(header.unit_id)]
    buf = io.StringIO(newline="")
    out = csv.writer(buf)  # excel dialect: CRLF, minimal quoting
    out.writerow(CSV_COLUMNS)
    texts = [rows[name].tolist() for name in TEXT_COLUMNS]
    for i, (seq, weight, amount) in enumerate(
        zip(rows["序号"].tolist(), rows["权重"].tolist(), cents, strict=True)
    ):
        out.writerow(
            [
                *lead,
                str(int(seq)),
                *(_safe(column[i]) for column in texts),
                _weight_text(weight),
                _yuan_text(amount),
            ]
        )
    out.writerow([*lead, "", "", TOTAL_LABEL, "", "", "", "", _yuan_text(header.pool_cents)])
    return _atomic_write(path, buf.getvalue().encode("utf-8-sig"))
