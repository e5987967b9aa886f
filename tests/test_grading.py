"""Grading (relative quotas, ties, vetoes, absolute thresholds) and pacesetters, per scheme.md."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scoring.grading import grade
from scoring.numbers import quota
from scoring.pacesetters import pick_pacesetters
from scoring.scheme import Grade, Grading, Pacesetters

GENERIC = [
    Grade(grade="excellent", share=0.15),
    Grade(grade="good", share=0.80),
    Grade(grade="general"),
]
TOWN = [  # 15% excellent, good the rest, 5% general: a grade below the rest grade
    Grade(grade="excellent", share=0.15),
    Grade(grade="good"),
    Grade(grade="general", share=0.05),
]


def people(scores, *, scope="judge", graded=None, veto=None, casework=None, unit="u1"):
    """p01, p02, ... with the given scores; everyone graded, nobody vetoed unless said."""
    n = len(scores)
    return pd.DataFrame(
        {
            "person_id": [f"p{i + 1:02d}" for i in range(n)],
            "unit_id": unit,
            "scope": scope,
            "score": [float(s) for s in scores],
            "graded": [True] * n if graded is None else graded,
            "veto": [False] * n if veto is None else veto,
            "casework": [np.nan] * n if casework is None else casework,
        }
    )


def counts(out: pd.DataFrame) -> dict:
    return out["grade"].value_counts().to_dict()


def by_id(out: pd.DataFrame, col: str) -> dict:
    return dict(zip(out["person_id"], out[col], strict=True))


# --- relative grading -------------------------------------------------------------------------


def test_town_example_twenty_people():
    # 20 × 0.15 = 3.0 → 3 excellent; 20 × 0.80 = 16.0 → 16 good; general the rest = 1
    out = grade(people(range(100, 80, -1)), Grading(grades=GENERIC), [])
    assert list(out["grade"]) == ["excellent"] * 3 + ["good"] * 16 + ["general"]
    assert list(out["rank_in_scope"]) == list(range(1, 21))
    assert not out["placed_by_tiebreak"].any()


def test_town_grade_below_the_rest_fills_from_the_bottom():
    # 20 × 0.05 = 1.0 → the lowest score is general; 3 excellent; good the remaining 16
    out = grade(people(range(100, 80, -1)), Grading(grades=TOWN), [])
    assert list(out["grade"]) == ["excellent"] * 3 + ["good"] * 16 + ["general"]


def test_quotas_exceeding_n_are_cut_from_the_worst_shared_grade():
    # N = 3: a 0.5 → round_half_up(1.5) = 2, b 0.5 → 2; 4 > 3 so b (worst shared) is cut to 1
    grades = [Grade(grade="a", share=0.5), Grade(grade="b", share=0.5), Grade(grade="c")]
    out = grade(people([9, 8, 7]), Grading(grades=grades), [])
    assert list(out["grade"]) == ["a", "a", "b"]
    # N = 5: a 2.5→3, b rest, c 0.3×5=1.5→2, d 0.2×5=1.0→1; 6 > 5: d (worst shared) 1→0
    grades = [
        Grade(grade="a", share=0.5),
        Grade(grade="b"),
        Grade(grade="c", share=0.3),
        Grade(grade="d", share=0.2),
    ]
    out = grade(people([9, 8, 7, 6, 5]), Grading(grades=grades), [])
    assert list(out["grade"]) == ["a", "a", "a", "c", "c"]


def test_vetoed_go_to_the_worst_grade_beyond_its_quota():
    # N = 20 (vetoed counted): general 0.05×20 = 1, but two vetoed people (one the best score)
    # both take general; its places are used up, so no non-vetoed person is general
    veto = [True] + [False] * 18 + [True]
    out = grade(people(range(100, 80, -1), veto=veto), Grading(grades=TOWN), [])
    g = by_id(out, "grade")
    assert g["p01"] == "general" and g["p20"] == "general"
    assert counts(out) == {"excellent": 3, "good": 15, "general": 2}
    assert [g[f"p{i:02d}"] for i in (2, 3, 4, 5)] == ["excellent"] * 3 + ["good"]
    assert g["p19"] == "good"


def test_vetoed_reduce_the_places_left_in_the_worst_grade():
    # N = 40: general 0.05×40 = 2; one vetoed holds one place, the single lowest other takes the
    # second; excellent 0.15×40 = 6
    veto = [False] * 10 + [True] + [False] * 29
    out = grade(people(range(140, 100, -1), veto=veto), Grading(grades=TOWN), [])
    g = by_id(out, "grade")
    assert g["p11"] == "general" and g["p40"] == "general" and g["p39"] == "good"
    assert counts(out) == {"excellent": 6, "good": 32, "general": 2}


def test_vetoed_in_a_rest_worst_grade_leave_the_quotas_above_alone():
    # generic scheme, N = 20 incl. one vetoed top scorer: excellent 3 and good 16 go to the other
    # 19 people, so general holds only the vetoed person
    out = grade(people(range(100, 80, -1), veto=[True] + [False] * 19), Grading(grades=GENERIC), [])
    assert counts(out) == {"excellent": 3, "good": 16, "general": 1}
    assert by_id(out, "grade")["p01"] == "general"
    assert by_id(out, "grade")["p20"] == "good"


STRADDLE = [95, 94, 93, 93, 93] + list(range(90, 75, -1))  # 20 people; p03-p05 tie on 3rd place


def test_strict_tie_at_the_excellent_boundary_is_decided_by_the_tiebreak():
    # excellent 3 = p01, p02 + one of p03-p05; casework mean decides: p04 (60) over p05 (55), p03
    casework = [np.nan, np.nan, 50.0, 60.0, 55.0] + [np.nan] * 15
    out = grade(people(STRADDLE, casework=casework), Grading(grades=GENERIC), ["casework"])
    g, t = by_id(out, "grade"), by_id(out, "placed_by_tiebreak")
    assert [g[p] for p in ("p01", "p02", "p03", "p04", "p05")] == [
        "excellent",
        "excellent",
        "good",
        "excellent",
        "good",
    ]
    assert [p for p, v in t.items() if v] == ["p03", "p04", "p05"]  # every person of the tie
    assert counts(out) == {"excellent": 3, "good": 16, "general": 1}
    assert list(out["rank_in_scope"][:6]) == [1, 2, 3, 3, 3, 6]


def test_strict_tie_skips_a_missing_component_then_falls_back_to_person_id():
    # "conduct" is not assessed (NaN for all): skipped, casework decides between p03 and p05;
    # p04 ties p05 on casework too, and with equal casework p04 < p05 by person_id
    frame = people(STRADDLE, casework=[0, 0, 40.0, 55.0, 55.0] + [0] * 15)
    frame["conduct"] = np.nan
    out = grade(frame, Grading(grades=GENERIC), ["conduct", "casework"])
    assert by_id(out, "grade")["p04"] == "excellent"
    assert by_id(out, "grade")["p05"] == "good" and by_id(out, "grade")["p03"] == "good"
    # no tiebreak at all: person_id ascending, p03 wins
    out = grade(people(STRADDLE), Grading(grades=GENERIC), [])
    assert by_id(out, "grade")["p03"] == "excellent" and by_id(out, "grade")["p04"] == "good"
    assert by_id(out, "placed_by_tiebreak")["p05"]


def test_generous_tie_all_get_excellent_and_good_shrinks():
    # excellent quota 3, the tie on 3rd place takes p03-p05: 5 excellent; good 16 - 2 = 14
    out = grade(people(STRADDLE), Grading(grades=GENERIC, ties="generous"), [])
    assert counts(out) == {"excellent": 5, "good": 14, "general": 1}
    assert not out["placed_by_tiebreak"].any()
    assert by_id(out, "grade")["p19"] == "good" and by_id(out, "grade")["p20"] == "general"


def test_generous_tie_at_a_bottom_grade_keeps_the_better_grade():
    # town: general 1 place, but p19 and p20 tie on the lowest score: both stay good
    out = grade(
        people(list(range(100, 82, -1)) + [50, 50]), Grading(grades=TOWN, ties="generous"), []
    )
    assert counts(out) == {"excellent": 3, "good": 17}
    out = grade(people(list(range(100, 82, -1)) + [50, 50]), Grading(grades=TOWN), [])
    assert by_id(out, "grade")["p20"] == "general" and by_id(out, "placed_by_tiebreak")["p19"]


def test_binary_noise_ties():
    # 15.000000000000002 and 15 are the same score: same rank, and a straddling tie
    scores = [20, 19, 15.000000000000002, 15] + [10] * 16
    out = grade(people(scores), Grading(grades=GENERIC), [])
    assert list(out["rank_in_scope"][:4]) == [1, 2, 3, 3]
    assert by_id(out, "grade")["p03"] == "excellent" and by_id(out, "grade")["p04"] == "good"
    assert by_id(out, "placed_by_tiebreak")["p04"]


def test_not_graded_get_no_grade_and_do_not_count_in_n():
    # 21 rows, p21 not graded (fewer than min_months) and p22 without a score: N = 20 → 3/16/1
    frame = people(list(range(100, 80, -1)) + [99, np.nan], graded=[True] * 20 + [False, True])
    out = grade(frame, Grading(grades=GENERIC), [])
    assert out["grade"].iloc[20] is None and out["grade"].iloc[21] is None
    assert counts(out) == {"excellent": 3, "good": 16, "general": 1}
    assert out["rank_in_scope"].iloc[20] == 2  # ranked among people with a score
    assert out["rank_in_scope"].isna().iloc[21]


def test_scopes_are_graded_apart_and_row_order_is_kept():
    a = people(range(100, 80, -1), scope="judge")
    b = people([70, 60], scope="staff").assign(person_id=["q1", "q2"])
    frame = pd.concat([a, b]).sample(frac=1, random_state=3)
    frame.index = range(100, 122)
    out = grade(frame, Grading(grades=GENERIC), [])
    assert list(out.index) == list(frame.index) and list(out["person_id"]) == list(
        frame["person_id"]
    )
    # staff: N = 2: excellent 0.3 → 0, good 1.6 → 2, general 0
    assert by_id(out, "grade")["q1"] == "good" and by_id(out, "grade")["q2"] == "good"
    assert by_id(out, "rank_in_scope")["q2"] == 2
    assert counts(out) == {"excellent": 3, "good": 18, "general": 1}


def test_competition_ranking_1224():
    out = grade(people([10, 9, 9, 8]), Grading(grades=GENERIC), [])
    assert list(out["rank_in_scope"]) == [1, 2, 2, 4]


def test_absolute_thresholds():
    grades = [
        Grade(grade="excellent", min=90),
        Grade(grade="competent", min=75),
        Grade(grade="basic", min=60),
        Grade(grade="incompetent"),
    ]
    scores = [90, 89.9999999, 89.99, 75, 60, 59.9, 95]  # 89.9999999 is 90 at 6 decimals
    out = grade(
        people(scores, veto=[False] * 6 + [True]), Grading(method="absolute", grades=grades), []
    )
    assert list(out["grade"]) == [
        "excellent",
        "excellent",
        "competent",
        "competent",
        "basic",
        "incompetent",
        "incompetent",  # vetoed
    ]
    # no catch-all: below every min still gets the worst grade
    out = grade(people([80, 10]), Grading(method="absolute", grades=grades[:3]), [])
    assert list(out["grade"]) == ["competent", "basic"]


def test_relative_needs_exactly_one_rest_grade():
    with pytest.raises(ValueError, match="exactly one grade without a share"):
        # the scheme model refuses this too; grade() must not trust a hand-built model
        grade(people([1, 2]), Grading.model_construct(grades=[Grade(grade="a", share=1.0)]), [])


# --- property: strict quotas hold ---------------------------------------------------------------


def _cut_quotas(n: int, grades: list[Grade]) -> list[int]:
    q = [0 if g.share is None else quota(n, g.share) for g in grades]
    excess = max(sum(q) - n, 0)
    for k in range(len(q) - 1, -1, -1):
        cut = min(q[k], excess)
        q[k] -= cut
        excess -= cut
    return q


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["a", "b"]),  # scope
            st.sampled_from([70.0, 80.0, 80.0, 85.5, 90.0, 90.000000000001]),
            st.booleans(),  # graded (mostly)
            st.integers(0, 9),  # veto when 0
            st.sampled_from([1.0, 2.0, np.nan]),  # tiebreak
        ),
        max_size=60,
    ),
    grades=st.sampled_from([GENERIC, TOWN, [Grade(grade="x", share=0.34), Grade(grade="y")]]),
)
def test_strict_never_exceeds_a_shared_quota(rows, grades):
    frame = pd.DataFrame(
        {
            "person_id": [f"p{i:03d}" for i in range(len(rows))],
            "scope": [r[0] for r in rows],
            "score": [r[1] for r in rows],
            "graded": [r[2] or r[3] > 2 for r in rows],
            "veto": [r[3] == 0 for r in rows],
            "casework": [r[4] for r in rows],
        }
    )
    out = grade(frame, Grading(grades=grades), ["casework"])
    worst = grades[-1].grade
    rank = {g.grade: k for k, g in enumerate(grades)}
    for _, s in out.groupby("scope"):
        graded = s[s["graded"]]
        assert graded["grade"].notna().all() and s.loc[~s["graded"], "grade"].isna().all()
        q = _cut_quotas(len(graded), grades)
        vetoed = graded["veto"]
        assert (graded.loc[vetoed, "grade"] == worst).all()
        for k, g in enumerate(grades):
            if g.share is None:
                continue
            held = (graded["grade"] == g.grade).sum()
            if g.grade == worst:
                assert (graded.loc[~vetoed, "grade"] == worst).sum() <= max(q[k] - vetoed.sum(), 0)
            else:
                assert held <= q[k]
        # a higher score never gets a worse grade (among the non-vetoed)
        ok = graded[~vetoed].assign(
            k=lambda d: d["grade"].map(rank), s=lambda d: d["score"].round(6)
        )
        ok = ok.sort_values(["s", "k"], ascending=[False, True])
        assert (np.diff(ok["k"].to_numpy()) >= 0).all()


# --- pacesetters ------------------------------------------------------------------------------


def nominations(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["person_id", "month", "source_file", "source_line"]).assign(
        reason="好人好事", approved_by="党组"
    )


NO_NOMS = nominations([])


def pace(frame, cfg, noms=NO_NOMS, headcount=None, grading=None, tiebreak=()):
    graded = grade(frame, grading or Grading(grades=GENERIC), list(tiebreak))
    hc = pd.Series(headcount or {"u1": 100})
    return pick_pacesetters(
        graded, noms, hc, cfg, grading or Grading(grades=GENERIC), list(tiebreak)
    )


@pytest.mark.parametrize(
    ("n", "cfg", "expected"),
    [
        (15, Pacesetters(share=0.1), 1),  # floor(1.5) = 1
        (15, Pacesetters(share=0.1, rounding="half_up"), 2),  # round_half_up(1.5) = 2
        (4, Pacesetters(share=0.1), 0),  # floor(0.4) = 0
        (4, Pacesetters(share=0.1, at_least_one=True), 1),  # at least one when N ≥ 1
        (100, Pacesetters(share=0.29), 29),  # 100 × 0.29 as written, not 28.999…
    ],
)
def test_rank_route_count(n, cfg, expected):
    out, report = pace(people(range(200, 200 - n, -1)), cfg)
    assert out["pacesetter"].sum() == expected
    assert list(out["pacesetter"][:expected]) == [True] * expected
    assert set(out.loc[out["pacesetter"], "pacesetter_route"]) <= {"rank"}
    assert out.loc[~out["pacesetter"], "pacesetter_route"].isna().all()
    assert report.empty and list(report.columns) == [
        "person_id",
        "unit_id",
        "month",
        "source_file",
        "source_line",
        "reason_refused",
    ]


def test_rank_route_n_excludes_vetoed_and_not_graded():
    # 22 rows, 1 vetoed (the best) and 1 not graded: N = 20 → floor(2.0) = 2: p02, p03
    frame = people(range(100, 78, -1), veto=[True] + [False] * 21, graded=[True] * 21 + [False])
    out, _ = pace(frame, Pacesetters(share=0.1))
    assert list(out.loc[out["pacesetter"], "person_id"]) == ["p02", "p03"]
    # N = 19 → floor(1.9) = 1
    frame = people(range(100, 79, -1), veto=[True] + [False] * 20, graded=[True] * 20 + [False])
    out, _ = pace(frame, Pacesetters(share=0.1))
    assert list(out.loc[out["pacesetter"], "person_id"]) == ["p02"]


def test_rank_route_boundary_tie_strict_and_generous():
    # N = 20, 2 places; p02 and p03 tie on 2nd place
    scores = [99, 98, 98] + list(range(90, 73, -1))
    casework = [1.0, 1.0, 5.0] + [1.0] * 17
    out, _ = pace(people(scores, casework=casework), Pacesetters(share=0.1), tiebreak=["casework"])
    assert list(out.loc[out["pacesetter"], "person_id"]) == ["p01", "p03"]  # casework decides
    generous = Grading(grades=GENERIC, ties="generous")
    out, _ = pace(people(scores), Pacesetters(share=0.1), grading=generous)
    assert list(out.loc[out["pacesetter"], "person_id"]) == ["p01", "p02", "p03"]


def test_nominations_cap_refusals_and_duplicates():
    # unit u1: headcount 100 × 0.02 = 2 nominations; 22 people, p18 not graded and p19 vetoed:
    # N = 20, share 0.1 → p01, p02 by rank
    frame = people(range(100, 78, -1), veto=[False] * 18 + [True, False, False, False])
    frame.loc[17, "graded"] = False  # p18
    noms = nominations(
        [
            ("p10", "2026-02", "b.xlsx", 2),  # third in order: over the cap
            ("p05", "2026-01", "b.xlsx", 3),  # second: taken
            ("p05", "2026-03", "a.xlsx", 2),  # p05 again: duplicate
            ("p04", "2026-01", "a.xlsx", 9),  # first: taken
            ("p19", "2026-01", "a.xlsx", 5),  # vetoed
            ("p18", "2026-01", "a.xlsx", 6),  # not graded
            ("x99", "2026-01", "a.xlsx", 7),  # unknown person
            ("p01", "2026-01", "a.xlsx", 8),  # already a pacesetter by rank
            ("p10", "2026-04", "a.xlsx", 2),  # p10 again, never taken: still over the cap
        ]
    )
    out, report = pace(frame, Pacesetters(share=0.1, nomination_cap=0.02), noms)
    route = by_id(out, "pacesetter_route")
    assert {p for p, r in route.items() if r == "rank"} == {"p01", "p02"}
    assert {p for p, r in route.items() if r == "nomination"} == {"p04", "p05"}
    assert out["pacesetter"].sum() == 4
    assert list(zip(report["person_id"], report["reason_refused"], strict=True)) == [
        ("p19", "vetoed"),
        ("p18", "not graded"),
        ("x99", "unknown person"),
        ("p01", "already a pacesetter by rank"),
        ("p10", "over the unit's cap"),
        ("p05", "duplicate"),
        ("p10", "over the unit's cap"),
    ]
    assert report["unit_id"].tolist()[:2] == ["u1", "u1"] and pd.isna(report["unit_id"].iloc[2])
    assert report["source_line"].tolist() == [5, 6, 7, 8, 2, 2, 2]


def test_nomination_cap_floors_per_unit():
    # u1 headcount 149 × 0.02 = 2.98 → 2; u2 headcount 50 × 0.02 = 1.0 → 1; nobody by rank
    frame = pd.concat(
        [people([90, 80, 70, 60], unit="u1"), people([90, 80], unit="u2").assign(scope="staff")]
    )
    frame["person_id"] = ["a1", "a2", "a3", "a4", "b1", "b2"]
    noms = nominations([(p, "2026-01", "n.xlsx", i + 2) for i, p in enumerate(frame["person_id"])])
    out, report = pace(
        frame, Pacesetters(share=0.1, nomination_cap=0.02), noms, {"u1": 149, "u2": 50}
    )
    assert list(out.loc[out["pacesetter"], "person_id"]) == ["a1", "a2", "b1"]
    assert set(out["pacesetter_route"].dropna()) == {"nomination"}
    assert report["person_id"].tolist() == ["a3", "a4", "b2"]
