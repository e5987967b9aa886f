"""Reading a landed extract into a table of canonical columns.

Chinese office software writes UTF-8 with or without BOM, GB18030/GBK, full-width digits and
letters, Chinese headers and three date forms; this module turns all of that into one shape: every
cell a normalised string (empty string for blank), canonical column names, and `_line`, the row's
number as a spreadsheet shows it (header = line 1).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import unicodedata
from decimal import Decimal

import pandas as pd

from etl.sources import COLUMNS, alias_map

LINE = "_line"
FILE = "_file"


class UnreadableFile(ValueError):
    """The file cannot be read as a table at all: the source is rejected."""


def decode(data: bytes) -> str:
    """BOM, then strict UTF-8, then GB18030 (a superset of GBK that also has names like 䶮)."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8")
    for enc in ("utf-8", "gb18030"):
        try:
            return data.decode(enc)
        except UnicodeDecodeError:
            continue
    raise UnreadableFile("encoding is neither UTF-8 nor GB18030")


def nfkc(s: str) -> str:
    return unicodedata.normalize("NFKC", s).strip()


def cell_text(v: object) -> str:
    """A typed cell (Excel, SQL, JSON) as the text a CSV export would carry.

    Typed per value, never per column: pandas turns an integer column with a NULL into floats, and
    a `1.0` flag would be quarantined as not 0/1. Decimals stay exact (a NUMERIC(20) id must not
    pass through a float).
    """
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, Decimal):
        if not v.is_finite():
            return ""
        return str(int(v)) if v == v.to_integral_value() else format(v.normalize(), "f")
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else str(v)
    if isinstance(v, dt.datetime):
        return v.date().isoformat() if v.time() == dt.time(0) else v.isoformat(sep=" ")
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, dict | list):
        return json.dumps(v, ensure_ascii=False, sort_keys=True)
    return str(v)


def read_grid(name: str, data: bytes) -> pd.DataFrame:
    """All rows (header first) of a CSV or the first XLSX sheet, every cell a string."""
    if not data.strip():
        raise UnreadableFile("the file is empty")
    if name.lower().endswith(".xlsx"):
        try:
            from python_calamine import CalamineWorkbook

            wb = CalamineWorkbook.from_filelike(io.BytesIO(data))
            rows = wb.get_sheet_by_index(0).to_python(skip_empty_area=False)
        except Exception as exc:  # calamine raises its own error types for every kind of damage
            raise UnreadableFile(f"not a readable XLSX workbook ({exc})") from exc
        return pd.DataFrame([[cell_text(v) for v in row] for row in rows], dtype=object)
    text = decode(data)
    try:
        return pd.read_csv(
            io.StringIO(text),
            header=None,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=False,
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error) as exc:
        raise UnreadableFile(f"not a readable CSV file ({exc})") from exc


def normalise(col: pd.Series) -> pd.Series:
    """NFKC and strip every cell, computed once per distinct value (columns repeat a lot)."""
    codes, uniques = pd.factorize(col.fillna("").astype(str))
    clean = pd.Index([nfkc(u) for u in uniques], dtype=object)
    return pd.Series(
        clean.take(codes) if len(uniques) else [""] * len(col), index=col.index, dtype=object
    )


def to_frame(source: str, name: str, data: bytes) -> tuple[pd.DataFrame, list[str]]:
    """Canonical string table of one file, and the required columns it lacks.

    Columns the source does not know are dropped; absent optional columns are added empty, so every
    later step sees the same shape whatever the file carried. Blank rows are skipped but keep
    counting lines, so `_line` is what the operator sees in Excel.
    """
    grid = read_grid(name, data)
    if grid.empty:
        raise UnreadableFile("the file is empty")
    aliases = alias_map(source)
    header = [aliases.get(nfkc(str(h)).lower(), "") for h in grid.iloc[0]]
    seen = [h for h in header if h]
    if len(seen) != len(set(seen)):
        dup = sorted({h for h in seen if seen.count(h) > 1})
        raise UnreadableFile(f"column given twice: {', '.join(dup)}")
    body = grid.iloc[1:]
    out = pd.DataFrame(index=body.index)
    for col in COLUMNS[source]:
        out[col.name] = normalise(body[header.index(col.name)]) if col.name in header else ""
    out[LINE] = (body.index + 1).astype("int64")
    out[FILE] = name
    known = [c for c in out.columns if c not in (LINE, FILE)]
    out = out[out[known].ne("").any(axis=1)]
    missing = [c.name for c in COLUMNS[source] if c.header_required and c.name not in header]
    return out.reset_index(drop=True), missing
