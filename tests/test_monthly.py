"""Monthly scores: the worked example of scheme.md and hand-computed cases."""

from __future__ import annotations

import textwrap

import pandas as pd
import pytest

from scoring.monthly import adjustment_totals, indicator_scores, month_scores, price_adjustments
from scoring.numbers import among, lookup
from scoring.scheme import parse_scheme

COURT = """
id: court-example
name: 法院示例
year: 2026
categories: {judge: 员额法官, assistant: 审判辅助人员}
components:
  - id: casework
    weight: 1.0
    indicators:
      - {id: closed, measure: cases.closed_count, target: 20, points: 20, coefficient: 0.5,
         min: 0, max: 30}
      - {id: duration, measure: cases.avg_duration_days, target: 45, points: 15,
         coefficient: -0.2, min: 0, max: 20}
      - {id: in_court, measure: cases.in_court_verdict_rate, target: 0.30, points: 10,
         coefficient: 50, min: 0, max: 15}
adjustments:
  - {rule: praise_city, points: 1}
  - {rule: meeting_absence, points: -0.5}
  - {rule: assessment_loss, points: [-2, -0.5]}
  - {rule: disciplinary, veto: true}
{extra}
"""


def court(extra: str = "") -> object:
    return parse_scheme(textwrap.dedent(COURT).replace("{extra}", extra))


def people(*rows: tuple[str, str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "person_id": [p for p, _ in rows],
            "name": [f"法官{p}" for p, _ in rows],
            "unit_id": "u1",
            "dept_id": [d for _, d in rows],
            "category": "judge",
        }
    )


def measures(rows: dict[str, tuple[float, float, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "month": "2026-03",
            "person_id": list(rows),
            "cases.closed_count": [v[0] for v in rows.values()],
            "cases.avg_duration_days": [v[1] for v in rows.values()],
            "cases.in_court_verdict_rate": [v[2] for v in rows.values()],
        }
    )


def register(*rows: tuple) -> pd.DataFrame:
    """(month, person, rule, points, count) rows of the adjustment register."""
    return pd.DataFrame(
        [
            {
                "month": m,
                "person_id": p,
                "date": f"{m}-10",
                "rule": r,
                "points": pts,
                "count": n,
                "note": None,
                "evidence": None,
                "source_file": "adjustments.csv",
                "source_line": i + 2,
            }
            for i, (m, p, r, pts, n) in enumerate(rows)
        ],
        columns=[
            "month",
            "person_id",
            "date",
            "rule",
            "points",
            "count",
            "note",
            "evidence",
            "source_file",
            "source_line",
        ],
    )


NO_SURVEYS = pd.DataFrame(columns=["person_id", "component_id", "score", "no_basis"])


def test_worked_example_court_month():
    # A: closed 20 + 0.5 × (24 − 20) = 22; duration 15 − 0.2 × (40 − 45) = 16;
    #    in-court 10 + 50 × (0.40 − 0.30) = 15; + city praise 1 = 54.0
    # B: 20 + 0.5 × (10 − 20) = 15; 15 − 0.2 × (60 − 45) = 12; 10 + 50 × (0.20 − 0.30) = 5;
    #    two missed meetings −0.5 × 2 = −1 → 31.0
    s = court()
    reg = register(
        ("2026-03", "A", "praise_city", None, 1), ("2026-03", "B", "meeting_absence", None, 2)
    )
    got = month_scores(
        "2026-03",
        people(("A", "d1"), ("B", "d1")),
        measures({"A": (24, 40, 0.40), "B": (10, 60, 0.20)}),
        NO_SURVEYS,
        reg,
        s,
    )
    totals = got.monthly.set_index("person_id")["total_score"]
    assert totals["A"] == pytest.approx(54.0) and totals["B"] == pytest.approx(31.0)
    ind = got.indicators.set_index(["person_id", "indicator_id"])["score"]
    assert [ind["A", i] for i in ("closed", "duration", "in_court")] == pytest.approx([22, 16, 15])
    assert [ind["B", i] for i in ("closed", "duration", "in_court")] == pytest.approx([15, 12, 5])
    adj = got.adjustments.set_index("person_id")
    assert adj.loc["B", "total"] == -1.0 and adj.loc["B", "points"] == -0.5
    assert got.monthly.set_index("person_id")["rank_in_scope"].to_dict() == {"A": 1, "B": 2}


def test_no_basis_scores_neutral_and_clamps_apply():
    # C has no closed judgments: in-court rate has no basis → 10 points (on target);
    # closed 60 → 20 + 0.5 × 40 = 40, clamped to 30; duration 200 → 15 − 31 = −16 → 0
    s = court()
    got = month_scores(
        "2026-03",
        people(("C", "d1")),
        measures({"C": (60, 200, float("nan"))}),
        NO_SURVEYS,
        register(),
        s,
    )
    ind = got.indicators.set_index("indicator_id")
    assert ind.loc["in_court", "no_basis"] and ind.loc["in_court", "score"] == 10
    assert ind.loc["closed", "score"] == 30 and ind.loc["duration", "score"] == 0
    assert got.monthly["total_score"].iloc[0] == 40


def test_indicator_veto_is_not_clamped_and_score_range_clamps_the_total():
    extra = "score_range: [0, 50]\n"
    text = textwrap.dedent(COURT).replace(
        "min: 0, max: 15}", "min: 0, max: 15, veto_below: 0.1, veto_points: -5}"
    )
    s = parse_scheme(text.replace("{extra}", extra))
    got = month_scores(
        "2026-03",
        people(("A", "d1"), ("B", "d1")),
        measures({"A": (24, 40, 0.05), "B": (40, 20, 0.6)}),
        NO_SURVEYS,
        register(),
        s,
    )
    ind = got.indicators.set_index(["person_id", "indicator_id"])["score"]
    assert ind["A", "in_court"] == -5  # 0.05 < 0.1: veto points, below the clamp's 0
    # B: 30 + 20 + 15 = 65 → clamped to the score range's 50
    assert got.monthly.set_index("person_id")["total_score"]["B"] == 50


def test_bonus_caps_per_month_and_per_year_and_deductions_uncapped():
    # caps 2 a month, 3 a year. Jan: +1 +1 +1 = 3 → 2. Feb: +2 → 2, but 1 left of the year → 1.
    # Mar: +1 → 0 left; the −2 deduction is never capped → −2.
    s = court("adjustment_caps: {bonus_per_month: 2, bonus_per_year: 3}\n")
    reg = register(
        ("2026-01", "A", "praise_city", None, 3),
        ("2026-02", "A", "praise_city", None, 2),
        ("2026-03", "A", "praise_city", None, 1),
        ("2026-03", "A", "assessment_loss", -2.0, 1),
    )
    priced = price_adjustments(reg, s)
    got = {
        m: adjustment_totals(priced, m, s)["adjustment_total"].iloc[0]
        for m in ("2026-01", "2026-02", "2026-03")
    }
    assert got == {"2026-01": 2.0, "2026-02": 1.0, "2026-03": -2.0}


def test_veto_rule_marks_the_month_and_adds_nothing():
    s = court()
    got = month_scores(
        "2026-03",
        people(("A", "d1")),
        measures({"A": (20, 45, 0.30)}),
        NO_SURVEYS,
        register(("2026-03", "A", "disciplinary", None, 1)),
        s,
    )
    row = got.monthly.iloc[0]
    assert row["veto"] and row["total_score"] == 45 and row["adjustment_total"] == 0


def test_ranks_share_places_and_red_flags_go_to_all_who_tie():
    s = court()
    m = {
        "A": (20, 45, 0.30),
        "B": (20, 45, 0.30),
        "C": (10, 45, 0.30),
        "D": (20, 45, 0.30),
        "E": (30, 45, 0.30),
        "F": (10, 45, 0.30),
    }
    got = month_scores(
        "2026-03",
        people(("A", "d1"), ("B", "d1"), ("C", "d1"), ("D", "d2"), ("E", "d2"), ("F", "d2")),
        measures(m),
        NO_SURVEYS,
        register(),
        s,
    )
    # A, B, D: 45; E: 25 + 15 + 10 = 50; C, F: 15 + 15 + 10 = 40
    ranks = got.monthly.set_index("person_id")["rank_in_scope"].to_dict()
    assert ranks == {"E": 1, "A": 2, "B": 2, "D": 2, "C": 5, "F": 5}
    flags = got.monthly.set_index("person_id")["red_flag"]
    assert flags[flags].index.tolist() == ["E"]
    # departments: d1 (45 + 45 + 40) / 3 = 43.33, d2 (45 + 50 + 40) / 3 = 45 → d2
    dept = got.departments.set_index("dept_id")
    assert dept["red_flag"].to_dict() == {"d1": False, "d2": True}


def test_lookup_and_among_agree_with_pandas_map_and_isin_on_arrow_text():
    keys = pd.Series(["judge", "staff", None, "judge", "clerk"], dtype="str")
    got = lookup(keys, {"judge": 1.5, "staff": 0.0})
    assert got.tolist() == [1.5, 0.0, None, 1.5, None]
    assert got.index.equals(keys.index)
    values = pd.Series(["clerk", "judge", "judge"], dtype="str")
    assert among(keys, values).tolist() == [True, False, False, True, True]
    assert among(keys, values).tolist() == keys.isin(values).tolist()


def test_indicator_rows_come_in_the_marts_key_order_whatever_the_schemes_order():
    # the scheme lists "service" before "casework" and in_court before closed: the rows come
    # person by person, then by component and indicator id as their code points sort
    s = parse_scheme(
        textwrap.dedent(COURT)
        .replace("{extra}", "")
        .replace(
            "components:\n",
            "components:\n  - id: service\n    weight: 0.5\n    indicators:\n"
            "      - {id: visits, measure: cases.closed_count, target: 1, points: 1,"
            " coefficient: 0}\n",
        )
    )
    order = [(c.id, i.id) for c in s.components for i in c.indicators]
    assert order[0] == ("service", "visits")  # declared first, sorts last
    got = indicator_scores(
        people(("B", "d1"), ("A", "d1")).sort_values("person_id"),
        measures({"A": (24, 40, 0.40), "B": (10, 60, 0.20)}),
        s,
    )
    keys = list(got[["person_id", "component_id", "indicator_id"]].itertuples(index=False))
    assert keys == sorted(keys)
    assert [tuple(k) for k in keys[:4]] == [
        ("A", "casework", "closed"),
        ("A", "casework", "duration"),
        ("A", "casework", "in_court"),
        ("A", "service", "visits"),
    ]
