"""People written by hand into a generated organisation, so a test can compute their results by
hand: every day of their attendance, every rating and every register row is chosen by the test.

Each handmade person is rated in rounds of their own (`hand-<person>-<period>`): with
`normalize: rater_mean` a round's grand mean is then their own raters' mean, so their survey
score is exactly the score their raters give, whatever the generated raters do.
"""

from __future__ import annotations

import calendar
import csv
import datetime as dt
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from pathlib import Path

import pandas as pd
import pytest

from etl.generate import generate
from etl.pipeline import close_step, run_month, score_step
from scoring.scheme import Scheme, load_scheme

YEAR = [f"2026-{m:02d}" for m in range(1, 13)]


@dataclass
class Hand:
    """One person written by hand; days not named are worked in full, duty filed and reviewed."""

    person_id: str
    name: str
    category: str
    rating: float | str = 90  # every item from every rater, in every round they are rated in
    months: list[str] = field(default_factory=lambda: list(YEAR))
    late: dict[str, int] = field(default_factory=dict)  # month -> late days (the first workdays)
    absent: dict[str, int] = field(default_factory=dict)  # month -> absent days (the last ones)
    unfiled: dict[str, list[int]] = field(default_factory=dict)  # month -> days of month unfiled
    unreviewed: dict[str, int] = field(default_factory=dict)  # month -> filed days not reviewed
    # (month, rule, points or None, count)
    adjustments: list[tuple[str, str, float | None, int]] = field(default_factory=list)
    cases: dict[str, list[dict]] = field(default_factory=dict)  # month -> case rows
    post_coefficient: float = 1.0
    email: str | None = None


def workdays(month: str) -> list[dt.date]:
    """Monday to Friday: the days a handmade person is expected at work."""
    y, m = int(month[:4]), int(month[5:])
    days = [dt.date(y, m, d) for d in range(1, calendar.monthrange(y, m)[1] + 1)]
    return [d for d in days if d.weekday() < 5]


def _rounds(scheme: Scheme, category: str, month: str) -> list[tuple[str, str]]:
    """(component, survey period) of the rounds a person of `category` is rated in this month:
    monthly components every month, period components quarterly (or at the year's end when only
    the year names them) — the cadence of the generated organisation."""
    out = []
    m = int(month[5:])
    for c in scheme.components:
        if c.survey is None or category not in scheme.survey_categories(c.id):
            continue
        if c.weight_for(category) > 0:
            out.append((c.id, month))
            continue
        named = {k for k, p in scheme.periods.items() if c.id in p.components}
        if named & {"quarter", "half"} and m % 3 == 0:
            out.append((c.id, f"{month[:4]}-Q{m // 3}"))
        elif named == {"year"} and m == 12:
            out.append((c.id, month[:4]))
    return out


def _write(path: Path, header: list[str], rows: list[list[object]]) -> None:
    if not rows:
        return
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def first_unit(folder: Path) -> tuple[str, str]:
    """The unit (id, name) of a generated month's first roster row: where the hands go."""
    roster = pd.concat(
        [pd.read_csv(p, dtype=str, encoding="utf-8-sig") for p in folder.glob("roster*.csv")]
    )
    unit_col = next(c for c in roster.columns if c in ("unit_id", "单位编码"))
    uname_col = next(c for c in roster.columns if c in ("unit_name", "单位", "单位名称"))
    return roster[unit_col].iloc[0], roster[uname_col].iloc[0]


def write_hands(inbox: Path, scheme: Scheme, hands: list[Hand]) -> None:
    """Add the handmade people to every month of a generated inbox, in files of their own (several
    files of one source in one month are one table). They join the first unit of the roster, in a
    department of their own."""
    for month in YEAR:
        folder = inbox / month
        unit, unit_name = first_unit(folder)
        people, days, ratings, register, cases = [], [], [], [], []
        for h in hands:
            if month not in h.months:
                continue
            people.append(
                [
                    h.person_id,
                    h.name,
                    unit,
                    unit_name,
                    f"{unit}-hand",
                    "专项工作组",
                    scheme.categories[h.category],
                    h.post_coefficient,
                    h.email or "",
                ]
            )
            work = workdays(month)
            late = set(work[: h.late.get(month, 0)])
            absent = set(work[len(work) - h.absent.get(month, 0) :])
            unfiled = set(h.unfiled.get(month, []))
            unreviewed = h.unreviewed.get(month, 0)
            y, m = int(month[:4]), int(month[5:])
            for d in range(1, calendar.monthrange(y, m)[1] + 1):
                day = dt.date(y, m, d)
                if day.weekday() >= 5:
                    days.append([h.person_id, day.isoformat(), "holiday", "", ""])
                    continue
                status = "absent" if day in absent else "late" if day in late else "present"
                filed = 0 if d in unfiled else 1
                reviewed = "" if not filed else 0 if unreviewed > 0 else 1
                if filed and unreviewed > 0:
                    unreviewed -= 1
                days.append([h.person_id, day.isoformat(), status, filed, reviewed])
            for cid, period in _rounds(scheme, h.category, month):
                survey = scheme.component(cid).survey
                for rel, weight in survey.relations.items():
                    if weight <= 0:
                        continue
                    n = 1 if rel == "self" else max(survey.min_raters, 1)
                    for i in range(n):
                        key = f"hand-{h.person_id}-{rel}-{i}"
                        for item in survey.items:
                            ratings.append(
                                [f"hand-{h.person_id}-{period}", period, key, rel]
                                + [h.person_id, item, h.rating]
                            )
            for when, rule, points, count in h.adjustments:
                if when == month:
                    register.append(
                        [
                            h.person_id,
                            f"{month}-15",
                            rule,
                            "" if points is None else points,
                            count,
                            f"{scheme.rules()[rule].name}（手工样例）",
                            f"样例〔{month[:4]}〕{len(register) + 1}号",
                        ]
                    )
            for row in h.cases.get(month, []):
                cases.append([row.get(c, "") for c in CASE_COLUMNS])
        head = ["person_id", "name", "unit_id", "unit_name", "dept_id", "dept_name", "category"]
        _write(folder / "roster-hand.csv", [*head, "post_coefficient", "email"], people)
        _write(
            folder / "attendance-hand.csv",
            ["person_id", "date", "status", "duty_filed", "duty_reviewed"],
            days,
        )
        _write(
            folder / "surveys-hand.csv",
            ["survey_id", "period", "rater_key", "relation", "ratee_id", "item", "score"],
            ratings,
        )
        _write(
            folder / "adjustments-hand.csv",
            ["person_id", "date", "rule", "points", "count", "note", "evidence"],
            register,
        )
        _write(folder / "cases-hand.csv", CASE_COLUMNS, cases)


CASE_COLUMNS = [
    "case_id",
    "dept_id",
    "judge_id",
    "panel_ids",
    "filed_on",
    "closed_on",
    "procedure",
    "outcome",
    "verdict_in_court",
    "appeal_outcome",
    "appeal_decided_on",
    "fault",
]


def run_year(
    inbox: Path, scheme_ref: str, people: int, seed: int, hands: list[Hand]
) -> tuple[Scheme, list[dict], list[dict]]:
    """A generated organisation plus the handmade people, taken in, scored and closed month by
    month through the functions the DAG tasks call; returns the monthly and the close summaries."""
    scheme = load_scheme(scheme_ref)
    generate(inbox, people, "2026-01", 12, seed=seed, scheme=scheme)
    write_hands(inbox, scheme, hands)
    months, closes = [], []
    for m in YEAR:
        loaded = run_month(m, f"m-{m}", scheme_ref)
        assert all(v["status"] != "rejected" for v in loaded["sources"].values()), loaded
        scored = score_step(loaded)
        months.append({**loaded, **scored})
        for period in scored["periods"]:
            closes.append(close_step(period, f"c-{period}", scheme_ref))
    return scheme, months, closes


def half_up(n: int, share: str) -> int:
    """round_half_up(N × share), on the share as written: the quota arithmetic of scheme.md."""
    return int((Decimal(n) * Decimal(share)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def floor_of(n: int, share: str) -> int:
    return int((Decimal(n) * Decimal(share)).to_integral_value(rounding=ROUND_FLOOR))


def assert_bonus_pools(bonus: pd.DataFrame, period: pd.DataFrame, per_capita: int) -> None:
    """Every unit's allocation adds up to per_capita × its graded headcount, to the cent."""
    graded = period[period["graded"].astype(bool)].groupby("unit_id").size()
    paid = bonus.groupby("unit_id")["amount_cents"].sum()
    assert paid.to_dict() == (graded * per_capita * 100).to_dict()


def assert_three_grades(
    year: pd.DataFrame, best: str, rest: str, worst: str, shares: tuple[str, str] = ("0.15", "0.05")
) -> pd.DataFrame:
    """Per category of the graded: round_half_up(N × best share) in the best grade, the worst
    grade's round_half_up(N × its share) or the vetoed if they are more, the rest in between.
    Returns the graded rows."""
    graded = year[year["graded"].astype(bool)]
    for category, people in graded.groupby("category"):
        n, vetoed = len(people), int(people["veto"].astype(bool).sum())
        counts = people["grade"].value_counts().to_dict()
        top, bottom = half_up(n, shares[0]), max(half_up(n, shares[1]), vetoed)
        assert counts.get(best, 0) == top, category
        assert counts.get(worst, 0) == bottom, category
        assert counts.get(rest, 0) == n - top - bottom, category
    return graded


@pytest.fixture(name="warehouse_url")
def sqlite_warehouse(tmp_path: Path) -> str:
    """A seed's year on SQLite alone. Its test proves the scheme's semantics, which do not depend
    on the database; the town and county years also run on PostgreSQL (with KAOHE_TEST_PG_URL),
    like every warehouse test of the pipeline. Keeps the suite inside CI's budget."""
    return f"sqlite:///{tmp_path / 'warehouse.db'}"


def assert_bonus_workbook(path: Path, allocation: pd.DataFrame) -> None:
    """The unit's bonus workbook, read back: one row per person of `allocation` (the unit's rows of
    mart_bonus_allocation) with its amount, and a total row equal to their sum, to the cent."""
    from openpyxl import load_workbook

    from reports.bonus_tables import AMOUNT, COLUMNS, SHEET_TITLE, TOTAL_LABEL

    ws = load_workbook(path)[SHEET_TITLE]
    rows = [r for r in ws.iter_rows(values_only=True) if r and r[0] is not None]
    head = next(i for i, r in enumerate(rows) if r[0] == COLUMNS[0])
    who, amount = COLUMNS.index("人员编号"), COLUMNS.index(AMOUNT)
    got = {r[who] if r[0] != TOTAL_LABEL else TOTAL_LABEL: r[amount] for r in rows[head + 1 :]}
    cents = {k: round(v * 100) for k, v in got.items()}
    expected = dict(
        zip(allocation["person_id"], allocation["amount_cents"].astype(int), strict=True)
    )
    assert cents.pop(TOTAL_LABEL) == sum(expected.values()), path
    assert cents == expected, path
