"""From canonical string tables to typed tables, vectorised.

A cell that cannot be read as its column's type does not stop anything: its row gets a reason in
`_parse_error` and is quarantined by the suite's rule on that column, with the cell quoted.
"""

from __future__ import annotations

import hmac

import numpy as np
import pandas as pd

from etl.read import ROW_ERROR
from etl.sources import COLUMNS

PARSE_ERROR = "_parse_error"
_DATE = (
    r"^(?P<y>\d{4})\s*[-/.年]\s*(?P<m>\d{1,2})\s*[-/.月]\s*(?P<d>\d{1,2})\s*日?"
    r"(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?$"
)
_FLAGS = {"0": 0, "1": 1, "否": 0, "是": 1, "false": 0, "true": 1, "n": 0, "y": 1}
EXCEL_EPOCH = pd.Timestamp("1899-12-30")
# what Excel shows (and a CSV export writes) for a formula that failed: never data, in any column
EXCEL_ERRORS = frozenset(
    ["#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A", "#GETTING_DATA",
     "#SPILL!", "#CALC!", "#FIELD!", "#BLOCKED!", "#CONNECT!", "#BUSY!", "#UNKNOWN!"]
)  # fmt: skip
# longest cell taken: a longer one is a paste accident (a whole document in a note), would
# overflow a printed notice, and Excel itself holds at most 32,767 characters in a cell
MAX_CELL = 2000


def _not_data(u: pd.Series) -> dict[str, pd.Series]:
    """Which distinct texts are never a value, whatever the column's type, by what they are."""
    return {
        "is an Excel error value, not data": u.isin(EXCEL_ERRORS),
        f"is longer than the {MAX_CELL} characters a cell may hold": u.str.len().gt(MAX_CELL),
    }


def _note(
    errors: pd.Series | None, bad: pd.Series, col: str, raw: pd.Series, what: str
) -> pd.Series:
    """Add a reason quoting the cell to the rows in `bad`; texts are built for those rows only.
    `errors` is None until a first reason: a clean table never holds a column of ''."""
    if errors is None:
        errors = pd.Series("", index=raw.index, dtype=object)
    had = errors[bad]
    errors = errors.copy()
    errors[bad] = had.where(had.eq(""), had + "; ") + (
        col + ": '" + raw[bad].astype(str).str.slice(0, 40) + "' " + what
    )
    return errors


def _distinct(raw: pd.Series) -> tuple[np.ndarray, pd.Series]:
    """Codes and distinct texts: a column repeats a few values many times, so each type
    conversion runs once per distinct text and is spread back by code. A Categorical (what
    `to_frame` gives) already is that pair."""
    if isinstance(raw.dtype, pd.CategoricalDtype):
        return raw.cat.codes.to_numpy(), pd.Series(raw.cat.categories, dtype=object)
    codes, uniq = pd.factorize(raw)
    return codes, pd.Series(uniq, dtype=object)


def _spread(
    values: pd.Series, codes: np.ndarray, index: pd.Index, dtype: str | None = None
) -> pd.Series:
    taken = values.to_numpy()[codes] if len(values) else np.array([], dtype=object)
    return pd.Series(taken, index=index, dtype=dtype)


def _spread_text(values: pd.Series, codes: np.ndarray, index: pd.Index) -> pd.Series:
    """Per-distinct texts (None = null) spread as a Categorical, so later steps stay per value.

    Several raw texts can give one value (`2026/3/5` and `2026-03-05`, `正常` and `present`), so the
    results are factorized again into the categories.
    """
    remap, categories = pd.factorize(values.to_numpy(dtype=object))
    taken = remap[codes] if len(remap) else np.full(len(codes), -1, dtype=np.int8)
    cat = pd.Categorical.from_codes(
        taken, categories=pd.Index(categories, dtype=object), validate=False
    )
    return pd.Series(cat, index=index)


def _error_column(errors: pd.Series | None, index: pd.Index) -> pd.Series:
    """`_parse_error` as a Categorical: null on clean rows, the joined reasons on the others."""
    codes = np.full(len(index), -1, dtype=np.int32)
    categories = np.array([], dtype=object)
    if errors is not None:
        bad = errors.ne("").to_numpy()
        codes[bad], categories = pd.factorize(errors.to_numpy(dtype=object)[bad])
    cat = pd.Categorical.from_codes(
        codes, categories=pd.Index(categories, dtype=object), validate=False
    )
    return pd.Series(cat, index=index)


def parse_dates(raw: pd.Series) -> pd.Series:
    """`2026-03-05`, `2026/3/5`, `2026年3月5日`, Excel serial days -> ISO text, or None.

    A month of attendance holds a few dozen distinct dates in ~20 rows each per person, so each
    distinct text is parsed once and the result spread back.
    """
    codes, uniq = pd.factorize(raw.astype(str))
    u = pd.Series(uniq, dtype=object)
    ymd = u.str.extract(_DATE).astype(float)
    stamp = pd.to_datetime(
        pd.DataFrame({"year": ymd["y"], "month": ymd["m"], "day": ymd["d"]}), errors="coerce"
    )
    # a serial day number; a fraction is the time of day (an Excel date-time as a number)
    serial = pd.to_numeric(u.where(u.str.fullmatch(r"\d{5}(?:\.\d+)?")), errors="coerce")
    stamp = stamp.fillna(EXCEL_EPOCH + pd.to_timedelta(np.floor(serial), unit="D"))
    iso = stamp.dt.strftime("%Y-%m-%d").astype(object).where(stamp.notna(), None)
    return pd.Series(iso.to_numpy()[codes] if len(uniq) else [], index=raw.index, dtype=object)


def coerce(
    source: str,
    frame: pd.DataFrame,
    levels: dict[str, float] | None = None,
    secret: bytes | None = None,
) -> pd.DataFrame:
    """Typed copy of `frame`: nulls for blanks, numbers as float, dates as ISO text, enum labels as
    codes, flags as 0/1; survey scores as points with the level kept; rater keys replaced by
    their keyed hash so no later step ever holds one. Text, date and enum columns come out as
    Categoricals (null for blank); `_clean` in etl.validate gives the warehouse its object columns.
    """
    out = frame.copy(deep=False)
    errors: pd.Series | None = None  # the reasons of unreadable cells, once there is one
    if ROW_ERROR in frame:  # a row wider than its header: said first, then its cells
        codes, texts = _distinct(frame[ROW_ERROR])
        if texts.ne("").any():
            errors = _spread(texts, codes, frame.index, object)
    for col in COLUMNS[source]:
        raw = frame[col.name]
        codes, u = _distinct(raw)
        blank = u.eq("")
        # never a value, whatever the column's type: said as what they are (but a rater key is
        # opaque, only ever hashed, and must not be quoted in a reason)
        unreadable = pd.Series(False, index=u.index)
        if col.name != "rater_key":
            for what, odd in _not_data(u).items():
                if odd.any():
                    bad = _spread(odd, codes, frame.index, bool)
                    errors = _note(errors, bad, col.name, raw, what)
                    unreadable |= odd
        what = None
        if col.kind in ("number", "integer"):
            val = pd.to_numeric(u.where(~blank & ~unreadable), errors="coerce").astype(float)
            bad = ~blank & ~unreadable & val.isna()
            if col.kind == "integer":
                bad |= val.notna() & (val % 1 != 0)
            what = "is not a number" if col.kind == "number" else "is not a whole number"
            out[col.name] = _spread(val.where(~bad), codes, frame.index, "float64")
        elif col.kind == "date":
            val = parse_dates(u)
            bad, what = ~blank & ~unreadable & val.isna(), "is not a date"
            out[col.name] = _spread_text(val, codes, frame.index)
        elif col.kind == "flag":
            val = u.str.lower().map(_FLAGS).astype(float)
            bad, what = ~blank & ~unreadable & val.isna(), "is not 0 or 1"
            out[col.name] = _spread(val, codes, frame.index, "Int64")
        elif col.kind == "enum":
            val = u.map(col.labels).fillna(u).where(~blank, None)
            out[col.name] = _spread_text(val, codes, frame.index)
        else:
            out[col.name] = _spread_text(u.where(~blank, None), codes, frame.index)
        if what is not None and bad.any():
            errors = _note(errors, _spread(bad, codes, frame.index, bool), col.name, raw, what)
    if source == "surveys":
        out, errors = _survey_scores(out, frame, errors, levels or {})
        codes, keys = _distinct(frame["rater_key"])
        hashed = pd.Series([_rater_hash(k, secret or b"") for k in keys], dtype=object)
        hashed = hashed.where(keys.ne(""), None)
        out["rater_hash"] = (
            _spread_text(hashed, codes, frame.index)
            if len(frame)
            else pd.Series([], index=frame.index, dtype=object)  # as the warehouse always got it
        )
        out = out.drop(columns=["rater_key"])
    if source == "roster":
        given = frame["post_coefficient"].ne("")  # an empty one is 1.0 on a row read whole
        out["post_coefficient"] = out["post_coefficient"].where(
            given if errors is None else given | errors.ne(""), 1.0
        )
    if source == "adjustments":
        out["count"] = out["count"].where(frame["count"].ne(""), 1.0)
    out[PARSE_ERROR] = _error_column(errors, frame.index)
    return out


def _survey_scores(
    out: pd.DataFrame, frame: pd.DataFrame, errors: pd.Series | None, levels: dict[str, float]
) -> tuple[pd.DataFrame, pd.Series | None]:
    raw = frame["score"]
    codes, u = _distinct(raw)
    num = pd.to_numeric(u.where(u.ne("")), errors="coerce").astype(float)
    lvl = u.map(levels).astype(float)
    bad = u.ne("") & num.isna() & lvl.isna()
    for odd in _not_data(u).values():  # already said by `coerce`
        bad &= ~odd
    if bad.any():
        bad = _spread(bad, codes, frame.index, bool)
        errors = _note(errors, bad, "score", raw, "is neither a number nor a level of the scheme")
    out["score"] = _spread(num.fillna(lvl), codes, frame.index, "float64")
    out["level"] = _spread_text(u.where(lvl.notna(), None), codes, frame.index)
    return out, errors


def _rater_hash(key: str, secret: bytes) -> str:
    """HMAC-SHA256 of the key, hex (one-shot `hmac.digest`: the same bytes as `hmac.new`)."""
    return hmac.digest(secret, key.encode(), "sha256").hex()
