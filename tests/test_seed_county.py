"""The county seed (县机关工作人员绩效考核) run for a year from its scheme file alone: a generated
county plus four people written by hand, whose year results are computed here by hand.

Two rules of the county are proven end to end here:
- the year adds its points up (`periods.year.adjustments: sum`): year score =
  0.7 × mean over the months of (monthly total − the month's points) + 0.3 × the year-end
  evaluation (one round, period `2026`, delivered in December) + Σ points of the year (after
  caps); quarters and halves stay plain means of the monthly totals;
- one fund for the whole county (`bonus.pool.total`, ¥1,380,000), split by
  round(score, 2) × post coefficient over every graded person of every unit."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from pathlib import Path

import pandas as pd
import pytest

from reports.publish import publish
from tests.handmade import Hand, assert_bonus_workbook, run_year
from tests.helpers import table

FUND_CENTS = 1_380_000 * 100
CENT = Decimal("0.01")

TOP = Hand(  # perfect attendance and duty, rated 95; bonus points cut to 3 a month, 10 a year
    "C001",
    "手工甲",
    "staff",
    rating=95,
    post_coefficient=1.3,
    adjustments=[
        ("2026-01", "public_praise", None, 2),  # 2 + 2 = 4, cut to 3
        ("2026-01", "innovation", 2, 1),
        ("2026-02", "innovation", 1.5, 1),  # 1.5
        ("2026-03", "public_praise", None, 3),  # 3 (7.5 in the year)
        ("2026-04", "innovation", 2, 1),  # 3, cut to the 2.5 left of the year's 10
        ("2026-04", "public_praise", None, 1),
        ("2026-05", "public_praise", None, 1),  # nothing left: 0
    ],
)
TOP_POINTS = {"2026-01": 3.0, "2026-02": 1.5, "2026-03": 3.0, "2026-04": 2.5, "2026-05": 0.0}
VETOED = Hand(  # perfect attendance, rated 85, held accountable (被行政问责) in March
    "C002",
    "手工乙",
    "middle",
    rating=85,
    post_coefficient=1.5,
    adjustments=[("2026-03", "accountability", None, 1)],
)
ORDINARY = Hand(
    "C003",
    "手工丙",
    "staff",
    rating=80,
    post_coefficient=0.8,
    late={"2026-02": 3},  # late still counts as attended
    absent={"2026-03": 2},
    unfiled={"2026-05": [4, 5]},
    unreviewed={"2026-07": 6},
    adjustments=[
        ("2026-04", "public_harm", None, 2),  # −2 × 2
        ("2026-06", "innovation", 1.5, 1),  # a range rule [0.5, 2]
        ("2026-09", "media_exposure", None, 1),  # −3
        ("2026-10", "public_praise", None, 2),  # +1 × 2
    ],
)
ORDINARY_POINTS = {"2026-04": -4.0, "2026-06": 1.5, "2026-09": -3.0, "2026-10": 2.0}
NEW_HIRE = Hand("C004", "手工丁", "staff", rating=85, months=["2026-10", "2026-11", "2026-12"])


def cents(score: float) -> Decimal:
    """A period score as the bulletin prints it and score_share weighs it: 2 decimals, half up."""
    return Decimal(str(score)).quantize(CENT, ROUND_HALF_UP)


@pytest.fixture
def county_year(kaohe):
    scheme, months, closes = run_year(
        Path(kaohe.inbox), "county", 50, seed=7, hands=[TOP, VETOED, ORDINARY, NEW_HIRE]
    )
    return kaohe, scheme, months, closes


def test_county_year_from_the_scheme_file(county_year):
    kaohe, scheme, months, closes = county_year
    url = kaohe.warehouse_url
    monthly = table(url, "mart_monthly_score").set_index(["month", "person_id"])
    period = table(url, "mart_period_score")
    at = period.set_index(["period", "person_id"])
    year = period[period["period"] == "2026"].set_index("person_id")

    # TOP: public = attendance 50 + filing 30 + review min(20 + 40 × 0.1, 20) = 100 a month;
    # own work = the supervisor's 95: 0.3 × 100 + 0.7 × 95 = 96.5 before points
    for m, points in TOP_POINTS.items():
        assert monthly.loc[(m, "C001"), "adjustment_total"] == pytest.approx(points), m
        assert monthly.loc[(m, "C001"), "total_score"] == pytest.approx(96.5 + points), m
    assert monthly.loc[("2026-12", "C001"), "total_score"] == pytest.approx(96.5)
    # a quarter is the plain mean of its months: (99.5 + 98 + 99.5) / 3
    assert at.loc[("2026-Q1", "C001"), "period_score"] == pytest.approx(99.0)
    # the year: 0.7 × 96.5 + 0.3 × 95 (year-end evaluation) + the year's 10 points, not their
    # mean (that would be 0.7 × (96.5 + 10 / 12) + 28.5 = 96.63)
    assert year.loc["C001", "period_score"] == pytest.approx(0.7 * 96.5 + 0.3 * 95 + 10)  # 106.05
    assert year.loc["C001", "rank_in_scope"] == 1 and year.loc["C001", "grade"] == "excellent"
    assert year.loc["C001", "post_coefficient"] == pytest.approx(1.3)

    # VETOED: 0.3 × 100 + 0.7 × 85 = 89.5 a month; the year 0.7 × 89.5 + 0.3 × 85 = 88.15, graded
    # 不称职 for Q1, H1 and the year because of the March veto, but not for Q2
    assert year.loc["C002", "period_score"] == pytest.approx(88.15)
    assert bool(year.loc["C002", "veto"]) and year.loc["C002", "grade"] == "incompetent"
    assert at.loc[("2026-H1", "C002"), "grade"] == "incompetent"
    q2 = at.loc[("2026-Q2", "C002")]
    assert q2["period_score"] == pytest.approx(89.5) and not bool(q2["veto"])
    assert q2["grade"] == "competent"

    # ORDINARY, month by month (workdays: March 22, May 21, July 23), own work 80 (0.7 × 80 = 56)
    february = 0.3 * (100 - 3) + 56  # three late days: attended, −1 each
    march = 0.3 * (50 + 100 * (20 / 22 - 1) + 30 + 20 - 5 * 2) + 56  # two days absent
    may = 0.3 * (50 + 30 + 60 * (19 / 21 - 1) + 20) + 56  # two days unfiled
    july = 0.3 * (50 + 30 + 20 + 40 * (17 / 23 - 0.9)) + 56  # 17 of 23 filed days reviewed
    by_hand = {"2026-02": february, "2026-03": march, "2026-05": may, "2026-07": july}
    for m, value in by_hand.items():
        assert monthly.loc[(m, "C003"), "total_score"] == pytest.approx(value), m
    for m, points in ORDINARY_POINTS.items():
        assert monthly.loc[(m, "C003"), "total_score"] == pytest.approx(86 + points), m
    assert monthly.loc[("2026-01", "C003"), "total_score"] == pytest.approx(86.0)
    before_points = (86 * 8 + february + march + may + july) / 12
    points = sum(ORDINARY_POINTS.values())  # −3.5
    ordinary = 0.7 * before_points + 0.3 * 80 + points  # 80.10
    assert year.loc["C003", "period_score"] == pytest.approx(ordinary)
    assert year.loc["C003", "mean_monthly"] == pytest.approx(before_points + points / 12)
    assert year.loc["C003", "grade"] == "basic"  # 80 ≤ 80.10 < 85

    # NEW_HIRE: three months, below min_months 6: not graded, no bonus
    assert year.loc["C004", "months"] == 3 and not bool(year.loc["C004", "graded"])
    assert pd.isna(year.loc["C004", "grade"])

    # absolute grades: first threshold reached, the vetoed 不称职 whatever their score
    graded = year[year["graded"].astype(bool)]
    bounds = [(g.grade, g.min) for g in scheme.grading.grades]

    def by_threshold(score: float) -> str:
        return next(g for g, low in bounds if low is None or round(score, 6) >= low)

    vetoed = graded["veto"].astype(bool)
    expected = graded["period_score"].map(by_threshold).where(~vetoed, "incompetent")
    assert graded["grade"].to_dict() == expected.to_dict()
    assert len(set(graded.loc[~vetoed, "grade"])) >= 3  # the thresholds separate the year
    assert not period["pacesetter"].astype(bool).any()  # the scheme names no pacesetters

    # bonus: one county fund of ¥1,380,000 split by round(score, 2) × post coefficient over
    # every graded, non-vetoed person of every unit
    bonus = table(url, "mart_bonus_allocation")
    bonus = bonus[bonus["period"] == "2026"]
    assert int(bonus["amount_cents"].sum()) == FUND_CENTS
    assert set(bonus["person_id"]) == set(graded.index) and bonus["unit_id"].nunique() > 1
    mine = bonus.set_index("person_id")
    assert mine.loc["C002", "amount_cents"] == 0 and "C004" not in mine.index
    weight = {
        pid: Fraction(cents(p["period_score"]) * Decimal(str(p["post_coefficient"])))
        for pid, p in graded[~vetoed].iterrows()
    }
    whole = sum(weight.values())
    top = Fraction(FUND_CENTS) * Fraction("106.05") * Fraction("1.3") / whole
    assert abs(mine.loc["C001", "amount_cents"] - top) <= 1  # floored, maybe one more cent
    assert mine.loc["C001", "weight"] == pytest.approx(106.05 * 1.3)
    for pid, w in weight.items():  # everyone's, by the same formula
        assert abs(mine.loc[pid, "amount_cents"] - FUND_CENTS * w / whole) <= 1, pid
    # a unit's table is its people's part of the fund, not a pool of its own
    parts = bonus.groupby("unit_id")["amount_cents"].sum()
    unit_id = year.loc["C001", "unit_id"]
    assert 0 < parts[unit_id] < FUND_CENTS

    # the year is published: notices first, then bulletins and bonus tables
    publish("2026", "notify", "p-notify", "county", kaohe, today=dt.date(2027, 1, 8))
    final = publish("2026", "final", "p-final", "county", kaohe, today=dt.date(2027, 1, 18))
    assert final["sent"] > 0
    folder = kaohe.output / scheme.id / "2026"
    notice = (folder / "notice-C001.html").read_text(encoding="utf-8")
    assert "手工甲" in notice and "106.05" in notice and "优秀" in notice
    assert f"¥{mine.loc['C001', 'amount_cents'] / 100:,.2f}" in notice
    assert "手工丙" not in notice
    ordinary_notice = (folder / "notice-C003.html").read_text(encoding="utf-8")
    assert str(cents(ordinary)) in ordinary_notice  # 80.10
    assert "被新闻媒体曝光影响恶劣的典型案例" in ordinary_notice
    vetoed_notice = (folder / "notice-C002.html").read_text(encoding="utf-8")
    assert "本期适用一票否决" in vetoed_notice and "不称职" in vetoed_notice
    for unit, part in parts.items():
        assert_bonus_workbook(folder / f"bonus-{unit}.xlsx", bonus[bonus["unit_id"] == unit])
        rows = pd.read_csv(folder / f"bonus-{unit}.csv", dtype=str, encoding="utf-8-sig")
        total = rows[rows["姓名"] == "合计"]["金额（元）"].iloc[0]
        assert Decimal(total) * 100 == int(part), unit
    rows = pd.read_csv(folder / f"bonus-{unit_id}.csv", dtype=str, encoding="utf-8-sig")
    row = rows.set_index("人员编号").loc["C001"]
    assert Decimal(row["金额（元）"]) * 100 == int(mine.loc["C001", "amount_cents"])
    assert row["等次"] == "优秀" and Decimal(row["权重"]) == Decimal("137.865")
