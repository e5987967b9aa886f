"""The power company seed (电力企业政工干部) run for a year from its scheme file alone: a generated
company plus four people written by hand, whose quarter and year results are computed here by hand
with the numbers of scoring/schemes/power.yaml."""

from __future__ import annotations

import datetime as dt
from fractions import Fraction
from pathlib import Path

import pandas as pd
import pytest

from reports.publish import publish
from reports.render import yuan
from tests.handmade import (
    YEAR,
    Hand,
    assert_bonus_pools,
    assert_bonus_workbook,
    half_up,
    run_year,
    sqlite_warehouse,  # noqa: F401 (the warehouse: SQLite only)
    workdays,
)
from tests.helpers import table

QUARTERS = ["2026-Q1", "2026-Q2", "2026-Q3", "2026-Q4"]
COEFFICIENTS = {
    grade: Fraction(c) for grade, c in {"a": "1.3", "b": "1.1", "c": "1.0", "d": "0.7"}.items()
}

TOP = Hand(  # perfect work all year, an innovation award of 3 every month (January: + praise)
    "P001",
    "手工甲",
    "staff",
    rating=95,
    post_coefficient=1.2,
    adjustments=[(m, "innovation_award", 3, 1) for m in YEAR] + [("2026-01", "praise", None, 1)],
)
VETOED = Hand(  # perfect work, a clean-governance finding in May
    "P002", "手工乙", "middle", rating=85, adjustments=[("2026-05", "discipline", None, 1)]
)
ORDINARY = Hand(
    "P003",
    "手工丙",
    "staff",
    rating=80,
    late={"2026-01": 2},
    absent={"2026-02": 1},
    unfiled={"2026-03": [2, 3]},  # Monday and Tuesday
    unreviewed={"2026-03": 4},
    adjustments=[
        ("2026-01", "praise", None, 1),
        ("2026-02", "task_failure", -1.5, 1),
        ("2026-03", "complaint", None, 1),
        ("2026-08", "task_failure", -2, 1),
    ],
)
NEW_HIRE = Hand("P004", "手工丁", "staff", rating=80, months=["2026-11", "2026-12"])
# two leaders alike in everything: 0.6 × 105 + 0.4 × 90 = 99 in every period, far above the
# generated leaders, so they tie at the top where the a quota is round_half_up(4 × 0.2) = 1
TWINS = [
    Hand(pid, name, "leader", rating=90) for pid, name in (("P005", "手工戊"), ("P006", "手工己"))
]


def clamp(x: float, lo: float, hi: float) -> float:
    return min(max(x, lo), hi)


def work(filing: float = 1.0, review: float = 1.0, attendance: float = 1.0, late=0, absent=0):
    """The work component (power.yaml): filing, review against 0.9, attendance, −1 a late day,
    −5 an absent day."""
    return (
        clamp(40 + 80 * (filing - 1.0), 0, 40)
        + clamp(20 + 50 * (review - 0.9), 0, 25)
        + clamp(40 + 100 * (attendance - 1.0), 0, 40)
        - 1.0 * late
        - 5.0 * absent
    )


def period_score(months: list[float], rating: float) -> float:
    """0.6 × the mean monthly total + 0.4 × the evaluation (every rater gives `rating`)."""
    return 0.6 * sum(months) / len(months) + 0.4 * rating


def assert_quotas(people: pd.DataFrame, what: str, overflow: int = 0) -> None:
    """A 20%, b 50%, d 5% filled from the bottom (the vetoed in it, beyond it if need be), c the
    rest in the middle. `ties: generous`: a tie across the a/b boundary is all a, `overflow` places
    beyond the a quota, and b shrinks by as many; every other boundary falls between different
    scores."""
    n, vetoed = len(people), int(people["veto"].astype(bool).sum())
    a, b, d = half_up(n, "0.20"), half_up(n, "0.50"), max(half_up(n, "0.05"), vetoed)
    a, b = a + overflow, b - overflow
    counts = people["grade"].value_counts().to_dict()
    expected = {"a": a, "b": b, "c": n - a - b - d, "d": d}
    assert {g: counts.get(g, 0) for g in expected} == expected, what
    ranked = people[~people["veto"].astype(bool)]["period_score"].round(6)
    ranked = ranked.sort_values(ascending=False).to_list()
    for boundary in (a, a + b, n - d):
        if 0 < boundary < len(ranked):
            assert ranked[boundary - 1] != ranked[boundary], what


@pytest.fixture
def power_year(kaohe):
    scheme, months, closes = run_year(
        Path(kaohe.inbox), "power", 40, seed=11, hands=[TOP, VETOED, ORDINARY, NEW_HIRE, *TWINS]
    )
    return kaohe, scheme, months, closes


def test_power_year_from_the_scheme_file(power_year):
    kaohe, scheme, months, closes = power_year
    url = kaohe.warehouse_url
    monthly = table(url, "mart_monthly_score").set_index(["month", "person_id"])
    period = table(url, "mart_period_score")
    periods = [*QUARTERS, "2026-H1", "2026-H2", "2026"]
    by = {p: period[period["period"] == p].set_index("person_id") for p in periods}
    year = by["2026"]

    # TOP: work 40 + 25 + 40 = 105 a month, plus 3 (January: 3.5 cut to bonus_per_month 3)
    assert work() == 105
    assert [monthly.loc[(m, "P001"), "total_score"] for m in YEAR] == [108.0] * 12
    assert by["2026-Q1"].loc["P001", "period_score"] == pytest.approx(0.6 * 108 + 0.4 * 95)
    assert year.loc["P001", "period_score"] == pytest.approx(102.8)  # 64.8 + 38
    assert year.loc["P001", "rank_in_scope"] == 1 and year.loc["P001", "grade"] == "a"

    # VETOED: 0.6 × 105 + 0.4 × 85 = 97 in every period; the May finding puts Q2, H1 and the year
    # in grade d, not Q1 or Q3
    vetoes = {"2026-Q1": False, "2026-Q2": True, "2026-Q3": False, "2026-H1": True, "2026": True}
    for p, vetoed in vetoes.items():
        assert by[p].loc["P002", "period_score"] == pytest.approx(97.0), p
        assert bool(by[p].loc["P002", "veto"]) is vetoed, p
        assert (by[p].loc["P002", "grade"] == "d") is vetoed, p

    # ORDINARY, month by month (workdays: February 20, March 22)
    feb, mar = len(workdays("2026-02")), len(workdays("2026-03"))
    by_hand = {
        "2026-01": work(late=2) + 0.5,  # late days still count as attended: 103 + praise
        "2026-02": work(attendance=(feb - 1) / feb, absent=1) - 1.5,  # 35 for attendance, −5
        # two days unfiled: 40 + 80 × (20/22 − 1); 4 of the 20 filed days unreviewed: 20 − 5
        "2026-03": work(filing=(mar - 2) / mar, review=16 / 20) - 1,
        "2026-08": 105 - 2.0,
    }
    assert by_hand["2026-02"] == pytest.approx(40 + 25 + 35 - 5 - 1.5)
    assert by_hand["2026-03"] == pytest.approx(40 + 80 * (20 / 22 - 1) + 15 + 40 - 1)
    ordinary = [by_hand.get(m, 105.0) for m in YEAR]
    for m, value in zip(YEAR, ordinary, strict=True):
        assert monthly.loc[(m, "P003"), "total_score"] == pytest.approx(value), m
    q1 = period_score(ordinary[:3], 80)
    assert by["2026-Q1"].loc["P003", "period_score"] == pytest.approx(q1)
    assert year.loc["P003", "period_score"] == pytest.approx(period_score(ordinary, 80))

    # NEW_HIRE: two months, graded in Q4 (0.6 × 105 + 0.4 × 80 = 95) but not in the year
    assert by["2026-Q4"].loc["P004", "period_score"] == pytest.approx(95.0)
    assert bool(by["2026-Q4"].loc["P004", "graded"])
    assert year.loc["P004", "months"] == 2 and not bool(year.loc["P004", "graded"])
    assert pd.isna(year.loc["P004", "grade"])

    twins = [by[p].loc[who, "period_score"] for p in periods for who in ("P005", "P006")]
    assert twins == pytest.approx([99.0] * 2 * len(periods))

    # grades of every period, per category
    for p in periods:
        graded = by[p][by[p]["graded"].astype(bool)]
        assert set(graded["category"]) == {"leader", "middle", "staff"}, p
        for category, people in graded.groupby("category"):
            if category != "leader":
                assert_quotas(people, f"{p} {category}")
        # the twins share rank 1 of four leaders; the a quota is 1, generous ties make both a
        # and leave b one place: round_half_up(4 × 0.5) − 1
        leaders = graded[graded["category"] == "leader"]
        assert len(leaders) == 4 and half_up(4, "0.20") == 1, p
        assert list(leaders.loc[["P005", "P006"], "rank_in_scope"]) == [1, 1], p
        assert list(leaders.loc[["P005", "P006"], "grade"]) == ["a", "a"], p
        assert_quotas(leaders, f"{p} leader", overflow=1)
    assert not period["pacesetter"].astype(bool).any()  # no pacesetters in this scheme

    # bonus, every quarter: ¥4,500 a graded head of the unit, split by grade coefficient ×
    # post coefficient, the vetoed get 0
    bonus = table(url, "mart_bonus_allocation")
    assert set(bonus["period"]) == set(QUARTERS)
    for p in QUARTERS:
        assert_bonus_pools(bonus[bonus["period"] == p], by[p].reset_index(), 4500)
    q1 = by["2026-Q1"]
    unit = q1[q1["graded"].astype(bool) & (q1["unit_id"] == q1.loc["P001", "unit_id"])]
    weights = {
        who: Fraction(0) if bool(veto) else COEFFICIENTS[grade] * Fraction(str(post))
        for who, grade, post, veto in unit[["grade", "post_coefficient", "veto"]].itertuples()
    }
    assert weights["P001"] == Fraction("1.3") * Fraction("1.2")  # grade a, post 1.2
    paid = bonus[bonus["period"] == "2026-Q1"].set_index("person_id")
    pool = 4500 * 100 * len(unit)
    for who in ("P001", "P003"):
        share = pool * weights[who] / sum(weights.values())
        assert abs(paid.loc[who, "amount_cents"] - share) <= 1, who
    q2 = bonus[bonus["period"] == "2026-Q2"].set_index("person_id")
    assert q2.loc["P002", "amount_cents"] == 0
    q4 = bonus[bonus["period"] == "2026-Q4"].set_index("person_id")
    assert q4.loc["P004", "amount_cents"] > 0  # a quarter needs one month

    # Q1 is published: feedback to each person first (反馈), then the public notice and tables
    publish("2026-Q1", "notify", "p-notify", "power", kaohe, today=dt.date(2026, 4, 8))
    final = publish("2026-Q1", "final", "p-final", "power", kaohe, today=dt.date(2026, 4, 15))
    assert final["sent"] > 0
    folder = kaohe.output / scheme.id / "2026-Q1"
    notice = (folder / "notice-P001.html").read_text(encoding="utf-8")
    assert "手工甲" in notice and "102.80" in notice and "A级（优秀）" in notice
    assert yuan(paid.loc["P001", "amount_cents"]) in notice
    assert "手工丙" not in notice
    unit_id = q1.loc["P001", "unit_id"]
    q1_bonus = bonus[(bonus["period"] == "2026-Q1") & (bonus["unit_id"] == unit_id)]
    assert_bonus_workbook(folder / f"bonus-{unit_id}.xlsx", q1_bonus)
