"""The district seed (区“三亮三评三运用”) run for a year from its scheme file alone: a generated
district plus five people written by hand, whose results are computed here by hand. The seed's
new rule, 第一方阵 (`pacesetters.streak`), is proved end to end: a person in the first tier of the
monthly ranking two months running becomes a pacesetter of the quarter, one in it in two months
that are not consecutive does not."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from reports.publish import publish
from tests.handmade import (
    YEAR,
    Hand,
    assert_bonus_pools,
    assert_bonus_workbook,
    assert_three_grades,
    floor_of,
    run_year,
    sqlite_warehouse,  # noqa: F401 (the warehouse: SQLite only)
)
from tests.helpers import table

QUARTERS = {f"2026-Q{q}": YEAR[3 * q - 3 : 3 * q] for q in (1, 2, 3, 4)}
Q1 = QUARTERS["2026-Q1"]

# A month of a handmade person: 0.7 × 三亮三评 (every rater gives `rating` on every item, so the
# survey score is the rating) + 0.3 × 在岗履职 (attendance 60 + filing 40 − 5 an absent day)
# + adjustments (bonus cut to 3 a month and 10 a year).
TOP = Hand(  # 100 on every item; 3.5 bonus points a month in January to April
    "D001",
    "手工甲",
    "staff",
    rating=100,
    adjustments=[
        (m, rule, points, 1)
        for m in ["2026-01", "2026-02", "2026-03", "2026-04"]
        for rule, points in (("hard_task", 2), ("public_praise", None), ("media_praise", None))
    ],
)
VETOED = Hand(  # the best 站所负责人 every month, but a disciplinary finding in May
    "D002", "手工乙", "middle", rating=95, adjustments=[("2026-05", "discipline", None, 1)]
)
ORDINARY = Hand(
    "D003",
    "手工丙",
    "staff",
    rating="较好",  # the level: 85 points
    absent={"2026-03": 2},
    unfiled={"2026-05": [5, 6, 7]},  # Tuesday to Thursday
    adjustments=[
        ("2026-07", "public_complaint", None, 2),
        ("2026-09", "hard_task", 1.5, 1),
        ("2026-09", "public_complaint", None, 1),
    ],
)
STREAK = Hand("D004", "手工丁", "staff", rating=95, absent={"2026-03": 6})  # 1st tier Jan, Feb
GAP = Hand("D005", "手工戊", "staff", rating=95, absent={"2026-02": 6})  # 1st tier Jan, Mar


@pytest.fixture
def district_year(kaohe):
    scheme, months, closes = run_year(
        Path(kaohe.inbox), "district", 50, seed=5, hands=[TOP, VETOED, ORDINARY, STREAK, GAP]
    )
    return kaohe, scheme, months, closes


def first_tier(monthly: pd.DataFrame) -> pd.Series:
    """Per monthly row: ranked within the top max(1, floor(N × 0.20)) of the N people of the
    category that month, by total (at 6 decimals; competition ranks, so people tied at the
    boundary are all in)."""
    by = [monthly["month"], monthly["category"]]
    rank = monthly["total_score"].round(6).groupby(by).rank(method="min", ascending=False)
    n = monthly.groupby(by)["person_id"].transform("count")
    return rank <= n.map(lambda x: max(1, floor_of(int(x), "0.20")))


def test_district_year_from_the_scheme_file(district_year):
    kaohe, scheme, months, closes = district_year
    url = kaohe.warehouse_url
    monthly = table(url, "mart_monthly_score")
    by_month = monthly.set_index(["month", "person_id"])
    period = table(url, "mart_period_score")
    year = period[period["period"] == "2026"].set_index("person_id")

    def total(month: str, person: str) -> float:
        return by_month.loc[(month, person), "total_score"]

    # TOP: 0.7 × 100 + 0.3 × 100 = 100 a month; 3.5 bonus cut to 3 a month, the yearly 10 used up
    # in April (3 + 3 + 3 + 1)
    assert [total(m, "D001") for m in [*Q1, "2026-04", "2026-05"]] == pytest.approx(
        [103, 103, 103, 101, 100]
    )
    top_year = (103 * 3 + 101 + 100 * 8) / 12  # 100.8333…: no period component, the plain mean
    assert year.loc["D001", "period_score"] == pytest.approx(top_year)
    assert year.loc["D001", "rank_in_scope"] == 1 and year.loc["D001", "grade"] == "excellent"

    # ORDINARY (较好 = 85): 59.5 + 0.3 × duty; a full month 89.5
    march = 59.5 + 0.3 * (60 + 100 * (20 / 22 - 1) + 40 - 2 * 5)  # 2 of 22 days absent: 83.77
    may = 59.5 + 0.3 * (60 + 40 + 60 * (18 / 21 - 1))  # 3 of 21 days unfiled: 86.93
    july = 89.5 - 2  # two complaints found true
    september = 89.5 + 1.5 - 1  # a hard task (1.5, the range rule's points) and a complaint
    hand = {"2026-03": march, "2026-05": may, "2026-07": july, "2026-09": september}
    for m, value in hand.items():
        assert total(m, "D003") == pytest.approx(value), m
    assert total("2026-01", "D003") == pytest.approx(89.5)
    ordinary_year = (89.5 * 8 + march + may + july + september) / 12
    assert year.loc["D003", "period_score"] == pytest.approx(ordinary_year)

    # VETOED: 0.7 × 95 + 0.3 × 100 = 96.5 every month, the best middle manager, but the May veto
    # puts them in the worst grade for the year and keeps them from Q2's pacesetters
    assert year.loc["D002", "period_score"] == pytest.approx(96.5)
    assert bool(year.loc["D002", "veto"]) and year.loc["D002", "grade"] == "basic"
    quarters = period[period["period"].isin(QUARTERS)].set_index(["period", "person_id"])
    assert quarters.loc[("2026-Q2", "D002"), "rank_in_scope"] == 1
    assert not bool(quarters.loc[("2026-Q2", "D002"), "pacesetter"])
    assert quarters.loc[("2026-Q1", "D002"), "pacesetter_route"] == "rank"

    # STREAK and GAP: 96.5 a month, but six absent days (−30 and the attendance rate) cost one
    # month: March for STREAK, February (20 workdays) for GAP
    streak_march = 66.5 + 0.3 * (60 + 100 * (16 / 22 - 1) + 40 - 30)  # 79.32
    gap_february = 66.5 + 0.3 * (60 + 100 * (14 / 20 - 1) + 40 - 30)  # 78.5
    assert [total(m, "D004") for m in Q1] == pytest.approx([96.5, 96.5, streak_march])
    assert [total(m, "D005") for m in Q1] == pytest.approx([96.5, gap_february, 96.5])
    q1 = quarters.loc["2026-Q1"]
    assert q1.loc["D004", "period_score"] == pytest.approx((96.5 * 2 + streak_march) / 3)
    assert q1.loc["D005", "period_score"] == pytest.approx((96.5 * 2 + gap_february) / 3)

    # the first tier (第一方阵) of Q1's months: STREAK in January and February, GAP in January and
    # March; neither is among Q1's top max(1, floor(N × 0.10)) staff
    tier = monthly[first_tier(monthly)].groupby("person_id")["month"].agg(set)
    assert tier["D004"] >= {"2026-01", "2026-02"} and "2026-03" not in tier["D004"]
    assert tier["D005"] >= {"2026-01", "2026-03"} and "2026-02" not in tier["D005"]
    assert tier["D002"] >= set(QUARTERS["2026-Q2"])  # all Q2 in it, but vetoed: no streak either
    staff = q1[(q1["category"] == "staff") & ~q1["veto"].astype(bool)]
    rank_k = max(1, floor_of(len(staff), "0.10"))
    assert min(q1.loc["D004", "rank_in_scope"], q1.loc["D005", "rank_in_scope"]) > rank_k
    assert q1.loc["D004", "pacesetter_route"] == "streak"
    assert not bool(q1.loc["D005", "pacesetter"]) and pd.isna(q1.loc["D005", "pacesetter_route"])
    assert q1.loc["D001", "pacesetter_route"] == "rank"

    # every quarter, every category: the rank route takes max(1, floor(N × 0.10)) of the N graded
    # people who are not vetoed, the best of them; the streak route every other such person in the
    # first tier two consecutive months of the quarter; nobody else is a pacesetter
    tiered = monthly.assign(tier=first_tier(monthly).to_numpy())
    for name, months_q in QUARTERS.items():
        rows = quarters.loc[name]
        eligible = rows[rows["graded"].astype(bool) & ~rows["veto"].astype(bool)]
        for category, people in eligible.groupby("category"):
            k = max(1, floor_of(len(people), "0.10"))  # leaders: 2 people, floor 0, at least one
            by_rank = people[people["pacesetter_route"] == "rank"]
            assert len(by_rank) == k, (name, category)
            rest = people.drop(by_rank.index)
            assert by_rank["period_score"].min() >= rest["period_score"].max() - 1e-9
        in_tier = tiered[tiered["month"].isin(months_q) & tiered["tier"]]
        tier_months = in_tier.groupby("person_id")["month"].agg(set)
        pairs = list(zip(months_q, months_q[1:], strict=False))  # (Jan, Feb), (Feb, Mar)
        expected = {
            p
            for p, ms in tier_months.items()
            if any(a in ms and b in ms for a, b in pairs)
            and p in eligible.index
            and eligible.loc[p, "pacesetter_route"] != "rank"
        }
        assert set(rows.index[rows["pacesetter_route"] == "streak"]) == expected, name
        assert set(rows.index[rows["pacesetter"].astype(bool)]) == expected | set(
            eligible.index[eligible["pacesetter_route"] == "rank"]
        )
    assert not period[~period["period"].isin(QUARTERS)]["pacesetter"].astype(bool).any()

    # grades of the year: 15% excellent, 5% basic (the vetoed beyond it), the rest competent
    assert_three_grades(year, "excellent", "competent", "basic")

    # bonus: ¥5,000 a graded head, split 1.5 / 1.0 / 0.5 (no post coefficient), the vetoed get 0
    bonus = table(url, "mart_bonus_allocation")
    assert set(bonus["period"]) == {"2026"}
    assert_bonus_pools(bonus, year.reset_index(), 5000)
    mine = bonus.set_index("person_id")
    assert mine.loc["D002", "amount_cents"] == 0
    unit = bonus[bonus["unit_id"] == year.loc["D001", "unit_id"]]
    weights = unit["grade"].map({"excellent": 1.5, "competent": 1.0, "basic": 0.5})
    weights[unit["person_id"].map(year["veto"]).astype(bool)] = 0.0
    share = 5000 * 100 * len(unit) * 1.5 / weights.sum()
    assert abs(mine.loc["D001", "amount_cents"] - share) <= 1  # floored, maybe one more cent

    # Q1 and the year published: STREAK's notice names the route, the year's bonus tables go out
    folder = kaohe.output / scheme.id
    publish("2026-Q1", "notify", "p-q1-notify", "district", kaohe, today=dt.date(2026, 4, 8))
    notice = (folder / "2026-Q1" / "notice-D004.html").read_text(encoding="utf-8")
    assert "手工丁" in notice and "是（连续进入第一方阵）" in notice
    assert "是（" not in (folder / "2026-Q1" / "notice-D005.html").read_text(encoding="utf-8")
    publish("2026", "notify", "p-notify", "district", kaohe, today=dt.date(2027, 1, 8))
    final = publish("2026", "final", "p-final", "district", kaohe, today=dt.date(2027, 1, 15))
    assert final["sent"] > 0
    notice = (folder / "2026" / "notice-D001.html").read_text(encoding="utf-8")
    assert "手工甲" in notice and "100.83" in notice and "优秀" in notice
    unit_id = year.loc["D001", "unit_id"]
    book = folder / "2026" / f"bonus-{unit_id}.xlsx"
    assert_bonus_workbook(book, bonus[bonus["unit_id"] == unit_id])
