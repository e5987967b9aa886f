"""Period scores and the period close: means over the months a person was in, period components,
who a person is in a period, and grades, pacesetters and bonus decided on the period score."""

from __future__ import annotations

import textwrap

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scoring.periods import close_period, period_scores
from scoring.scheme import parse_scheme
from scoring.timeline import months_of, parse_period, periods_ending, periods_inside

SCHEME = """
id: t-2026
name: 测试
year: 2026
categories: {staff: 一般工作人员}
components:
  - id: work
    weight: 1.0
    indicators:
      - {id: late, measure: attendance.late_count, per_unit: -1}
  - id: conduct
    survey:
      items: {de: 1}
      relations: {peer: 1}
      min_raters: 1
periods:
  quarter: {}
  year: {min_months: 6, components: {conduct: 0.3}}
grading:
  grades:
    - {grade: excellent, share: 0.2}
    - {grade: good}
    - {grade: general, share: 0.2}
pacesetters: {period: quarter, share: 0.2, nomination_cap: 0.5}
bonus:
  period: quarter
  pool: {per_capita: 1000}
  coefficients: {excellent: 1.5, good: 1.0, general: 0.5}
"""


def scheme():
    return parse_scheme(textwrap.dedent(SCHEME))


def monthly(rows: list[tuple[str, str, float]], unit: dict[str, str] | None = None) -> pd.DataFrame:
    """(month, person, total) rows; everybody staff of u1 unless `unit` says otherwise."""
    frame = pd.DataFrame(rows, columns=["month", "person_id", "total_score"])
    frame["name"] = "人" + frame["person_id"]
    frame["unit_id"] = frame["person_id"].map(unit or {}).fillna("u1")
    frame["dept_id"] = "d1"
    frame["category"] = "staff"
    frame["post_coefficient"] = 1.0
    frame["veto"] = False
    return frame


NO_COMPONENTS = pd.DataFrame(columns=["month", "person_id", "component_id", "score"])
NO_SURVEYS = pd.DataFrame(
    columns=["survey_id", "period", "person_id", "component_id", "score", "no_basis"]
)


def test_worked_example_quarter_is_the_mean_of_the_months():
    # A: 54, 50, 58 → (54 + 50 + 58) / 3 = 54.0
    rows = [("2026-01", "A", 54.0), ("2026-02", "A", 50.0), ("2026-03", "A", 58.0)]
    got = period_scores("2026-Q1", monthly(rows), NO_SURVEYS, scheme()).set_index("person_id")
    assert got.loc["A", "period_score"] == pytest.approx(54.0)
    assert got.loc["A", "months"] == 3


def test_new_hire_mean_of_months_worked_and_min_months():
    # B joined in November: year = (80 + 90) / 2 = 85 over 2 months, below min_months 6
    rows = [("2026-11", "B", 80.0), ("2026-12", "B", 90.0)]
    rows += [(f"2026-{m:02d}", "A", 70.0) for m in range(1, 13)]
    got = period_scores("2026", monthly(rows), NO_SURVEYS, scheme()).set_index("person_id")
    assert got.loc["B", "period_score"] == pytest.approx(85.0) and not got.loc["B", "graded"]
    assert got.loc["A", "graded"]


def test_period_component_blends_and_without_basis_gives_its_weight_back():
    rows = [(f"2026-{m:02d}", p, 80.0) for m in range(1, 13) for p in ("A", "B")]
    surveys = pd.DataFrame(
        {
            "survey_id": ["q1", "q2", "q3", "q4", "q1"],
            "period": ["2026-Q1", "2026-Q2", "2026-Q3", "2026-Q4", "2025-Q4"],
            "person_id": ["A", "A", "A", "A", "B"],
            "component_id": "conduct",
            "score": [90.0, 92.0, 94.0, 96.0, 10.0],
            "no_basis": False,
        }
    )
    got = period_scores("2026", monthly(rows), surveys, scheme()).set_index("person_id")
    # A: 0.7 × 80 + 0.3 × mean(90, 92, 94, 96) = 56 + 27.9 = 83.9
    assert got.loc["A", "period_score"] == pytest.approx(83.9)
    # B's only round is of 2025, outside the period: no basis → the mean monthly alone
    assert got.loc["B", "period_score"] == pytest.approx(80.0)


def test_unit_and_category_are_those_of_the_last_month_present():
    rows = [("2026-01", "A", 70.0), ("2026-02", "A", 70.0)]
    m = monthly(rows)
    m.loc[m["month"] == "2026-02", "unit_id"] = "u2"
    got = period_scores("2026-Q1", m, NO_SURVEYS, scheme())
    assert got["unit_id"].tolist() == ["u2"]


def test_close_grades_picks_pacesetters_and_splits_the_pool():
    # 5 people in u1, one quarter month each: A 90, B 85, C 80, D 75, E 70.
    # quotas: excellent round(5 × 0.2) = 1, general 1, good the rest 3 → A excellent, E general
    rows = [("2026-03", p, s) for p, s in zip("ABCDE", (90.0, 85.0, 80.0, 75.0, 70.0), strict=True)]
    noms = pd.DataFrame(
        {
            "person_id": ["D", "C", "Z"],
            "month": "2026-03",
            "source_file": "nominations.csv",
            "source_line": [2, 3, 4],
            "reason": "抗疫一线",
            "approved_by": "党组会",
            "period": "2026-Q1",
        }
    )
    roster_last = pd.DataFrame({"person_id": list("ABCDE"), "unit_id": "u1"})
    res = close_period(
        "2026-Q1",
        monthly(rows),
        NO_COMPONENTS,
        NO_SURVEYS,
        noms,
        roster_last,
        scheme(),
    )
    s = res.scores.set_index("person_id")
    assert s["grade"].to_dict() == {
        "A": "excellent",
        "B": "good",
        "C": "good",
        "D": "good",
        "E": "general",
    }
    # pacesetters: floor(5 × 0.2) = 1 by rank (A); cap floor(5 × 0.5) = 2 nominations: D, C
    assert s["pacesetter_route"].to_dict() == {
        "A": "rank",
        "B": None,
        "C": "nomination",
        "D": "nomination",
        "E": None,
    }
    assert res.refused_nominations["person_id"].tolist() == ["Z"]
    # pool 5 × 1000 = ¥5,000.00 over weights 1.5 + 1 + 1 + 1 + 0.5 = 5 → 1500, 1000 ×3, 500
    cents = res.bonus.set_index("person_id")["amount_cents"].to_dict()
    assert cents == {"A": 150000, "B": 100000, "C": 100000, "D": 100000, "E": 50000}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 120, allow_nan=False), min_size=1, max_size=3))
def test_quarter_score_lies_between_lowest_and_highest_month(totals):
    rows = [(f"2026-0{i + 1}", "A", t) for i, t in enumerate(totals)]
    got = period_scores("2026-Q1", monthly(rows), NO_SURVEYS, scheme())["period_score"].iloc[0]
    assert min(totals) - 1e-9 <= got <= max(totals) + 1e-9


def test_calendar_of_periods():
    assert parse_period("2026-H2") == ("half", months_of("2026-H2"))
    assert months_of("2026-Q2") == ["2026-04", "2026-05", "2026-06"]
    assert periods_ending(["2026-05", "2026-06"]) == ["2026-H1", "2026-Q2"]
    assert periods_ending(["2026-12"]) == ["2026", "2026-H2", "2026-Q4"]
    # the rounds that can feed a half: its months, its quarters and itself, not the year
    assert periods_inside("2026-H1") == [f"2026-0{m}" for m in range(1, 7)] + [
        "2026-H1",
        "2026-Q1",
        "2026-Q2",
    ]


def test_a_month_closes_like_a_period_for_monthly_pacesetters():
    text = textwrap.dedent(SCHEME).replace(
        "period: quarter, share: 0.2", "period: month, share: 0.2"
    )
    s = parse_scheme(text)
    rows = [("2026-03", p, v) for p, v in zip("ABCDE", (90.0, 85.0, 80.0, 75.0, 70.0), strict=True)]
    comps = NO_COMPONENTS
    noms = pd.DataFrame(
        columns=["person_id", "month", "source_file", "source_line", "reason", "approved_by"]
    )
    roster_last = pd.DataFrame({"person_id": list("ABCDE"), "unit_id": "u1"})
    res = close_period("2026-03", monthly(rows), comps, NO_SURVEYS, noms, roster_last, s)
    # floor(5 × 0.2) = 1 pacesetter by rank; the bonus is quarterly, so none for a month
    assert res.scores.set_index("person_id")["pacesetter"].to_dict() == {
        "A": True,
        "B": False,
        "C": False,
        "D": False,
        "E": False,
    }
    assert res.bonus is None


PER_CATEGORY = """
id: t-2026
name: 测试
year: 2026
categories: {leader: 班子成员, staff: 一般工作人员}
components:
  - id: work
    weight: 1.0
    indicators:
      - {id: late, measure: attendance.late_count, per_unit: -1}
  - id: eval_leader
    survey: {items: {silu: 1}, relations: {peer: 1}}
  - id: eval_staff
    survey: {items: {jingye: 1}, relations: {peer: 1}}
periods:
  quarter:
    components: {eval_leader: {leader: 0.4}, eval_staff: {staff: 0.2}}
    adjustments: sum
"""


def test_period_components_weigh_per_category_and_points_add_up():
    # town's identity line: a leader is blended with eval_leader at 0.4, staff with eval_staff
    # at 0.2; a leader's stray eval_staff round counts for nothing. Points add up (积分):
    # L months 80 (adj +2), 90 (adj 0), 70 (adj -1): base mean = (78 + 90 + 71) / 3 = 79.666…,
    #   score = 0.6 × 79.666… + 0.4 × 95 + (2 + 0 - 1) = 47.8 + 38 + 1 = 86.8
    # S months 60 (adj +3), 60 (adj +3): base 57, score = 0.8 × 57 + 0.2 × 50 + 6 = 61.6
    rows = [("2026-01", "L", 80.0), ("2026-02", "L", 90.0), ("2026-03", "L", 70.0)]
    rows += [("2026-01", "S", 60.0), ("2026-02", "S", 60.0)]
    m = monthly(rows)
    m["category"] = m["person_id"].map({"L": "leader", "S": "staff"})
    m["adjustment_total"] = [2.0, 0.0, -1.0, 3.0, 3.0]
    surveys = pd.DataFrame(
        {
            "survey_id": "q1",
            "period": "2026-Q1",
            "person_id": ["L", "L", "S"],
            "component_id": ["eval_leader", "eval_staff", "eval_staff"],
            "score": [95.0, 10.0, 50.0],
            "no_basis": False,
        }
    )
    s = parse_scheme(textwrap.dedent(PER_CATEGORY))
    got = period_scores("2026-Q1", m, surveys, s).set_index("person_id")["period_score"]
    assert got["L"] == pytest.approx(86.8)
    assert got["S"] == pytest.approx(61.6)


STREAK = SCHEME.replace(
    "pacesetters: {period: quarter, share: 0.2, nomination_cap: 0.5}",
    "pacesetters: {period: quarter, share: 0.2, streak: {share: 0.4, months: 2}}",
)


def test_first_tier_two_months_running_makes_a_streak_pacesetter():
    # five staff; the first tier of a month is floor(5 × 0.4) = 2 places (ranks 1–2, ties in).
    # January: A 95, B 90, C 80, D 70, E 60 → A, B
    # February: C 96, B 90, A 85, D 70, E 60 → C, B
    # March:   A 99, D 98, C 97, B 50, E 60 → A, D
    # B is in the tier January and February (two months running): a pacesetter by streak.
    # C: February only... and March? rank 3: no. A: January and March, not consecutive.
    # Rank route: floor(5 × 0.2) = 1 by quarter score: A (93) — so A is `rank`, B `streak`.
    month_scores = {
        "2026-01": dict(A=95, B=90, C=80, D=70, E=60),
        "2026-02": dict(C=96, B=90, A=85, D=70, E=60),
        "2026-03": dict(A=99, D=98, C=97, B=50, E=60),
    }
    rows = [(m, p, float(v)) for m, scores in month_scores.items() for p, v in scores.items()]
    m = monthly(rows)
    m["rank_in_scope"] = m.groupby("month")["total_score"].rank(ascending=False, method="min")
    res = close_period(
        "2026-Q1",
        m,
        NO_COMPONENTS,
        NO_SURVEYS,
        pd.DataFrame(columns=["person_id", "month", "source_file", "source_line", "period"]),
        pd.DataFrame({"person_id": list("ABCDE"), "unit_id": "u1"}),
        parse_scheme(textwrap.dedent(STREAK)),
    )
    routes = res.scores.set_index("person_id")["pacesetter_route"].to_dict()
    assert routes == {"A": "rank", "B": "streak", "C": None, "D": None, "E": None}


def test_a_person_barred_from_honours_keeps_the_grade_but_is_no_pacesetter():
    # A (90) is barred (取消评先评优): still excellent, but out of the pacesetters. Without A, N =
    # 4 and floor(4 × 0.2) = 0 by rank (with A it would be A); A's nomination is refused, C's taken
    rows = [("2026-03", p, s) for p, s in zip("ABCDE", (90.0, 85.0, 80.0, 75.0, 70.0), strict=True)]
    noms = pd.DataFrame(
        {
            "person_id": ["A", "C"],
            "month": "2026-03",
            "source_file": "nominations.csv",
            "source_line": [2, 3],
            "reason": "抗疫一线",
            "approved_by": "党组会",
            "period": "2026-Q1",
        }
    )
    res = close_period(
        "2026-Q1",
        monthly(rows),
        NO_COMPONENTS,
        NO_SURVEYS,
        noms,
        pd.DataFrame({"person_id": list("ABCDE"), "unit_id": "u1"}),
        scheme(),
        barred={"A"},
    )
    s = res.scores.set_index("person_id")
    assert s.loc["A", "grade"] == "excellent"
    assert s["pacesetter_route"].to_dict() == {
        "A": None,
        "B": None,
        "C": "nomination",
        "D": None,
        "E": None,
    }
    refused = res.refused_nominations.set_index("person_id")["reason_refused"].to_dict()
    assert refused == {"A": "barred from honours"}
