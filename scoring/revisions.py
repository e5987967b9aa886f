"""Published results and their revisions.

A month or period that went out at stage `final` is locked: a rerun that changes what a person
was told (score, rank, grade, veto, pacesetter, red flag, bonus) does not alter it silently but
makes a new revision, and only the people whose result changed are told again, with what changed.
What was published is kept per stage and revision (`published_result`), so every revision stays
queryable and the next one can be compared with it.
"""

from __future__ import annotations

import pandas as pd

from scoring.numbers import r6

RESULT = ["person_id", "name", "unit_id", "category", "score", "rank_in_scope", "grade"]
RESULT += ["veto", "pacesetter", "red_flag", "amount_cents"]
# what a person is told; a changed name is a roster fix, not a changed result
COMPARED = ["unit_id", "category", "score", "rank_in_scope", "grade", "veto", "pacesetter"]
COMPARED += ["red_flag", "amount_cents"]
CHANGE = ["person_id", "name", "field", "before", "after"]


def _results(rows: pd.DataFrame, score: str, **told: object) -> pd.DataFrame:
    """Result rows from mart rows: who, the score column named, rank and veto as the mart has
    them, the rest (`grade`, `pacesetter`, `red_flag`, `amount_cents`) as given."""
    rows = rows.reset_index(drop=True)
    out = rows[["person_id", "name", "unit_id", "category"]].astype(object)
    out["score"] = rows[score].astype(float)
    out["rank_in_scope"] = pd.to_numeric(rows["rank_in_scope"], errors="coerce").astype("Int64")
    out["veto"] = rows["veto"].astype(bool)
    for name, values in told.items():
        out[name] = values
    out["amount_cents"] = out["amount_cents"].astype("Int64")
    return out[RESULT]


def month_results(monthly: pd.DataFrame) -> pd.DataFrame:
    """What a person is told of a month: mart_monthly_score rows to result rows."""
    return _results(
        monthly,
        "total_score",
        grade=None,
        pacesetter=False,
        red_flag=monthly["red_flag"].astype(bool).to_numpy(),
        amount_cents=None,
    )


def period_results(scores: pd.DataFrame, bonus: pd.DataFrame | None) -> pd.DataFrame:
    """What a person is told of a period: mart_period_score rows, with their bonus if any."""
    cents = pd.Series(dtype="Int64")
    if bonus is not None and len(bonus):
        cents = bonus.groupby("person_id")["amount_cents"].sum()
    grade = scores["grade"].astype(object)
    return _results(
        scores,
        "period_score",
        grade=grade.where(grade.notna(), None).to_numpy(),
        pacesetter=scores["pacesetter"].astype(bool).to_numpy(),
        red_flag=False,
        amount_cents=scores["person_id"].map(cents).to_numpy(),
    )


def _comparable(results: pd.DataFrame) -> pd.DataFrame:
    """One row per person, scores at 6 decimals (as every comparison), missing values alike."""
    out = results.set_index("person_id")[COMPARED].astype(object)
    out["score"] = r6(results["score"].astype(float).to_numpy())
    return out.where(out.notna(), None)


def changes(current: pd.DataFrame, before: pd.DataFrame) -> pd.DataFrame:
    """Per person and field, what changed from `before` to `current` (long form, person order);
    a person only in one of them shows as `present` False → True or True → False."""
    now, was = _comparable(current), _comparable(before)
    people = now.index.union(was.index)
    now_all, was_all = now.reindex(people), was.reindex(people)
    rows = []
    presence = pd.DataFrame(
        {"before": people.isin(was.index), "after": people.isin(now.index)}, index=people
    )
    moved = presence[presence["before"] != presence["after"]]
    rows.append(moved.assign(field="present").reset_index(names="person_id"))
    both = now.index.intersection(was.index)
    for col in COMPARED:
        a, b = was_all.loc[both, col], now_all.loc[both, col]
        differ = ~(a.eq(b) | (a.isna() & b.isna())).to_numpy(dtype=bool)
        if differ.any():
            rows.append(
                pd.DataFrame(
                    {
                        "person_id": both[differ],
                        "field": col,
                        "before": a.to_numpy(dtype=object)[differ],
                        "after": b.to_numpy(dtype=object)[differ],
                    }
                )
            )
    rows = [r for r in rows if len(r)]
    if not rows:
        return pd.DataFrame(columns=CHANGE)
    out = pd.concat(rows, ignore_index=True)
    names = pd.concat([r.set_index("person_id")["name"] for r in (before, current)])
    names = names[~names.index.duplicated(keep="last")]
    out["name"] = out["person_id"].map(names)
    order = {f: i for i, f in enumerate(["present", *COMPARED])}
    out["_o"] = out["field"].map(order)
    return out.sort_values(["person_id", "_o"], ignore_index=True)[CHANGE]


def revision_for(current: pd.DataFrame, final: pd.DataFrame | None, last_final: int | None) -> int:
    """The revision `current` belongs to: 1 until a final publication, then the last final
    revision while nothing it published changed, and the next one as soon as anything did."""
    if last_final is None or final is None:
        return 1
    return last_final if changes(current, final).empty else last_final + 1
