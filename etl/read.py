"""Reading a landed extract into a table of canonical columns.

Chinese office software writes UTF-8 with or without BOM, GB18030/GBK, full-width digits and
letters, Chinese headers and three date forms; this module turns all of that into one shape: every
cell a normalised string (empty string for blank), canonical column names, and `_line`, the row's
number as a spreadsheet shows it (header = line 1).

A row that cannot be read as the header lays it out (a CSV row with more cells than the header)
is kept with `_row_error` saying why, so that coercion sets that one row aside rather than the
file being refused; a file that cannot be read at all (empty, UTF-16, mixed encodings, cut off
inside a quote, a damaged workbook) raises `UnreadableFile` with a sentence for the operator.

The text columns are pandas Categoricals: an extract repeats a few values many times (dates,
statuses, person ids), so every later step (type conversion, flags, rules, Great Expectations'
null and set checks) works once per distinct value and spreads the answer by code.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import re
import unicodedata
import xml.etree.ElementTree as ET
import zipfile
import zlib
from decimal import Decimal

import numpy as np
import pandas as pd
from pandas.api.types import union_categoricals

from etl.sources import COLUMNS, alias_map

LINE = "_line"
FILE = "_file"
ROW_ERROR = "_row_error"  # why a row cannot be read as the header lays it out; '' for most rows
BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
# zero-width characters that copy and paste leaves in cells: invisible, never part of a value
_INVISIBLE = str.maketrans("", "", "\u200b\u2060\ufeff")


class UnreadableFile(ValueError):
    """The file cannot be read as a table at all: the source is rejected."""


def _line_of(data: bytes, offset: int) -> int:
    """The line (of the text, as an editor counts) holding byte `offset`."""
    return data.count(b"\n", 0, offset) + 1


def _utf8_signs(data: bytes) -> tuple[int, int, int]:
    """How much of a file that is not valid UTF-8 still looks like UTF-8, counted in numpy.

    Returns the multi-byte UTF-8 characters (a lead byte and its continuation bytes), the bytes
    >= 0x80 outside them, and the offset of the first three Chinese characters in UTF-8 in a
    row (-1 if none; the counts then stop at its chunk). GB18030 text makes few of the first
    and none of the last: in GB18030 those bytes are rare level-2 characters (measured on the
    seed documents: not even two in a row). Chunks of 4 MiB keep the temporary arrays small; the
    counts are approximate at chunk edges.
    """
    valid = stray = 0
    step = 1 << 22
    for start in range(0, len(data), step):
        a = np.frombuffer(data, np.uint8, count=min(step + 8, len(data) - start), offset=start)
        n = min(step, len(a))  # what starts in this chunk; the 8 bytes after are look-ahead
        cont = (a & 0xC0) == 0x80
        c1 = np.append(cont[1:], False)
        c12 = c1 & np.append(cont[2:], [False, False])
        two = (a >= 0xC2) & (a <= 0xDF) & c1
        three = (a >= 0xE0) & (a <= 0xEF) & c12
        four = (a >= 0xF0) & (a <= 0xF4) & c12 & np.append(cont[3:], [False] * 3)
        k2, k3, k4 = (int(np.count_nonzero(x[:n])) for x in (two, three, four))
        valid += k2 + k3 + k4
        stray += int(np.count_nonzero(a[:n] >= 0x80)) - 2 * k2 - 3 * k3 - 4 * k4
        cjk = (a >= 0xE4) & (a <= 0xE9) & c12  # U+4E00..U+9FFF
        run = np.flatnonzero((cjk[:-6] & cjk[3:-3] & cjk[6:])[:n])
        if len(run):
            return valid, max(stray, 0), start + int(run[0])
    return valid, max(stray, 0), -1


def _one_encoding(data: bytes, error: UnicodeDecodeError) -> None:
    """Refuse a file that is not valid UTF-8 but holds UTF-8 text: read as GB18030 (which takes
    almost any bytes) its UTF-8 part would become mojibake, silently.

    Mostly UTF-8 (a UTF-8 export with a row pasted from a GBK one, a stray Windows-1252 byte, a
    file cut off in the middle of a character), or GB18030 with a run of Chinese in UTF-8 (a
    UTF-8 row in a GBK export): `_utf8_signs`.
    """
    valid, stray, run = _utf8_signs(data)
    if valid >= 8 and valid > 2 * stray:
        if error.reason == "unexpected end of data":
            raise UnreadableFile(
                "it ends in the middle of a character: the file was cut off; deliver it whole"
            )
        raise UnreadableFile(
            f"it is UTF-8, but line {_line_of(data, error.start)} is not (byte {error.start}): "
            "the file mixes encodings; save it again in one encoding"
        )
    if run >= 0:
        raise UnreadableFile(
            f"it mixes encodings: line {_line_of(data, run)} is UTF-8, the rest is not; save it "
            "again in one encoding"
        )


def decode(data: bytes) -> str:
    """BOM, then strict UTF-8, then GB18030 (a superset of GBK that also has names like 䶮).

    A file is one encoding: one that mixes UTF-8 with another is refused (`_one_encoding`), since
    GB18030 would read it without an error and garble the UTF-8 part.
    """
    if data.startswith(BOM):
        try:
            return data[3:].decode("utf-8")
        except UnicodeDecodeError as exc:
            where = exc.start + len(BOM)
            raise UnreadableFile(
                f"it is marked as UTF-8 (a BOM), but line {_line_of(data, where)} is not UTF-8 "
                f"(byte {where}): the file mixes encodings or was cut off in the middle of a "
                "character; save it again as UTF-8"
            ) from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        _one_encoding(data, exc)
    try:
        return data.decode("gb18030")
    except UnicodeDecodeError as exc:
        raise UnreadableFile(
            f"its encoding is neither UTF-8 nor GB18030: line {_line_of(data, exc.start)} (byte "
            f"{exc.start}) is neither; the file may be cut off in the middle of a character or "
            "be in another encoding; save it as UTF-8"
        ) from exc


def nfkc(s: str) -> str:
    """A cell as compared: NFKC (full-width to half-width), no zero-width characters, stripped."""
    return unicodedata.normalize("NFKC", s).translate(_INVISIBLE).strip()


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


EXTRA = "_extra"  # read_grid's column of a CSV row's cells beyond the header's last column
_PARSE = dict(
    header=None,
    dtype=object,  # plain str cells: normalise factorizes them before anything else
    keep_default_na=False,
    na_filter=False,
    skip_blank_lines=False,
)
_WIDER = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")
_OPEN_QUOTE = re.compile(r"EOF inside string starting at row (\d+)")


def read_grid(name: str, data: bytes) -> pd.DataFrame:
    """All rows (header first) of a CSV or the first visible XLSX sheet, every cell a string.

    A CSV row with more cells than the header does not make the file unreadable: the grid keeps
    the header's width and `EXTRA` holds what such a row has beyond it ('' on other rows), so
    `to_frame` can set that one row aside.
    """
    body = data[3:] if data.startswith(BOM) else data
    if not body or body.isspace():  # `not data.strip()` without copying the file
        raise UnreadableFile("the file is empty")
    if name.lower().endswith(".xlsx"):
        return _xlsx_grid(data)
    if data.startswith(UTF16_BOMS):
        raise UnreadableFile(
            "it is UTF-16 (what Excel saves as Unicode Text), not a CSV in UTF-8 or GB18030: "
            "save it as CSV UTF-8"
        )
    if b"\x00" in data:
        raise UnreadableFile(
            "it holds NUL bytes, which no CSV text does: it is UTF-16 without a BOM, or not a "
            "text file at all"
        )
    utf8 = _utf8(data)
    try:
        return pd.read_csv(io.BytesIO(utf8), encoding="utf-8", **_PARSE)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error) as exc:
        problem = str(exc)
    if _WIDER.search(problem):
        return _wide_csv_grid(utf8, problem)
    raise UnreadableFile(_csv_problem(problem))


def _csv_problem(problem: str) -> str:
    """The CSV parser's complaint as the operator can act on it (spreadsheet line numbers)."""
    if m := _OPEN_QUOTE.search(problem):
        return (
            f"a quoted value that starts on line {int(m.group(1)) + 1} is never closed: the "
            "file was cut off, or a quote is missing"
        )
    if m := _WIDER.search(problem):
        return f"line {m.group(2)} has {m.group(3)} cells where the header has {m.group(1)}"
    problem = problem.replace("Error tokenizing data. C error: ", "").strip()
    return f"not a readable CSV file: {problem}"


def _wide_csv_grid(utf8: bytes, problem: str) -> pd.DataFrame:
    """A CSV with rows wider than its header (the C parser refuses those): read again at the
    widest row's width (the widths from the csv module, only on this rare path), then fold what
    lies beyond the header into `EXTRA`, built for the wide rows only."""
    records = csv.reader(io.StringIO(utf8.decode("utf-8")))
    try:
        head = len(next(records, []))
        width = max(map(len, records), default=head)
    except csv.Error as exc:  # a cell beyond the module's field limit (131,072 characters)
        raise UnreadableFile(_csv_problem(problem)) from exc
    try:
        grid = pd.read_csv(io.BytesIO(utf8), encoding="utf-8", names=range(width), **_PARSE)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error) as exc:
        raise UnreadableFile(_csv_problem(str(exc))) from exc
    beyond = grid.iloc[:, head:].apply(lambda c: c.str.strip())
    wide = beyond.ne("").any(axis=1).to_numpy()
    grid = grid.iloc[:, :head].copy()
    grid[EXTRA] = ""
    if wide.any():
        cells = beyond[wide].to_numpy(dtype=object)
        used = width - np.argmax(cells[:, ::-1] != "", axis=1)  # up to the last filled cell
        texts = [" | ".join(c for c in row if c) for row in cells]  # the wide rows only
        grid.loc[wide, EXTRA] = [
            f"{n} cells where the header has {head} (beyond it: '{extra[:40]}'): a value "
            "with a comma must be quoted"
            for n, extra in zip(used, texts, strict=True)
        ]
    return grid


_TAG = rb"<(?:\w+:)?"  # an element of the sheet's XML, with or without a namespace prefix
# a cell holding a formula and no computed value (none, or empty and not a text result)
_FORMULA_ONLY = re.compile(
    _TAG + rb"c\b([^>]*)>\s*" + _TAG + rb"f\b[^>]*(?:/>|>[^<]*</(?:\w+:)?f>)\s*"
    rb"(?:" + _TAG + rb"v\s*/>|" + _TAG + rb"v>\s*</(?:\w+:)?v>)?\s*</(?:\w+:)?c>"
)
# a cell whose value is an Excel error (#N/A, #DIV/0! …), with or without its formula
_ERROR_CELL = re.compile(
    _TAG + rb'c\b([^>]*\bt="e"[^>]*)>\s*(?:' + _TAG + rb"f\b[^>]*(?:/>|>[^<]*</(?:\w+:)?f>))?"
    rb"\s*" + _TAG + rb"v>([^<]*)</(?:\w+:)?v>"
)
_REF = re.compile(rb'\br="([A-Z]{1,3})([0-9]+)"')


def _xlsx_grid(data: bytes) -> pd.DataFrame:
    """The first visible worksheet as strings, merged cells filled with their value.

    Visible, because a hidden sheet is not what the operator sees when opening the file (a
    lookup table or last month's data is often kept hidden in front). A merged range shows its
    value in every cell it covers (a unit name merged down its people), so each cell gets it.
    calamine reads an Excel error (#N/A) as an empty cell: such cells get their error text back
    from the sheet's XML, so the row is quarantined quoting it rather than read as blank.
    """
    try:
        from python_calamine import CalamineWorkbook, SheetTypeEnum, SheetVisibleEnum

        wb = CalamineWorkbook.from_filelike(io.BytesIO(data))
        shown = [
            m.name
            for m in wb.sheets_metadata
            if m.typ == SheetTypeEnum.WorkSheet and m.visible == SheetVisibleEnum.Visible
        ]
    except Exception as exc:  # calamine raises its own error types for every kind of damage
        raise UnreadableFile(_workbook_problem(exc)) from exc
    if not shown:
        raise UnreadableFile("the workbook has no visible worksheet")
    # before calamine reads the sheet: its XML and its cells are never in memory together, and
    # a workbook refused for its formulas is not read at all
    uncached, errors = _formula_cells(data, shown[0])
    if uncached:
        raise UnreadableFile(
            f"formulas in sheet '{shown[0]}' were never computed (first at {', '.join(uncached)}): "
            "the file was written by a program, not saved by Excel or WPS; open it in Excel or "
            "WPS and save it again"
        )
    try:
        sheet = wb.get_sheet_by_name(shown[0])
        rows = sheet.to_python(skip_empty_area=False)
        merged = sheet.merged_cell_ranges or []
    except Exception as exc:
        raise UnreadableFile(_workbook_problem(exc)) from exc
    if not rows:
        raise UnreadableFile(f"its first visible sheet, '{shown[0]}', is empty")
    grid = _cell_texts(rows)
    for (r, c), text in errors.items():
        if r < grid.shape[0] and c < grid.shape[1]:
            grid.iat[r, c] = text
    for (r0, c0), (r1, c1) in merged:  # ranges, not rows: a sheet has few
        if r0 < grid.shape[0] and c0 < grid.shape[1]:
            grid.iloc[r0 : r1 + 1, c0 : c1 + 1] = grid.iat[r0, c0]
    return grid


def _cell_texts(rows: list[list[object]]) -> pd.DataFrame:
    """calamine's typed cells as `cell_text` gives them, computed once per distinct value of a
    column (values equal in Python, 1, 1.0 and True, have one text)."""
    typed = pd.DataFrame(rows, dtype=object)
    out = {}
    for c in typed.columns:
        codes, uniques = pd.factorize(typed[c].to_numpy())
        texts = [v if type(v) is str else cell_text(v) for v in uniques]
        out[c] = np.array([*texts, ""], dtype=object)[codes]  # code -1, a None: ''
    return pd.DataFrame(out, columns=typed.columns, dtype=object)


def _workbook_problem(exc: Exception) -> str:
    """calamine's complaint as a sentence: its messages are terse ('t' for broken XML)."""
    kind, text = type(exc).__name__, str(exc)
    if kind == "PasswordError":
        return "the workbook is protected by a password: save it without one"
    if kind in ("XmlError", "ZipError"):
        return "not a readable XLSX workbook: its contents are damaged (cut off or altered)"
    if "detect file format" in text:
        return "not a readable XLSX workbook: not an Excel file at all, or cut off"
    return f"not a readable XLSX workbook ({text})"


# what a sheet's XML holds only when it has a formula (or a part named alike, such as a data
# validation's <formula1>), and only when it has an Excel error: without them, nothing to find
_FORMULA_MARKS = (b"<f", b":f>", b":f ", b":f/")
_ERROR_MARK = b't="e"'
_PIECE = 1 << 22  # bytes of a sheet's XML scanned at a time


def _marked(xml: bytes) -> bool:
    return _ERROR_MARK in xml or any(m in xml for m in _FORMULA_MARKS)


def _sheet_xml(data: bytes, sheet: str) -> bytes:
    """The XML of the worksheet named `sheet` if it may hold a formula or an error (the marks),
    else b''; b'' too for a workbook not laid out as the standard says (no xl/workbook.xml:
    then it is taken as calamine reads it). Most sheets have neither, so the part is first
    scanned in pieces, never held whole."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            # two small parts; expat (>= 2.4) caps entity expansion, ElementTree fetches nothing
            book = ET.fromstring(zf.read("xl/workbook.xml"))  # noqa: S314
            rels = ET.fromstring(zf.read("xl/_rels/workbook.xml.rels"))  # noqa: S314
            rid = next(
                v
                for el in book.iter()
                if el.tag.endswith("}sheet") and el.get("name") == sheet
                for k, v in el.attrib.items()
                if k.endswith("}id")
            )
            target = next(r.get("Target", "") for r in rels if r.get("Id") == rid)
            part = target.lstrip("/") if target.startswith("/") else "xl/" + target
            with zf.open(part) as xml:
                tail = b""  # the last bytes before `piece`: a mark may be cut between the two
                while piece := xml.read(_PIECE):
                    if _marked(piece) or _marked(tail + piece[:8]):
                        return zf.read(part)
                    tail = (tail + piece[-8:])[-8:]
            return b""
    except (zipfile.BadZipFile, KeyError, ET.ParseError, StopIteration, OSError, EOFError,
            zlib.error):  # fmt: skip
        return b""  # damage that calamine then reports


def _cell_index(ref: re.Match[bytes]) -> tuple[int, int]:
    """`C12` (as its two groups) -> (11, 2): row and column from 0."""
    col = 0
    for letter in ref.group(1):
        col = col * 26 + letter - 64
    return int(ref.group(2)) - 1, col - 1


def _formula_cells(data: bytes, sheet: str) -> tuple[list[str], dict[tuple[int, int], str]]:
    """What calamine cannot tell from an empty cell: the first cells holding a formula that was
    never computed (Excel and WPS always store the value; files written by programs often do
    not, and an optional column would silently take its default), and every cell holding an
    Excel error, with its text. Regular expressions over the sheet's XML, run only when the
    XML has a formula or an error at all."""
    xml = _sheet_xml(data, sheet)
    uncached: list[str] = []
    if any(m in xml for m in _FORMULA_MARKS):
        for m in _FORMULA_ONLY.finditer(xml):
            if b't="str"' in m.group(1):  # a formula that computed the empty text
                continue
            ref = _REF.search(m.group(1))
            uncached.append((ref.group(1) + ref.group(2)).decode() if ref else "?")
            if len(uncached) == 3:
                break
    errors: dict[tuple[int, int], str] = {}
    if _ERROR_MARK in xml:
        for m in _ERROR_CELL.finditer(xml):
            if ref := _REF.search(m.group(1)):
                errors[_cell_index(ref)] = m.group(2).decode("utf-8", "replace")
    return uncached, errors


def normalise(col: pd.Series) -> pd.Categorical:
    """`nfkc` of every cell, computed once per distinct value (columns repeat a lot).

    A missing cell (a short row) reads as ''. Cleaning can merge values (`ＡＢ` and `AB `), so the
    cleaned texts are factorized again into the categories.
    """
    codes, uniques = pd.factorize(col.to_numpy(dtype=object))
    clean = list(map(nfkc, map(str, uniques)))
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


def _text_column(values: np.ndarray) -> pd.Categorical:
    """A Categorical of object strings (pandas would infer its own string dtype)."""
    codes, categories = pd.factorize(values)
    return pd.Categorical.from_codes(
        codes, categories=pd.Index(categories, dtype=object), validate=False
    )


def _not_a_header(cells: list[str]) -> None:
    """Line 1 names no column of the source: say why when it plainly is no header at all."""
    texts = sorted({c for c in cells if c})
    if not texts:
        raise UnreadableFile("line 1 is blank: the header must be the first line")
    if len(texts) == 1:
        raise UnreadableFile(
            f"line 1 must be the header but holds one text only, '{texts[0][:60]}': a title "
            "above the header, or a file separated by ';' or tabs rather than commas?"
        )


def _filled(cat: pd.Categorical) -> np.ndarray:
    """True where a cell is not ''."""
    return cat.codes != cat.categories.get_indexer([""])[0]


def to_frame(source: str, name: str, data: bytes) -> tuple[pd.DataFrame, list[str]]:
    """Canonical string table of one file, and the required columns it lacks.

    Columns the source does not know are dropped; absent optional columns are added empty, so every
    later step sees the same shape whatever the file carried. Blank rows are skipped but keep
    counting lines, so `_line` is what the operator sees in Excel. Text columns are Categoricals
    of normalised strings (module docstring). `ROW_ERROR` says why a row cannot be read as the
    header lays it out (more cells than the header); coercion quarantines such rows.
    """
    grid = read_grid(name, data)
    if grid.empty:
        raise UnreadableFile("the file is empty")
    extra = grid.pop(EXTRA).to_numpy(dtype=object)[1:] if EXTRA in grid else None
    aliases = alias_map(source)
    cells = [nfkc(h) if isinstance(h, str) else "" for h in grid.iloc[0]]
    header = [aliases.get(c.lower(), "") for c in cells]
    seen = [h for h in header if h]
    if not seen:
        _not_a_header(cells)
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
    if extra is not None and (wide := extra != "").any():
        filled |= wide  # a row whose only cells lie beyond the header is no blank row
        out[ROW_ERROR] = _text_column(extra)
    else:
        out[ROW_ERROR] = _blank_column(rows)
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
