"""The points seed (干部队伍管理“积分制”考核) run for a year from its scheme file alone: a generated
bureau plus four people written by hand, whose year results are computed here by hand.

积分制: the scheme has no monthly component, so a month's total is just the month's points, and
every period adds its points up (`periods.*.adjustments: sum`) on top of the quarterly
self/peer/leader rating (`base`, weight 1.0 in every period):
period score = 1.0 × mean of the period's base rounds + Σ points of the period's months."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from pathlib import Path

import pandas as pd
import pytest

from reports.publish import publish
from tests.handmade import (
    Hand,
    assert_bonus_pools,
    assert_bonus_workbook,
    assert_three_grades,
    floor_of,
    run_year,
    sqlite_warehouse,  # noqa: F401 (the warehouse: SQLite only)
)
from tests.helpers import table

CENT = Decimal("0.01")

TOP = Hand(  # rated 95 by everyone; 10.5 points over the year (points has no bonus cap)
    "P001",
    "手工甲",
    "staff",
    rating=95,
    adjustments=[
        ("2026-03", "contest_city_first", None, 1),  # +4
        ("2026-06", "praise_city", None, 2),  # +2 × 2
        ("2026-09", "innovation_award", 2, 1),  # a range rule [1, 2]: the row gives 2
        ("2026-11", "top_courseware", None, 1),  # +0.5
    ],
)
VETOED = Hand(  # rated 90, half a point in February, criticised by an inspection in August
    "P002",
    "手工乙",
    "middle",
    rating=90,
    adjustments=[("2026-02", "praise_bureau", None, 1), ("2026-08", "veto_criticized", None, 1)],
)
ORDINARY = Hand(  # rated 称职 (80) on every item; deductions and a few small points
    "P003",
    "手工丙",
    "staff",
    rating="称职",
    adjustments=[
        ("2026-02", "assessment_loss", -1.5, 2),  # a range rule [-2, -0.5], twice: −3
        ("2026-03", "meeting_absence", None, 3),  # −0.5 × 3
        ("2026-04", "lecture", None, 4),  # +0.1 × 4
        ("2026-05", "publicity", 0.6, 1),  # a range rule [0.1, 1]
        ("2026-07", "efficiency_check", None, 1),  # −2
        ("2026-10", "activity_absence", None, 2),  # −0.5 × 2
        ("2026-10", "contest_entry", None, 1),  # +0.5
    ],
)
NEW_HIRE = Hand("P004", "手工丁", "staff", rating=85, months=["2026-10", "2026-11", "2026-12"])
BARRED = Hand(  # rated 100, top of the middle cadres, but found out by an upper inspection in May
    "P005", "手工戊", "middle", rating=100, adjustments=[("2026-05", "efficiency_upper", None, 1)]
)

ORDINARY_POINTS = {  # the month's total is exactly the month's points
    "2026-02": -3.0,
    "2026-03": -1.5,
    "2026-04": 0.4,
    "2026-05": 0.6,
    "2026-07": -2.0,
    "2026-10": -0.5,
}


@pytest.fixture
def points_year(kaohe):
    scheme, months, closes = run_year(
        Path(kaohe.inbox), "points", 50, seed=7, hands=[TOP, VETOED, ORDINARY, NEW_HIRE, BARRED]
    )
    return kaohe, scheme, months, closes


def test_points_year_from_the_scheme_file(points_year):
    kaohe, scheme, months, closes = points_year
    url = kaohe.warehouse_url
    monthly = table(url, "mart_monthly_score").set_index(["month", "person_id"])
    period = table(url, "mart_period_score")
    at = period.set_index(["period", "person_id"])
    year = period[period["period"] == "2026"].set_index("person_id")

    # no monthly component: a month's total is the month's points, 0 in a month without any
    for m, value in ORDINARY_POINTS.items():
        assert monthly.loc[(m, "P003"), "total_score"] == pytest.approx(value), m
        assert monthly.loc[(m, "P003"), "adjustment_total"] == pytest.approx(value), m
    assert monthly.loc[("2026-01", "P003"), "total_score"] == 0.0

    # ORDINARY: base 80 in every period (称职 = 80 on every item from every rater), plus the
    # period's points added up, not averaged
    assert at.loc[("2026-Q1", "P003"), "period_score"] == pytest.approx(80 - 3 - 1.5)  # 75.5
    assert at.loc[("2026-Q2", "P003"), "period_score"] == pytest.approx(80 + 0.4 + 0.6)  # 81.0
    assert at.loc[("2026-H1", "P003"), "period_score"] == pytest.approx(80 - 4.5 + 1.0)  # 76.5
    assert at.loc[("2026-Q3", "P003"), "period_score"] == pytest.approx(80 - 2)  # 78.0
    points = sum(ORDINARY_POINTS.values())  # −6.0
    assert year.loc["P003", "period_score"] == pytest.approx(80 + points)  # 74.0
    assert year.loc["P003", "mean_monthly"] == pytest.approx(points / 12)  # the mean, not used
    assert year.loc["P003", "grade"] == "competent" and not bool(year.loc["P003", "veto"])

    # TOP: 95 + 4 + 4 + 2 + 0.5 = 105.5, first of the staff
    assert at.loc[("2026-Q1", "P001"), "period_score"] == pytest.approx(95 + 4)
    assert at.loc[("2026-H1", "P001"), "period_score"] == pytest.approx(95 + 4 + 4)
    assert year.loc["P001", "period_score"] == pytest.approx(105.5)
    assert year.loc["P001", "rank_in_scope"] == 1 and year.loc["P001", "grade"] == "excellent"

    # VETOED: 90 + 0.5 = 90.5 for H1 and the year; the August veto (veto_criticized) puts Q3, H2
    # and the year in the worst grade, but not H1
    assert year.loc["P002", "period_score"] == pytest.approx(90.5)
    assert bool(year.loc["P002", "veto"]) and year.loc["P002", "grade"] == "basic"
    for p in ("2026-Q3", "2026-H2"):
        assert bool(at.loc[(p, "P002"), "veto"]) and at.loc[(p, "P002"), "grade"] == "basic", p
    h1 = at.loc[("2026-H1", "P002")]
    assert h1["period_score"] == pytest.approx(90.5) and not bool(h1["veto"])
    assert h1["grade"] != "basic"

    # NEW_HIRE: three months, below min_months 6: not graded, no bonus; rated once (Q4)
    assert year.loc["P004", "months"] == 3 and not bool(year.loc["P004", "graded"])
    assert pd.isna(year.loc["P004", "grade"])
    assert at.loc[("2026-Q4", "P004"), "period_score"] == pytest.approx(85.0)

    # grades: 15% excellent, 5% basic (the vetoed beyond it), the rest competent, per category
    graded = assert_three_grades(year, "excellent", "competent", "basic")
    assert set(graded["grade"]) == {"excellent", "competent", "basic"}
    # 先进个人 (pacesetters of the year): max(1, floor(N × 0.1)) of each category by rank, N the
    # graded who are neither vetoed nor barred from honours (取消评先评优: P005 and whoever the
    # register's efficiency_upper rows name); a barred person keeps the grade
    register = table(url, "mart_adjustment")
    barred = set(register.loc[register["rule"] == "efficiency_upper", "person_id"])
    assert "P005" in barred
    assert year.loc["P005", "period_score"] == pytest.approx(100.0)
    assert year.loc["P005", "grade"] == "excellent" and not bool(year.loc["P005", "pacesetter"])
    assert year.loc["P001", "pacesetter_route"] == "rank"
    for category, people in graded.groupby("category"):
        able = people[~people["veto"].astype(bool) & ~people.index.isin(barred)]
        k = max(1, floor_of(len(able), "0.1"))
        chosen = people[people["pacesetter"].astype(bool)]
        assert len(chosen) == k, category
        assert chosen.index.isin(able.index).all(), category
        assert chosen["period_score"].min() >= able["period_score"].nlargest(k).min() - 1e-9
    assert not period[period["period"] != "2026"]["pacesetter"].astype(bool).any()

    # bonus: ¥3,000 a graded head per unit, split by the score (2 decimals), the vetoed get 0
    bonus = table(url, "mart_bonus_allocation")
    bonus = bonus[bonus["period"] == "2026"]
    assert_bonus_pools(bonus, year.reset_index(), 3000)
    mine = bonus.set_index("person_id")
    assert mine.loc["P002", "amount_cents"] == 0 and "P004" not in mine.index
    unit_id = year.loc["P001", "unit_id"]
    unit = graded[graded["unit_id"] == unit_id]
    weights = unit["period_score"].map(lambda s: Decimal(str(s)).quantize(CENT, ROUND_HALF_UP))
    weights = weights.where(~unit["veto"].astype(bool), Decimal(0))
    pool = 3000 * 100 * len(unit)
    share = Fraction(pool) * Fraction("105.50") / Fraction(sum(weights))
    assert abs(mine.loc["P001", "amount_cents"] - share) <= 1  # floored, maybe one more cent
    assert mine.loc["P001", "weight"] == pytest.approx(105.5)
    assert mine.loc["P003", "weight"] == pytest.approx(74.0)

    # the year is published: notices first, then bulletins and bonus tables
    publish("2026", "notify", "p-notify", "points", kaohe, today=dt.date(2027, 1, 8))
    final = publish("2026", "final", "p-final", "points", kaohe, today=dt.date(2027, 1, 15))
    assert final["sent"] > 0
    folder = kaohe.output / scheme.id / "2026"
    notice = (folder / "notice-P001.html").read_text(encoding="utf-8")
    assert "手工甲" in notice and "105.50" in notice and "优秀" in notice
    assert f"¥{mine.loc['P001', 'amount_cents'] / 100:,.2f}" in notice
    assert "手工丙" not in notice
    ordinary = (folder / "notice-P003.html").read_text(encoding="utf-8")
    assert "74.00" in ordinary and "各项考核中因工作不到位失分" in ordinary
    vetoed = (folder / "notice-P002.html").read_text(encoding="utf-8")
    assert "本期适用一票否决" in vetoed and "在上级效能检查中被通报批评" in vetoed
    assert_bonus_workbook(folder / f"bonus-{unit_id}.xlsx", bonus[bonus["unit_id"] == unit_id])
    rows = pd.read_csv(folder / f"bonus-{unit_id}.csv", dtype=str, encoding="utf-8-sig")
    row = rows.set_index("人员编号").loc["P001"]
    assert Decimal(row["金额（元）"]) * 100 == int(mine.loc["P001", "amount_cents"])
    assert row["等次"] == "优秀" and Decimal(row["权重"]) == Decimal("105.5")
    total = rows[rows["姓名"] == "合计"]["金额（元）"].iloc[0]
    assert Decimal(total) == Decimal(pool) / 100
