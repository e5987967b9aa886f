"""The town seed (沂水县xx镇 “硬核” system) run for a year from its scheme file alone: a generated
town plus three people written by hand, whose year results are computed here by hand."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from reports.publish import publish
from tests.handmade import (
    Hand,
    assert_bonus_pools,
    assert_bonus_workbook,
    assert_three_grades,
    run_year,
)
from tests.helpers import table

MONTHS_105 = ["2026-01", "2026-02", "2026-03"]

TOP = Hand(  # perfect duty all year; 6 bonus points a month, cut to 5 a month and 15 a year
    "T001",
    "手工甲",
    "staff",
    rating=95,
    adjustments=[
        (m, rule, points, 1)
        for m in ["2026-01", "2026-02", "2026-03", "2026-04"]
        for rule, points in (("key_task", 3), ("praise_county", None), ("urgent_task", 2))
    ],
)
VETOED = Hand(  # perfect duty, but a disciplinary finding in June
    "T002", "手工乙", "middle", rating=80, adjustments=[("2026-06", "discipline", None, 1)]
)
ORDINARY = Hand(
    "T003",
    "手工丙",
    "staff",
    rating=80,
    late={m: 2 for m in ["2026-01", "2026-02"]},  # late still counts as attended
    absent={"2026-03": 1},
    unfiled={"2026-05": [5, 6]},  # Tuesday and Wednesday: one run of two misses
    unreviewed={"2026-07": 5},
    adjustments=[("2026-09", "meeting_absence", None, 2)],
)
NEW_HIRE = Hand("T004", "手工丁", "staff", rating=80, months=["2026-11", "2026-12"])


@pytest.fixture
def town_year(kaohe):
    scheme, months, closes = run_year(
        Path(kaohe.inbox), "town", 60, seed=21, hands=[TOP, VETOED, ORDINARY, NEW_HIRE]
    )
    return kaohe, scheme, months, closes


def test_town_year_from_the_scheme_file(town_year):
    kaohe, scheme, months, closes = town_year
    url = kaohe.warehouse_url
    monthly = table(url, "mart_monthly_score").set_index(["month", "person_id"])
    period = table(url, "mart_period_score")
    year = period[period["period"] == "2026"].set_index("person_id")

    # TOP: duty = attendance 40 + filing 35 + review min(25 + 50 × (1 − 0.9), 25) = 100 a month;
    # bonus 6 a month cut to 5, the yearly 15 used up by March: 105 × 3 and 100 × 9
    assert [monthly.loc[(m, "T001"), "total_score"] for m in MONTHS_105] == [105.0] * 3
    assert monthly.loc[("2026-04", "T001"), "total_score"] == pytest.approx(100.0)
    mean = (105 * 3 + 100 * 9) / 12  # 101.25
    # year = 0.6 × mean monthly + 0.4 × the staff evaluation (every rater gives 95 on every item)
    assert year.loc["T001", "period_score"] == pytest.approx(0.6 * mean + 0.4 * 95)  # 98.75
    assert year.loc["T001", "rank_in_scope"] == 1 and year.loc["T001", "grade"] == "excellent"

    # VETOED: a 92 (0.6 × 100 + 0.4 × 80) that the June veto puts in the worst grade for H1 and
    # the year, but not for Q3
    assert year.loc["T002", "period_score"] == pytest.approx(92.0)
    assert bool(year.loc["T002", "veto"]) and year.loc["T002", "grade"] == "general"
    q3 = period[(period["period"] == "2026-Q3") & (period["person_id"] == "T002")].iloc[0]
    assert not bool(q3["veto"]) and q3["grade"] != "general"

    # ORDINARY, month by month (workdays: March 22, May 21, July 23)
    march = 40 + 100 * (21 / 22 - 1) + 35 + 25 - 5  # one absent day: rate and −5
    may = 40 + 35 + 80 * (19 / 21 - 1) + 25 - 2  # two days unfiled in a row: rate and one streak
    july = 40 + 35 + (25 + 50 * (18 / 23 - 0.9))  # 18 of 23 filed days reviewed
    september = 100 - 0.5 * 2  # two missed meetings
    by_hand = {"2026-03": march, "2026-05": may, "2026-07": july, "2026-09": september}
    for m, value in by_hand.items():
        assert monthly.loc[(m, "T003"), "total_score"] == pytest.approx(value), m
    assert monthly.loc[("2026-01", "T003"), "total_score"] == pytest.approx(100.0)
    mean = (100 * 8 + march + may + july + september) / 12
    assert year.loc["T003", "period_score"] == pytest.approx(0.6 * mean + 0.4 * 80)

    # NEW_HIRE: two months, below min_months 6: not graded, no bonus
    assert year.loc["T004", "months"] == 2 and not bool(year.loc["T004", "graded"])
    assert pd.isna(year.loc["T004", "grade"])

    # grades: 15% excellent, 5% general (the vetoed beyond it), the rest good, per category
    assert_three_grades(year, "excellent", "good", "general")
    assert not year["pacesetter"].astype(bool).any()  # the town names no pacesetters

    # bonus: ¥6,600 a graded head, split 1.8 / 1.0 / 0.6, the vetoed get 0
    bonus = table(url, "mart_bonus_allocation")
    bonus = bonus[bonus["period"] == "2026"]
    assert_bonus_pools(bonus, year.reset_index(), 6600)
    mine = bonus.set_index("person_id")
    assert mine.loc["T002", "amount_cents"] == 0 and "T004" not in mine.index
    unit = bonus[bonus["unit_id"] == year.loc["T001", "unit_id"]]
    weights = unit["grade"].map({"excellent": 1.8, "good": 1.0, "general": 0.6})
    weights[unit["person_id"] == "T002"] = 0.0
    share = 6600 * 100 * len(unit) * 1.8 / weights.sum()
    assert abs(mine.loc["T001", "amount_cents"] - share) <= 1  # floored, maybe one more cent

    # the year is published: notices first, then bulletins and bonus tables
    today = dt.date(2027, 1, 8)
    publish("2026", "notify", "p-notify", "town", kaohe, today=today)
    final = publish("2026", "final", "p-final", "town", kaohe, today=dt.date(2027, 1, 15))
    assert final["sent"] > 0
    folder = kaohe.output / scheme.id / "2026"
    notice = (folder / "notice-T001.html").read_text(encoding="utf-8")
    assert "手工甲" in notice and "98.75" in notice and "优秀" in notice
    assert "手工丙" not in notice
    unit_id = year.loc["T001", "unit_id"]
    assert_bonus_workbook(folder / f"bonus-{unit_id}.xlsx", bonus[bonus["unit_id"] == unit_id])
