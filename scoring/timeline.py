"""Months, periods and who is "in" them: the calendar every score is counted on.

Periods are calendar periods (`YYYY-Qn`, `YYYY-H1`/`H2`, `YYYY`); a month is also a period of one
month, so a monthly pacesetter scheme needs no special case.
"""

from __future__ import annotations

import calendar
import re

import pandas as pd

from scoring.numbers import lookup

_PERIOD = re.compile(r"^(?P<y>\d{4})(?:-(?:(?P<m>0[1-9]|1[0-2])|Q(?P<q>[1-4])|H(?P<h>[12])))?$")
KINDS = ("month", "quarter", "half", "year")


def parse_period(period: str) -> tuple[str, list[str]]:
    """The kind of a period and its months, in order."""
    m = _PERIOD.match(period.strip())
    if not m:
        raise ValueError(f"not a period: {period!r} (YYYY-MM, YYYY-Qn, YYYY-H1/H2 or YYYY)")
    y = int(m["y"])
    if m["m"]:
        kind, first, count = "month", int(m["m"]), 1
    elif m["q"]:
        kind, first, count = "quarter", 3 * int(m["q"]) - 2, 3
    elif m["h"]:
        kind, first, count = "half", 6 * int(m["h"]) - 5, 6
    else:
        kind, first, count = "year", 1, 12
    return kind, [f"{y}-{mm:02d}" for mm in range(first, first + count)]


def months_of(period: str) -> list[str]:
    return parse_period(period)[1]


def periods_inside(period: str) -> list[str]:
    """Every calendar period that lies wholly inside `period`, itself included (a survey round
    over any of them feeds the period's components)."""
    months = months_of(period)
    candidates = {p for m in months for p in (m, *periods_of(m))}
    return sorted(p for p in candidates if set(months_of(p)) <= set(months))


def periods_of(month: str) -> list[str]:
    """The quarter, half and year that contain a month (the month itself not included)."""
    y, m = int(month[:4]), int(month[5:7])
    return [f"{y}-Q{(m - 1) // 3 + 1}", f"{y}-H{1 if m <= 6 else 2}", f"{y}"]


def period_of(month: str, kind: str) -> str:
    """The period of `kind` that contains `month`."""
    if kind == "month":
        return month
    return dict(zip(("quarter", "half", "year"), periods_of(month), strict=True))[kind]


def is_period_end(month: str, kind: str) -> bool:
    return months_of(period_of(month, kind))[-1] == month


def month_bounds(month: str) -> tuple[str, str]:
    y, m = int(month[:4]), int(month[5:7])
    return f"{month}-01", f"{month}-{calendar.monthrange(y, m)[1]:02d}"


def shift_month(month: str, by: int) -> str:
    n = int(month[:4]) * 12 + int(month[5:7]) - 1 + by
    return f"{n // 12}-{n % 12 + 1:02d}"


def presence(roster: pd.DataFrame) -> pd.DataFrame:
    """Roster rows of people who are in their month: listed, and active on at least one of its days.

    `roster` holds one or more months (column `month`); dates are ISO text, so text comparison is
    date comparison.
    """
    first = roster["month"] + "-01"
    last = lookup(roster["month"], {m: month_bounds(m)[1] for m in roster["month"].unique()})
    active = (roster["active_from"].isna() | (roster["active_from"] <= last)) & (
        roster["active_to"].isna() | (roster["active_to"] >= first)
    )
    return roster[active].reset_index(drop=True)


def scope_key(frame: pd.DataFrame, scope: str) -> pd.Series:
    """The grading scope of each row: its category, or its unit and category."""
    if scope == "unit_category":
        return frame["unit_id"].astype(str) + "/" + frame["category"].astype(str)
    return frame["category"].astype(str)


def periods_ending(months: list[str]) -> list[str]:
    """The quarters, halves and years whose last month is among `months`: due for closing."""
    return sorted({period_of(m, k) for m in months for k in KINDS[1:] if is_period_end(m, k)})
