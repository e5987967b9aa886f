"""Survey score (scheme.md "Survey score"): every expected figure is worked out by hand."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scoring.scheme import Scheme, load_scheme, parse_scheme
from scoring.survey import COMPONENT_COLUMNS, RELATION_COLUMNS, survey_scores

HEAD = "id: t\nname: t\nyear: 2026\ncategories: {staff: 一般工作人员}\ncomponents:\n"


def scheme(*components: str) -> Scheme:
    """A minimal scheme; each argument is one component written as a YAML flow mapping."""
    return parse_scheme(HEAD + "".join(f"  - {c}\n" for c in components))


def survey(cid: str = "conduct", **kw: object) -> str:
    knobs = {"items": "{x: 1}", "relations": "{peer: 1}", "min_raters": 1} | kw
    body = ", ".join(f"{k}: {v}" for k, v in knobs.items())
    return f"{{id: {cid}, weight: 1, survey: {{{body}}}}}"


def ratings(rows: list[tuple], survey_id: str = "S1", period: str = "2026-Q1") -> pd.DataFrame:
    """rows: (rater, relation, ratee, item, score) in one round."""
    frame = pd.DataFrame(rows, columns=["rater_hash", "relation", "ratee_id", "item", "score"])
    frame["score"] = frame["score"].astype(float)
    return frame.assign(survey_id=survey_id, period=period)


def comp(frame: pd.DataFrame, person: str, component: str = "conduct") -> pd.Series:
    hit = frame[frame["person_id"].eq(person) & frame["component_id"].eq(component)]
    assert len(hit) == 1
    return hit.iloc[0]


def rel(frame: pd.DataFrame, person: str, relation: str, component: str = "conduct") -> pd.Series:
    hit = frame[
        frame["person_id"].eq(person)
        & frame["component_id"].eq(component)
        & frame["relation"].eq(relation)
    ]
    assert len(hit) == 1
    return hit.iloc[0]


def test_item_weights_renormalised_over_the_items_a_rater_scored():
    s = scheme(survey(items="{a: 0.5, b: 0.3, c: 0.2}"))
    resp = ratings(
        [
            ("r1", "peer", "P", "a", 80),
            ("r1", "peer", "P", "b", 60),
            ("r1", "peer", "P", "c", 100),
            ("r2", "peer", "P", "a", 90),  # r2 skipped c
            ("r2", "peer", "P", "b", 70),
        ]
    )
    c, r = survey_scores(resp, s)
    # r1 = 0.5*80 + 0.3*60 + 0.2*100 = 40 + 18 + 20 = 78
    # r2 = (0.5*90 + 0.3*70) / (0.5 + 0.3) = (45 + 21) / 0.8 = 82.5
    # peer = (78 + 82.5) / 2 = 80.25; the only relation, so the component is 80.25
    assert rel(r, "P", "peer")["raters"] == 2
    assert rel(r, "P", "peer")["score"] == pytest.approx(80.25)
    assert comp(c, "P")["score"] == pytest.approx(80.25)
    assert comp(c, "P")["score_raw"] == pytest.approx(80.25)
    assert not comp(c, "P")["no_basis"]


def test_relation_below_min_raters_left_out_self_exempt_unweighted_reported():
    s = scheme(survey(relations="{self: 0.2, superior: 0.5, peer: 0.3}", min_raters=2))
    resp = ratings(
        [
            ("P", "self", "P", "x", 90),  # 1 rater, but self is exempt
            ("s1", "superior", "P", "x", 60),  # 1 rater < 2: suppressed
            ("p1", "peer", "P", "x", 70),
            ("p2", "peer", "P", "x", 80),
            ("u1", "public", "P", "x", 10),  # public has no weight in this scheme
            ("u2", "public", "P", "x", 10),
        ]
    )
    c, r = survey_scores(resp, s)
    # self 90, peer (70 + 80) / 2 = 75; superior left out, weights self 0.2 + peer 0.3 = 0.5
    # component = (0.2*90 + 0.3*75) / 0.5 = (18 + 22.5) / 0.5 = 81
    assert comp(c, "P")["score"] == pytest.approx(81)
    assert comp(c, "P")["score_raw"] == pytest.approx(81)
    sup = rel(r, "P", "superior")
    assert sup["suppressed"] and sup["raters"] == 1  # counted, but its 60 is never reported
    assert pd.isna(sup["score"]) and pd.isna(sup["score_raw"])
    own = rel(r, "P", "self")
    assert not own["suppressed"] and own["raters"] == 1
    pub = rel(r, "P", "public")
    assert not pub["suppressed"] and pub["raters"] == 2 and pub["score"] == pytest.approx(10)
    assert r["raters"].dtype == "int64" and r["suppressed"].dtype == bool


def test_no_relation_left_is_no_basis_and_scores_neutral_points():
    s = scheme(survey(relations="{superior: 0.6, peer: 0.4}", min_raters=3, neutral_points=60))
    resp = ratings(
        [
            ("s1", "superior", "P", "x", 90),  # 2 superiors < 3: suppressed, nothing left
            ("s2", "superior", "P", "x", 70),
            ("Q", "self", "Q", "x", 100),  # self is not weighted here: no basis either
        ]
    )
    c, r = survey_scores(resp, s)
    for person in ("P", "Q"):
        row = comp(c, person)
        assert row["no_basis"] and row["score"] == 60 and row["score_raw"] == 60
    # the suppressed relation still reports its raters, never its score (it would be 80)
    assert rel(r, "P", "superior")["raters"] == 2
    assert pd.isna(rel(r, "P", "superior")["score"])


# A neutral rater set: every rater's mean is 65, the grand mean is 65, so nothing is shifted.
NEUTRAL = [
    ("A", "peer", "P", "x", 80),
    ("A", "peer", "Q", "x", 60),
    ("A", "peer", "R", "x", 70),
    ("A", "peer", "S", "x", 50),  # A: (80 + 60 + 70 + 50) / 4 = 65
    ("C", "peer", "P", "x", 70),
    ("C", "peer", "Q", "x", 60),  # C: 65
    ("D", "peer", "R", "x", 80),
    ("D", "peer", "S", "x", 50),  # D: 65
]


def test_lenient_rater_corrected_to_what_a_neutral_set_gives():
    s = scheme(survey(normalize="rater_mean"))
    # C is lenient (+10 to everyone C rates), D harsh (-10) over other ratees
    lenient = [
        (rater, relation, ratee, item, pts + 10 * (rater == "C") - 10 * (rater == "D"))
        for rater, relation, ratee, item, pts in NEUTRAL
    ]
    c, r = survey_scores(ratings(lenient), s)
    c0, _ = survey_scores(ratings(NEUTRAL), s)
    # grand mean (80+60+70+50 + 80+70 + 70+40) / 8 = 520 / 8 = 65
    # means A 65, C 75, D 55 -> shifts A 0, C -10, D +10: every point back to its neutral value
    # corrected = neutral: P (80+70)/2 = 75, Q (60+60)/2 = 60, R (70+80)/2 = 75, S (50+50)/2 = 50
    # raw:                 P (80+80)/2 = 80, Q (60+70)/2 = 65, R (70+70)/2 = 70, S (50+40)/2 = 45
    want = {"P": (75, 80), "Q": (60, 65), "R": (75, 70), "S": (50, 45)}
    for person, (corrected, raw) in want.items():
        assert comp(c, person)["score"] == pytest.approx(corrected)
        assert comp(c, person)["score_raw"] == pytest.approx(raw)
        assert comp(c0, person)["score"] == pytest.approx(corrected)
        assert rel(r, person, "peer")["score"] == pytest.approx(corrected)
        assert rel(r, person, "peer")["score_raw"] == pytest.approx(raw)


def test_without_normalise_score_is_the_raw_figure():
    s = scheme(survey())
    lenient = [(a, b, p, i, v + 10 * (a == "C")) for a, b, p, i, v in NEUTRAL]
    c, _ = survey_scores(ratings(lenient), s)
    # P = (80 + 80) / 2 = 80 both ways
    assert comp(c, "P")["score"] == pytest.approx(80) == comp(c, "P")["score_raw"]


def test_shift_is_clipped_at_100():
    s = scheme(survey(normalize="rater_mean"))
    resp = ratings(
        [
            ("A", "peer", "P", "x", 100),
            ("A", "peer", "Q", "x", 20),  # A mean 60
            ("B", "peer", "P", "x", 80),
            ("B", "peer", "Q", "x", 80),  # B mean 80
        ]
    )
    c, _ = survey_scores(resp, s)
    # grand mean (100 + 20 + 80 + 80) / 4 = 70; shifts A +10, B -10
    # A on P: 110 -> clipped 100; P = (100 + 70) / 2 = 85 (90 without the clip); raw (100+80)/2 = 90
    # Q = (30 + 70) / 2 = 50; raw (20 + 80) / 2 = 50
    assert comp(c, "P")["score"] == pytest.approx(85)
    assert comp(c, "P")["score_raw"] == pytest.approx(90)
    assert comp(c, "Q")["score"] == pytest.approx(50)


def test_self_ratings_are_not_shifted_but_count_in_the_raters_mean():
    s = scheme(survey(relations="{self: 1, peer: 1}", normalize="rater_mean"))
    resp = ratings(
        [
            ("A", "peer", "P", "x", 90),
            ("A", "peer", "Q", "x", 90),
            ("B", "peer", "P", "x", 70),
            ("B", "peer", "Q", "x", 50),  # B mean 60
            ("A", "self", "A", "x", 120 - 30),  # A's self 90: A's mean over all its points 90
        ]
    )
    c, r = survey_scores(resp, s)
    # grand mean over non-self only (90 + 90 + 70 + 50) / 4 = 75; shifts A -15, B +15
    # P = (75 + 85) / 2 = 80, Q = (75 + 65) / 2 = 70; A's self rating is never shifted: 90
    assert comp(c, "P")["score"] == pytest.approx(80)
    assert comp(c, "Q")["score"] == pytest.approx(70)
    assert comp(c, "A")["score"] == pytest.approx(90)
    # with a self rating of 100, A's mean is (90 + 90 + 100) / 3 = 93.33..., shift -18.33...
    resp.loc[resp["relation"].eq("self"), "score"] = 100.0
    c, _ = survey_scores(resp, s)
    shift_a = 75 - (90 + 90 + 100) / 3
    assert comp(c, "P")["score"] == pytest.approx((90 + shift_a + 85) / 2)
    assert comp(c, "A")["score"] == pytest.approx(100)


def test_one_round_feeds_two_components_by_item():
    s = scheme(
        survey("conduct", items="{de: 0.5, neng: 0.5}", relations="{peer: 1}"),
        survey("leading", items="{lead: 1}", relations="{superior: 1}"),
    )
    resp = ratings(
        [
            ("A", "peer", "P", "de", 80),
            ("A", "peer", "P", "neng", 60),
            ("A", "peer", "P", "lead", 50),
            ("S", "superior", "P", "de", 40),
            ("S", "superior", "P", "lead", 90),
            ("S", "superior", "P", "zz", 0),  # an item of no component: ignored
        ]
    )
    c, r = survey_scores(resp, s)
    # conduct: peer A (0.5*80 + 0.5*60) = 70; superior S 40 carries no weight here -> 70
    # leading: superior S 90; peer A 50 carries no weight here -> 90
    assert len(c) == 2
    assert comp(c, "P", "conduct")["score"] == pytest.approx(70)
    assert comp(c, "P", "leading")["score"] == pytest.approx(90)
    assert rel(r, "P", "superior", "conduct")["score"] == pytest.approx(40)
    assert rel(r, "P", "peer", "leading")["score"] == pytest.approx(50)
    assert len(r) == 4


def test_two_rounds_are_kept_apart():
    s = scheme(survey(min_raters=2))
    q1 = ratings([("A", "peer", "P", "x", 80), ("B", "peer", "P", "x", 70)], "S1", "2026-Q1")
    q2 = ratings([("A", "peer", "P", "x", 60)], "S2", "2026-Q2")
    c, r = survey_scores(pd.concat([q1, q2], ignore_index=True), s)
    # S1: 2 raters, (80 + 70) / 2 = 75; S2: 1 rater < 2 -> no basis (neutral 0);
    # pooled they would be 3 ratings from 2 raters: neither figure may appear
    one = c[c["survey_id"].eq("S1")].iloc[0]
    two = c[c["survey_id"].eq("S2")].iloc[0]
    assert (one["period"], one["score"], one["no_basis"]) == ("2026-Q1", 75, False)
    assert (two["period"], two["score"], two["no_basis"]) == ("2026-Q2", 0, True)
    assert r.set_index("survey_id")["raters"].to_dict() == {"S1": 2, "S2": 1}


def test_rounds_normalise_separately():
    s = scheme(survey(normalize="rater_mean"))
    q1 = ratings([("A", "peer", "P", "x", 90), ("B", "peer", "Q", "x", 70)], "S1", "2026-Q1")
    q2 = ratings([("A", "peer", "P", "x", 50), ("B", "peer", "Q", "x", 50)], "S2", "2026-Q2")
    c, _ = survey_scores(pd.concat([q1, q2], ignore_index=True), s)
    # S1: grand 80, A 90 -> -10, B 70 -> +10: P 80, Q 80
    # S2: grand 50, no shift: P 50, Q 50
    # (pooled: grand 65, A's mean 70 -> shift -5 would give P 85 and 45)
    got = c.set_index(["survey_id", "person_id"])["score"].to_dict()
    want = {("S1", "P"): 80, ("S1", "Q"): 80, ("S2", "P"): 50, ("S2", "Q"): 50}
    assert got == pytest.approx(want)


def test_no_rater_level_data_in_outputs():
    s = scheme(survey(relations="{superior: 0.5, peer: 0.5}", normalize="rater_mean"))
    resp = ratings([(f"hash{i}", "peer", "P", "x", 60 + i) for i in range(4)])
    c, r = survey_scores(resp, s)
    assert list(c.columns) == COMPONENT_COLUMNS and list(r.columns) == RELATION_COLUMNS
    assert not any("rater_hash" in f.columns for f in (c, r))
    cells = set(c.astype(str).to_numpy().ravel()) | set(r.astype(str).to_numpy().ravel())
    assert not cells & set(resp["rater_hash"])
    assert len(r) == 1  # one row per relation, never one per rater


def test_empty_and_unknown_items_give_empty_frames():
    s = scheme(survey())
    c, r = survey_scores(ratings([("A", "peer", "P", "zz", 80)]), s)
    assert c.empty and r.empty
    assert list(c.columns) == COMPONENT_COLUMNS and list(r.columns) == RELATION_COLUMNS


def test_demo_scheme_runs():
    resp = ratings(
        [(f"r{i}", "superior", "P", item, 80) for i in range(3) for item in ("de", "neng", "ji")]
    )
    c, _ = survey_scores(resp, load_scheme("demo"))
    # 3 superiors (min_raters 3) all give 80: superior 80 is the only relation left -> 80
    assert comp(c, "P")["score"] == pytest.approx(80) and not comp(c, "P")["no_basis"]


PROPERTY_SCHEME = scheme(
    survey(
        items="{a: 0.5, b: 0.3, c: 0.2}",
        relations="{self: 0.1, superior: 0.4, peer: 0.5}",
        min_raters=2,
    )
)
RELATIONS = ["self", "superior", "peer", "subordinate"]


@settings(max_examples=60, deadline=None)
@given(
    relation_of=st.lists(st.sampled_from(RELATIONS), min_size=6, max_size=6),
    rows=st.lists(
        st.tuples(
            st.integers(0, 5),
            st.sampled_from(["P", "Q"]),
            st.sampled_from(["a", "b", "c"]),
            st.floats(0, 100, allow_nan=False),
        ),
        min_size=1,
        max_size=30,
        unique_by=lambda t: (t[0], t[1], t[2]),
    ),
)
def test_score_lies_within_the_points_received(relation_of, rows):
    resp = ratings([(f"r{k}", relation_of[k], p, item, pts) for k, p, item, pts in rows])
    c, _ = survey_scores(resp, PROPERTY_SCHEME)
    received = resp.groupby("ratee_id")["score"].agg(["min", "max"])
    got = c[~c["no_basis"]].set_index("person_id").join(received)
    assert (got["score"] >= got["min"] - 1e-9).all() and (got["score"] <= got["max"] + 1e-9).all()
    assert (got["score"] == got["score_raw"]).all()


# --- the vectorised computation against a plain restatement of scheme.md -------------------------
def reference(resp: pd.DataFrame, s: Scheme) -> tuple[dict, dict]:
    """scheme.md "Survey score" in plain Python, one group at a time: {key: figures} per
    component and per relation, for comparison with the grouped computation."""
    comps = {c.id: c.survey for c in s.components if c.survey}
    comp_of = {i: cid for cid, sv in comps.items() for i in sv.items}
    key = ["survey_id", "period", "ratee_id", "component", "relation", "rater_hash", "item"]
    known = resp[resp["item"].isin(list(comp_of)) & resp["score"].notna()]
    known = known.assign(component=known["item"].map(comp_of))[[*key, "score"]]
    rows = list(known.itertuples(index=False, name=None))

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else float("nan")

    corrected = []
    for sid, period, _, cid, relation, rater, _, pts in rows:
        if comps[cid].normalize == "rater_mean" and relation != "self":
            same = [x for x in rows if x[:2] == (sid, period) and x[3] == cid]
            grand = mean([x[7] for x in same if x[4] != "self"])
            own = mean([x[7] for x in same if x[5] == rater])
            pts = min(max(pts + grand - own, 0.0), 100.0)
        corrected.append(pts)
    raters: dict[tuple, list] = {}
    for row, corr in zip(rows, corrected, strict=True):
        raters.setdefault(row[:6], []).append((comps[row[3]].items[row[6]], corr, row[7]))
    relations: dict[tuple, list] = {}
    for key, marks in raters.items():
        total = sum(w for w, _, _ in marks)
        if total > 0:
            score = sum(w * c for w, c, _ in marks) / total
            raw = sum(w * r for w, _, r in marks) / total
            relations.setdefault(key[:5], []).append((score, raw))
    rel_out, by_comp = {}, {}
    for key, scores in relations.items():
        sv = comps[key[3]]
        suppressed = len(scores) < sv.min_raters and key[4] != "self"
        weight = 0.0 if suppressed else sv.relations.get(key[4], 0.0)
        figures = (len(scores), mean([a for a, _ in scores]), mean([b for _, b in scores]))
        hidden = (figures[0], float("nan"), float("nan"))  # a suppressed figure is never shown
        rel_out[key] = (*(hidden if suppressed else figures), suppressed)
        by_comp.setdefault(key[:4], []).append((weight, figures[1], figures[2]))
    comp_out = {}
    for key, parts in by_comp.items():
        total = sum(w for w, _, _ in parts)
        if total > 0:
            score = sum(w * a for w, a, _ in parts) / total
            raw = sum(w * b for w, _, b in parts) / total
            comp_out[key] = (score, raw, False)
        else:
            neutral = float(comps[key[3]].neutral_points)
            comp_out[key] = (neutral, neutral, True)
    return comp_out, rel_out


def assert_matches_reference(resp: pd.DataFrame, s: Scheme) -> None:
    c, r = survey_scores(resp, s)
    want_c, want_r = reference(resp, s)
    assert list(c.columns) == COMPONENT_COLUMNS and list(r.columns) == RELATION_COLUMNS
    # sorted by the key, one row per key
    assert list(map(tuple, c[COMPONENT_KEY_COLUMNS].to_numpy())) == sorted(want_c)
    assert list(map(tuple, r[RELATION_KEY_COLUMNS].to_numpy())) == sorted(want_r)
    for row in c.itertuples(index=False):
        score, raw, no_basis = want_c[tuple(row[:4])]
        assert (row.score, row.score_raw) == pytest.approx((score, raw), rel=1e-9, abs=1e-9)
        assert row.no_basis == no_basis
    for row in r.itertuples(index=False):
        raters, score, raw, suppressed = want_r[tuple(row[:5])]
        assert row.raters == raters and row.suppressed == suppressed
        got = (row.score, row.score_raw)
        assert got == pytest.approx((score, raw), rel=1e-9, abs=1e-9, nan_ok=True)


COMPONENT_KEY_COLUMNS = COMPONENT_COLUMNS[:4]
RELATION_KEY_COLUMNS = RELATION_COLUMNS[:5]
MIXED_SCHEME = scheme(
    survey(
        "zeta",
        items="{a: 0.5, b: 0.3, c: 0}",
        relations="{self: 0.1, superior: 0.4, peer: 0.5}",
        min_raters=2,
        normalize="rater_mean",
        neutral_points=60,
    ),
    survey("alpha", items="{d: 1, e: 0.25}", relations="{peer: 1, public: 0.5}", min_raters=1),
)


@settings(max_examples=80, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["S1", "S10", "S2"]),
            st.sampled_from(["2026-Q1", "2026-H1"]),
            st.sampled_from(["r1", "r2", "r3", "P", "Q"]),
            st.sampled_from([*RELATIONS, "public"]),
            st.sampled_from(["Q", "P", "R"]),
            st.sampled_from(["a", "b", "c", "d", "e", "zz"]),
            st.one_of(st.floats(0, 100), st.integers(0, 100).map(float), st.just(float("nan"))),
        ),
        max_size=60,
    ),
    kind=st.sampled_from(["str", "object", "category"]),
)
def test_grouped_computation_matches_a_plain_restatement(rows, kind):
    # "category": as the warehouse reads ratings, categories in order of first appearance, which
    # is not the order of the text: results still come sorted as the text sorts
    columns = ["survey_id", "period", "rater_hash", "relation", "ratee_id", "item", "score"]
    resp = pd.DataFrame(rows, columns=columns).astype({"score": float})
    if kind != "str":
        resp = resp.astype({c: kind for c in columns[:-1]})
    assert_matches_reference(resp, MIXED_SCHEME)


def test_input_order_does_not_matter_and_output_is_sorted_by_key():
    s = scheme(survey(items="{a: 0.5, b: 0.5}", relations="{superior: 1, peer: 1}"))
    resp = ratings(
        [
            (f"r{k}", ("superior", "peer")[k % 2], ratee, item, 40 + 7 * k + len(ratee))
            for k in range(6)
            for ratee in ("Z", "B", "A10", "A2")
            for item in ("a", "b")
        ],
        survey_id="S10",
    )
    resp = pd.concat([resp, resp.assign(survey_id="S2")], ignore_index=True)
    c, r = survey_scores(resp, s)
    assert list(c["survey_id"] + c["person_id"]) == sorted(c["survey_id"] + c["person_id"])
    assert list(c["person_id"][:4]) == ["A10", "A2", "B", "Z"]
    assert list(r["relation"][:2]) == ["peer", "superior"]
    shuffled = resp.sample(frac=1, random_state=7).reset_index(drop=True)
    c2, r2 = survey_scores(shuffled, s)
    pd.testing.assert_frame_equal(c, c2, check_exact=False, rtol=1e-12)
    pd.testing.assert_frame_equal(r, r2, check_exact=False, rtol=1e-12)
    assert_matches_reference(shuffled, s)
    # read as categories (Z before A10 in their order): the same frames, to the last bit
    text = ["survey_id", "period", "rater_hash", "relation", "ratee_id", "item"]
    c3, r3 = survey_scores(resp.astype(dict.fromkeys(text, "category")), s)
    pd.testing.assert_frame_equal(c, c3, check_exact=True)
    pd.testing.assert_frame_equal(r, r3, check_exact=True)


def test_figures_are_the_same_to_the_last_bit_whatever_order_the_ratings_come_in():
    # a rerun reads the same ratings in another order when the database's plan differs; float
    # sums depend on the order of their terms, so scores would move in their last bits and a
    # rerun would not leave the marts as they were
    s = scheme(
        survey(
            items="{a: 0.3, b: 0.7}", relations="{peer: 0.6, superior: 0.4}", normalize="rater_mean"
        )
    )
    resp = ratings(
        [
            (
                f"r{k}",
                ("superior", "peer", "peer")[k % 3],
                f"p{j}",
                item,
                60 + (k * 7.1 + j * 3.3) % 40,
            )
            for k in range(40)
            for j in range(12)
            for item in ("a", "b")
        ]
    )
    # the same ratings delivered again by a later month with other points (a late correction)
    again = resp.sample(60, random_state=1).assign(score=lambda f: (f["score"] + 1.7) % 100)
    resp = pd.concat([resp, again], ignore_index=True)
    c, r = survey_scores(resp, s)
    for seed in range(5):
        shuffled = resp.sample(frac=1, random_state=seed).reset_index(drop=True)
        c2, r2 = survey_scores(shuffled, s)
        pd.testing.assert_frame_equal(c, c2, check_exact=True)
        pd.testing.assert_frame_equal(r, r2, check_exact=True)


def test_survey_components_without_ratings_are_left_out():
    s = scheme(
        survey("conduct", items="{x: 1}"),
        survey("leading", items="{y: 1}"),
        survey("integrity", items="{z: 1}"),
    )
    c, r = survey_scores(ratings([("A", "peer", "P", "x", 80), ("B", "peer", "P", "x", 70)]), s)
    # only conduct was rated: (80 + 70) / 2 = 75; the other two components give no rows
    assert list(c["component_id"]) == ["conduct"] and comp(c, "P")["score"] == pytest.approx(75)
    assert len(r) == 1 and rel(r, "P", "peer")["raters"] == 2


def test_missing_scores_and_zero_weight_raters_do_not_count():
    s = scheme(survey(items="{a: 1, z: 0}", min_raters=2))
    resp = ratings(
        [
            ("A", "peer", "P", "a", 80),
            ("B", "peer", "P", "a", float("nan")),  # no score: B rated nothing that counts
            ("B", "peer", "P", "z", 100),  # a zero-weight item alone gives no rater score
            ("C", "peer", "P", "a", 60),
            ("C", "peer", "P", "z", 0),  # weight 0: C's score is 60
        ]
    )
    c, r = survey_scores(resp, s)
    assert rel(r, "P", "peer")["raters"] == 2  # A and C; B is not counted
    assert comp(c, "P")["score"] == pytest.approx(70)
