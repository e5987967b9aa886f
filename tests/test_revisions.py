"""Revisions: a final result that a rerun changes makes a new revision, and only what changed
is reported (hand-built results)."""

from __future__ import annotations

import pandas as pd

from scoring.revisions import changes, month_results, period_results, revision_for


def _period(**over) -> pd.DataFrame:
    rows = pd.DataFrame(
        {
            "person_id": ["P1", "P2", "P3"],
            "name": ["张三", "李四", "王五"],
            "unit_id": ["U1", "U1", "U2"],
            "category": ["staff"] * 3,
            "period_score": [90.0, 85.0, 70.0],
            "rank_in_scope": [1, 2, 3],
            "grade": ["excellent", "good", "general"],
            "veto": [False, False, False],
            "pacesetter": [True, False, False],
        }
    )
    for col, values in over.items():
        rows[col] = values
    return rows


BONUS = pd.DataFrame({"person_id": ["P1", "P2", "P3"], "amount_cents": [450000, 300000, 250000]})


def test_unchanged_results_keep_the_published_revision_and_float_noise_is_no_change():
    published = period_results(_period(), BONUS)
    noisy = period_results(_period(period_score=[90.0 + 1e-12, 85.0, 70.0]), BONUS)
    assert changes(noisy, published).empty
    assert revision_for(noisy, published, 3) == 3
    assert revision_for(noisy, None, None) == 1  # nothing final yet: revision 1


def test_a_changed_grade_and_amount_make_the_next_revision_and_say_what_changed():
    published = period_results(_period(), BONUS)
    bonus = BONUS.assign(amount_cents=[450000, 250000, 300000])
    now = period_results(
        _period(period_score=[90.0, 69.5, 70.0], rank_in_scope=[1, 3, 2]).assign(
            grade=["excellent", "general", "good"]
        ),
        bonus,
    )
    found = changes(now, published)
    assert revision_for(now, published, 1) == 2
    p2 = found[found.person_id == "P2"].set_index("field")
    assert p2.loc["score", "before"] == 85.0 and p2.loc["score", "after"] == 69.5
    assert p2.loc["grade", "before"] == "good" and p2.loc["grade", "after"] == "general"
    assert p2.loc["amount_cents", "after"] == 250000
    assert set(found.person_id) == {"P2", "P3"}  # P1 is untouched
    assert (found.name[found.person_id == "P3"] == "王五").all()


def test_a_person_added_or_removed_is_a_change_of_presence():
    published = period_results(_period(), BONUS)
    now = period_results(_period().iloc[:2], BONUS.iloc[:2])
    found = changes(now, published)
    assert found.to_dict("records") == [
        {"person_id": "P3", "name": "王五", "field": "present", "before": True, "after": False}
    ]


def test_month_results_carry_the_red_flag_and_no_grade():
    monthly = pd.DataFrame(
        {
            "person_id": ["P1"],
            "name": ["张三"],
            "unit_id": ["U1"],
            "category": ["staff"],
            "total_score": [88.25],
            "rank_in_scope": [1],
            "veto": [False],
            "red_flag": [True],
        }
    )
    got = month_results(monthly).iloc[0]
    assert got["score"] == 88.25 and got["red_flag"] and got["grade"] is None
    flagless = month_results(monthly.assign(red_flag=[False]))
    assert changes(flagless, month_results(monthly))["field"].tolist() == ["red_flag"]


def test_results_of_a_slice_keep_each_person_with_their_own_figures():
    """A month's rows cut from a longer frame (index not starting at 0) stay aligned."""
    monthly = pd.DataFrame(
        {
            "person_id": ["P1", "P2"],
            "name": ["张三", "李四"],
            "unit_id": ["U1", "U1"],
            "category": ["staff", "staff"],
            "total_score": [80.0, 90.0],
            "rank_in_scope": [2, 1],
            "veto": [False, False],
            "red_flag": [False, True],
        },
        index=[40, 41],
    )
    got = month_results(monthly)
    assert got[["person_id", "score", "rank_in_scope"]].values.tolist() == [
        ["P1", 80.0, 2],
        ["P2", 90.0, 1],
    ]
    scores = _period().set_axis([7, 8, 9])
    assert period_results(scores, BONUS)["rank_in_scope"].tolist() == [1, 2, 3]


def _told(stage: str, revision: int, results: pd.DataFrame) -> pd.DataFrame:
    return results.assign(what="2026-Q1", stage=stage, revision=revision)


def test_a_revision_that_went_out_is_never_gone_back_below():
    from etl.score import revision

    first = period_results(_period(), BONUS)
    changed = period_results(_period(period_score=[90.0, 85.0, 71.0]), BONUS)
    none = _told("final", 1, first).iloc[0:0]
    assert revision(none, "2026-Q1", changed) == 1  # nothing published: reruns stay at 1
    published = pd.concat([_told("notify", 1, first), _told("final", 1, first)])
    assert revision(published, "2026-Q1", first) == 1  # unchanged after final
    assert revision(published, "2026-Q1", changed) == 2  # changed after final
    # revision 2 went out at notify, then a rerun undid the change: still revision 2
    published = pd.concat([published, _told("notify", 2, changed)])
    assert revision(published, "2026-Q1", first) == 2
    assert revision(published, "2026-Q3", first) == 1  # another period is its own
