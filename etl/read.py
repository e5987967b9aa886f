"""Reading a landed extract into a table of canonical columns.

Chinese office software writes UTF-8 with or without BOM, GB18030/GBK, full-width digits and
letters, Chinese headers and three date forms; this module turns all of that into one shape: every
cell a normalised string (empty string for blank), canonical column names, and `_line`, the row's
number as a spreadsheet shows it (header = line 1).

The text columns are pandas Categoricals: an extract repeats a few values many times (dates,
statuses, person ids), so every later step (type conversion, flags, rules, Great Expectations'
null and set checks) works once per distinct value and spreads the answer by code.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import json
import math
import unicodedata
from decimal import Decimal

import numpy as np
import pandas as pd
from pandas.api.types import union_categoricals

from etl.sources import COLUMNS, alias_map

LINE = "_line"
FILE = "_file"
BOM = b"\xef\xbb\xbf"


class UnreadableFile(ValueError):
    """The file cannot be read as a table at all: the source is rejected."""


def decode(data: bytes) -> str:
    """BOM, then strict UTF-8, then GB18030 (a superset of GBK that also has names like 䶮)."""
    if data.startswith(BOM):
        try:
            return data[3:].decode("utf-8")
        except UnicodeDecodeError as exc:
            where = exc.start + len(BOM)
            raise UnreadableFile(f"marked UTF-8 (a BOM) but not UTF-8 at byte {where}") from exc
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


def _utf8(data: bytes) -> bytes:
    """The file as UTF-8 bytes, the encoding chosen exactly as `decode` chooses it.

    pandas parses UTF-8 bytes; handed text, it encodes it back to UTF-8 chunk by chunk, which
    costs more than the parse. So UTF-8 (the usual case) is only validated, and GB18030 re-encoded
    once.
    """
    body = data[3:] if data.startswith(BOM) else data
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return decode(data).encode("utf-8")  # GB18030, or the error decode raises
    return body


def read_grid(name: str, data: bytes) -> pd.DataFrame:
    """All rows (header first) of a CSV or the first XLSX sheet, every cell a string (None where
    an XLSX row is shorter than the sheet)."""
    if not data or data.isspace():  # `not data.strip()` without copying the file
        raise UnreadableFile("the file is empty")
    if name.lower().endswith(".xlsx"):
        try:
            from python_calamine import CalamineWorkbook

            wb = CalamineWorkbook.from_filelike(io.BytesIO(data))
            rows = wb.get_sheet_by_index(0).to_python(skip_empty_area=False)
        except Exception as exc:  # calamine raises its own error types for every kind of damage
            raise UnreadableFile(f"not a readable XLSX workbook ({exc})") from exc
        return pd.DataFrame([[cell_text(v) for v in row] for row in rows], dtype=object)
    utf8 = _utf8(data)
    try:
        return pd.read_csv(
            io.BytesIO(utf8),
            encoding="utf-8",
            header=None,
            dtype=object,  # plain str cells: normalise factorizes them before anything else
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=False,
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error) as exc:
        raise UnreadableFile(f"not a readable CSV file ({exc})") from exc


_NFKC = functools.partial(unicodedata.normalize, "NFKC")


def normalise(col: pd.Series) -> pd.Categorical:
    """NFKC and strip every cell, computed once per distinct value (columns repeat a lot).

    A missing cell (a short row) reads as ''. Cleaning can merge values (`ＡＢ` and `AB `), so the
    cleaned texts are factorized again into the categories.
    """
    codes, uniques = pd.factorize(col.to_numpy(dtype=object))
    clean = list(map(str.strip, map(_NFKC, map(str, uniques))))
    clean.append("")  # what code -1 (a missing cell) reads as
    remap, categories = pd.factorize(np.array(clean, dtype=object))
    return pd.Categorical.from_codes(
        remap[codes], categories=pd.Index(categories, dtype=object), validate=False
    )


def _blank_column(rows: int) -> pd.Categorical:
    """An optional column the file does not carry: '' on every row."""
    return pd.Categorical.from_codes(
        np.zeros(rows, dtype=np.int8), categories=pd.Index([""], dtype=object), validate=False
    )


def _filled(cat: pd.Categorical) -> np.ndarray:
    """True where a cell is not ''."""
    return cat.codes != cat.categories.get_indexer([""])[0]


def to_frame(source: str, name: str, data: bytes) -> tuple[pd.DataFrame, list[str]]:
    """Canonical string table of one file, and the required columns it lacks.

    Columns the source does not know are dropped; absent optional columns are added empty, so every
    later step sees the same shape whatever the file carried. Blank rows are skipped but keep
    counting lines, so `_line` is what the operator sees in Excel. Text columns are Categoricals
    of normalised strings (module docstring).
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
    rows = len(grid) - 1
    columns: dict[str, pd.Categorical] = {}
    filled = np.zeros(rows, dtype=bool)
    for col in COLUMNS[source]:
        if col.name in header:
            columns[col.name] = normalise(grid.iloc[1:, header.index(col.name)])
            filled |= _filled(columns[col.name])
        else:
            columns[col.name] = _blank_column(rows)
    out = pd.DataFrame(columns)
    out[LINE] = np.arange(2, rows + 2, dtype=np.int64)
    out[FILE] = name
    if not filled.all():
        out = out[filled].reset_index(drop=True)
    missing = [c.name for c in COLUMNS[source] if c.header_required and c.name not in header]
    return out, missing


def concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The tables of a source's files as one (several files of a source are one table).

    Categorical columns are united category by category: pd.concat would turn Categoricals with
    different categories into object columns and lose the per-value work of every later step.
    """
    if len(frames) == 1:
        return frames[0]
    out = {}
    for name in frames[0].columns:
        parts = [f[name] for f in frames]
        if isinstance(parts[0].dtype, pd.CategoricalDtype):
            out[name] = union_categoricals(parts)
        else:
            out[name] = pd.concat(parts, ignore_index=True)
    return pd.DataFrame(out)
