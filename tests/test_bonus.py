"""Bonus allocation: exact fractions, largest remainders, pools, vetoes, per scheme.md."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scoring.bonus import allocate, largest_remainder
from scoring.scheme import Bonus, Pool

COEF = {"excellent": 1.5, "good": 1.0, "general": 0.6}


def staff(rows, columns=("person_id", "unit_id", "grade", "score")) -> pd.DataFrame:
    """Graded, not vetoed, post coefficient 1 unless the rows say otherwise."""
    frame = pd.DataFrame(rows, columns=list(columns))
    for col, default in (("veto", False), ("graded", True), ("post_coefficient", 1.0)):
        if col not in frame:
            frame[col] = default
    return frame


def cents(out: pd.DataFrame) -> dict:
    return dict(zip(out["person_id"], out["amount_cents"], strict=True))


def test_spec_example_largest_remainder():
    # ¥10,000.00 = 1,000,000 cents over 1.5 : 1 : 1 → 428571.43, 285714.29, 285714.29;
    # floors sum to 999,999, the missing cent goes to the largest remainder (.43, the first)
    w = [Fraction(3, 2), Fraction(1), Fraction(1)]
    assert largest_remainder(1_000_000, w, ["a", "b", "c"]) == [428572, 285714, 285714]


def test_spec_example_through_allocate():
    frame = staff([("a", "u1", "excellent", 90), ("b", "u1", "good", 80), ("c", "u1", "good", 70)])
    bonus = Bonus(pool=Pool(per_unit={"u1": 10000}), coefficients=COEF)
    out, messages = allocate(frame, bonus)
    assert cents(out) == {"a": 428572, "b": 285714, "c": 285714} and messages == []
    assert list(out.columns) == ["unit_id", "person_id", "grade", "weight", "amount_cents"]
    assert out["weight"].tolist() == [1.5, 1.0, 1.0]


def test_equal_remainders_go_by_person_id():
    # 100 cents over three equal weights: 33 each, remainders equal, the cent goes to "a"
    assert largest_remainder(100, [Fraction(1)] * 3, ["c", "a", "b"]) == [33, 34, 33]


def test_post_coefficient_and_per_capita_pool():
    # per_capita ¥1000 × 2 graded (c is not graded: no row, not in the headcount) = 200,000 cents
    # weights good 1.0 × 1.2 and 1.0 × 0.8 → 120,000 and 80,000
    frame = staff(
        [
            ("a", "u1", "good", 80, 1.2, True),
            ("b", "u1", "good", 80, 0.8, True),
            ("c", "u1", None, 80, 1.0, False),
        ],
        ("person_id", "unit_id", "grade", "score", "post_coefficient", "graded"),
    )
    bonus = Bonus(pool=Pool(per_capita=1000), coefficients=COEF, post_coefficient=True)
    out, _ = allocate(frame, bonus)
    assert cents(out) == {"a": 120000, "b": 80000}
    # disabled: the roster's post coefficient is ignored → 100,000 each
    out, _ = allocate(frame, bonus.model_copy(update={"post_coefficient": False}))
    assert cents(out) == {"a": 100000, "b": 100000}


def test_veto_gets_replaces_the_grade_coefficient():
    # vetoed b: weight veto_gets 0.5 × post 2.0 = 1.0; a: 1.0 × 1.0; pool ¥300 → 150 / 150
    frame = staff(
        [("a", "u1", "good", 80, 1.0, True), ("b", "u1", "general", 95, 2.0, True)],
        ("person_id", "unit_id", "grade", "score", "post_coefficient", "veto"),
    )
    frame["veto"] = [False, True]
    bonus = Bonus(
        pool=Pool(per_unit={"u1": 300}), coefficients=COEF, post_coefficient=True, veto_gets=0.5
    )
    out, _ = allocate(frame, bonus)
    assert cents(out) == {"a": 15000, "b": 15000}
    # default veto_gets 0: nothing for b
    out, _ = allocate(frame, bonus.model_copy(update={"veto_gets": 0}))
    assert cents(out) == {"a": 30000, "b": 0}


def test_score_share_uses_scores_rounded_to_two_decimals():
    # ¥10.00 = 1000 cents; 1.005 → 1.01 and 2.994 → 2.99 (as the bulletin prints); Σ = 4.00
    # 1000 × 1.01 / 4 = 252.5, 1000 × 2.99 / 4 = 747.5 → floors 252 + 747 = 999; equal remainders
    # .5/.5, the cent to "a" by person_id → 253, 747 (unrounded would give 251.31…, 748.68…)
    frame = staff([("a", "u1", "good", 1.005), ("b", "u1", "good", 2.994)])
    bonus = Bonus(pool=Pool(per_unit={"u1": 10}), method="score_share")
    out, _ = allocate(frame, bonus)
    assert cents(out) == {"a": 253, "b": 747}
    assert out["weight"].tolist() == [1.01, 2.99]


def test_score_share_multiplies_by_veto_gets_and_post():
    # weights 80.00 × 1.0 and 80.00 × 1.5 × 0.5 (vetoed) = 80 : 60 → ¥700 = 40,000 : 30,000
    frame = staff(
        [("a", "u1", "good", 80.0, 1.0), ("b", "u1", "general", 80.0, 1.5)],
        ("person_id", "unit_id", "grade", "score", "post_coefficient"),
    )
    frame["veto"] = [False, True]
    bonus = Bonus(
        pool=Pool(per_unit={"u1": 700}),
        method="score_share",
        post_coefficient=True,
        veto_gets=0.5,
    )
    out, _ = allocate(frame, bonus)
    assert cents(out) == {"a": 40000, "b": 30000}


def test_yuan_rounding_gives_whole_yuan_summing_to_the_pool():
    # ¥1000 over three equal weights: 333 yuan each + the missing yuan to "a" (person_id)
    frame = staff([("c", "u1", "good", 1), ("a", "u1", "good", 1), ("b", "u1", "good", 1)])
    bonus = Bonus(pool=Pool(per_unit={"u1": 1000}), coefficients=COEF, rounding="yuan")
    out, _ = allocate(frame, bonus)
    assert cents(out) == {"a": 33400, "b": 33300, "c": 33300}
    assert (out["amount_cents"] % 100 == 0).all() and out["amount_cents"].sum() == 100000


def test_pools_finer_than_the_rounding_are_refused():
    # the scheme model refuses these on load; allocate() must not trust a hand-built model
    frame = staff([("a", "u1", "good", 1)])

    def hand_built(amount: float, rounding: str) -> Bonus:
        pool = Pool.model_construct(per_unit={"u1": amount}, per_capita=None)
        return Bonus.model_construct(pool=pool, coefficients=COEF, rounding=rounding)

    with pytest.raises(ValueError, match="whole yuan"):
        allocate(frame, hand_built(10.5, "yuan"))
    with pytest.raises(ValueError, match="2 decimals"):
        allocate(frame, hand_built(10.005, "cent"))


def test_per_unit_pools_and_their_messages():
    # u1 has its pool; u2 is not in per_unit (no money, said); u3 has a pool but nobody graded
    frame = staff([("a", "u1", "good", 1), ("b", "u2", "good", 1)])
    bonus = Bonus(pool=Pool(per_unit={"u1": 500.25, "u3": 800}), coefficients=COEF)
    out, messages = allocate(frame, bonus)
    assert cents(out) == {"a": 50025, "b": 0}
    assert len(messages) == 2
    assert "u2" in messages[0] and "no pool" in messages[0]
    assert "u3" in messages[1] and "nobody" in messages[1] and "¥800.00" in messages[1]


def test_all_zero_weights_allocate_nothing_and_say_so():
    frame = staff([("a", "u1", "general", 1), ("b", "u1", "general", 1)])
    frame["veto"] = True
    bonus = Bonus(pool=Pool(per_capita=6000), coefficients=COEF)
    out, messages = allocate(frame, bonus)
    assert cents(out) == {"a": 0, "b": 0}
    assert len(messages) == 1 and "every bonus weight is 0" in messages[0]
    assert "¥12,000.00" in messages[0]


def test_units_are_split_separately():
    # u1: ¥100 over 1.5 : 1.0 → 6000 / 4000; u2: ¥100 to its one person
    frame = staff([("a", "u1", "excellent", 1), ("b", "u2", "general", 1), ("c", "u1", "good", 1)])
    out, _ = allocate(frame, Bonus(pool=Pool(per_capita=100), coefficients=COEF))
    assert cents(out) == {"a": 12000, "b": 10000, "c": 8000}  # u1 pool is 2 × ¥100


def test_unknown_grade_coefficient_is_refused():
    frame = staff([("a", "u1", "heroic", 1)])
    with pytest.raises(ValueError, match="heroic"):
        allocate(frame, Bonus(pool=Pool(per_capita=100), coefficients=COEF))


# --- properties -------------------------------------------------------------------------------

weights = st.decimals(min_value=0, max_value=50, places=3, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(total=st.integers(0, 10**9), ws=st.lists(weights, min_size=1, max_size=30))
def test_split_sums_to_the_total_and_is_monotone(total, ws):
    fr = [Fraction(w) for w in ws]
    if sum(fr) == 0:
        fr[0] = Fraction(1)
    keys = [f"p{i:02d}" for i in range(len(fr))]
    got = largest_remainder(total, fr, keys)
    assert sum(got) == total
    for i in range(len(fr)):
        exact_share = Fraction(total) * fr[i] / sum(fr)
        assert abs(got[i] - exact_share) < 1
        for j in range(len(fr)):
            if fr[i] > fr[j]:
                assert got[i] >= got[j]


@settings(max_examples=100, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["u1", "u2", "u3"]),
            st.sampled_from(list(COEF)),
            st.sampled_from([0.8, 1.0, 1.15, 1.3]),
            st.booleans(),
            st.floats(0, 120, allow_nan=False),
        ),
        min_size=1,
        max_size=40,
    ),
    method=st.sampled_from(["grade_coefficient", "score_share"]),
    rounding=st.sampled_from(["cent", "yuan"]),
    per_capita=st.integers(0, 20000),
)
def test_every_unit_gets_exactly_its_pool(rows, method, rounding, per_capita):
    frame = pd.DataFrame(
        {
            "person_id": [f"p{i:02d}" for i in range(len(rows))],
            "unit_id": [r[0] for r in rows],
            "grade": [r[1] for r in rows],
            "post_coefficient": [r[2] for r in rows],
            "veto": [r[3] for r in rows],
            "score": [r[4] for r in rows],
            "graded": True,
        }
    )
    bonus = Bonus(
        pool=Pool(per_capita=per_capita),
        method=method,
        coefficients=COEF,
        post_coefficient=True,
        veto_gets=0.25,
        rounding=rounding,
    )
    out, messages = allocate(frame, bonus)
    per = out.groupby("unit_id")
    for unit, part in per:
        pool = int(Decimal(per_capita) * 100) * len(part)
        if part["weight"].sum() == 0 and pool:
            assert part["amount_cents"].sum() == 0
            assert any(unit in m for m in messages)
        else:
            assert part["amount_cents"].sum() == pool
        if rounding == "yuan":
            assert (part["amount_cents"] % 100 == 0).all()
        ordered = part.sort_values(["weight", "amount_cents"])
        assert ordered["amount_cents"].is_monotonic_increasing


def test_a_scheme_wide_fund_is_split_across_units_together():
    # county fund ¥1,000.00 over three people in two units, weights 1.5 : 1 : 1: exact cents
    # 42857.14…, 28571.43…, 28571.43… → floors sum to 99999, the missing cent to the largest
    # remainder, b and c tie at .43 → b by person_id. The units' parts are what their tables show.
    frame = staff([("a", "u1", "excellent", 90), ("b", "u2", "good", 80), ("c", "u2", "good", 70)])
    bonus = Bonus(pool=Pool(total=1000), coefficients=COEF)
    out, messages = allocate(frame, bonus)
    assert cents(out) == {"a": 42857, "b": 28572, "c": 28571} and messages == []
    assert out.groupby("unit_id")["amount_cents"].sum().to_dict() == {"u1": 42857, "u2": 57143}


def test_a_scheme_wide_fund_with_nobody_graded_says_so():
    frame = staff([("a", "u1", None, 90)]).assign(graded=False)
    out, messages = allocate(frame, Bonus(pool=Pool(total=1000), coefficients=COEF))
    assert out.empty
    assert messages == ["bonus.pool.total ¥1,000.00: nobody is graded, nothing allocated"]
