"""Period scores (quarter, half, year) and what is decided on them: grades, pacesetters, bonus.

A period score is the mean of the monthly totals of the months a person was in, optionally
blended with period components (survey rounds over the period). Who a person is in a period (unit,
department, category, post coefficient) is who they were in the last month of it they were in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from scoring.bonus import allocate
from scoring.grading import grade
from scoring.pacesetters import pick_pacesetters, streaks
from scoring.scheme import Scheme
from scoring.timeline import months_of, parse_period, periods_inside, scope_key

PERIOD_COLUMNS = [
    "person_id",
    "name",
    "unit_id",
    "dept_id",
    "category",
    "post_coefficient",
    "months",
    "mean_monthly",
    "period_score",
    "rank_in_scope",
    "grade",
    "graded",
    "veto",
    "pacesetter",
    "pacesetter_route",
    "placed_by_tiebreak",
]


@dataclass
class PeriodResult:
    scores: pd.DataFrame
    bonus: pd.DataFrame | None = None
    refused_nominations: pd.DataFrame | None = None
    messages: list[str] = field(default_factory=list)


def period_scores(
    period: str, monthly: pd.DataFrame, surveys: pd.DataFrame, scheme: Scheme
) -> pd.DataFrame:
    """Per person of the period: months, mean monthly, period score, veto, who they last were.

    monthly: the monthly score rows of the period's months (month, person_id, name, unit_id,
    dept_id, category, post_coefficient, total_score, veto); surveys: component scores of rounds
    (survey_id, period, person_id, component_id, score, no_basis).
    """
    kind, months = parse_period(period)
    rules = scheme.period_rules(kind)
    rows = monthly[monthly["month"].isin(months)].sort_values(["person_id", "month"])
    by = rows.groupby("person_id", sort=True)
    out = by.last()[["name", "unit_id", "dept_id", "category", "post_coefficient"]]
    out["months"] = by.size()
    out["mean_monthly"] = by["total_score"].mean()
    out["veto"] = by["veto"].any()
    out["graded"] = out["months"] >= rules.min_months
    base = out["mean_monthly"]
    if rules.adjustments == "sum":  # 积分制: the period's points add up; the rest is averaged
        points = by["adjustment_total"].sum()
        base = base - by["adjustment_total"].mean()
    blend = pd.Series(0.0, index=out.index)
    given = pd.Series(0.0, index=out.index)  # weight of the period components with a basis
    if rules.components and len(surveys):
        rated = surveys[~surveys["no_basis"].astype(bool)]
        rated = rated[rated["period"].isin(periods_inside(period))]
        category = out["category"].astype(str)
        for cid in rules.components:
            weights = {k: rules.weight_for(cid, k) for k in category.unique()}
            w = category.map(weights).astype(float)
            mean = rated[rated["component_id"] == cid].groupby("person_id")["score"].mean()
            score = out.index.to_series().map(mean).where(w > 0)
            blend += (w * score).fillna(0.0)
            given += np.where(score.notna(), w, 0.0)
    # a component without a basis gives its weight back to the mean monthly score
    out["period_score"] = (1.0 - given) * base + blend
    if rules.adjustments == "sum":
        out["period_score"] += points
    return out.reset_index()


def tiebreak_means(period: str, components: pd.DataFrame, tiebreak: list[str]) -> pd.DataFrame:
    """Per person, the mean monthly score of each tiebreak component (NaN: not assessed)."""
    months = months_of(period)
    rows = components[components["month"].isin(months) & components["component_id"].isin(tiebreak)]
    wide = rows.pivot_table(
        index="person_id", columns="component_id", values="score", aggfunc="mean"
    )
    return wide.reindex(columns=tiebreak)


def close_period(
    period: str,
    monthly: pd.DataFrame,
    components: pd.DataFrame,
    surveys: pd.DataFrame,
    nominations: pd.DataFrame,
    roster_last: pd.DataFrame,
    scheme: Scheme,
    barred: set[str] | None = None,
) -> PeriodResult:
    """Scores, grades, and, when the scheme decides them on this kind of period, pacesetters and
    the bonus allocation.

    barred: people a register row of the period bars from honours (取消评先评优): no pacesetter.

    roster_last: the roster of the period's last month (the unit headcount for nomination caps).
    """
    kind, _ = parse_period(period)
    scores = period_scores(period, monthly, surveys, scheme)
    result = PeriodResult(scores=scores)
    scores["pacesetter"] = False
    scores["pacesetter_route"] = None
    scores["rank_in_scope"] = pd.array([pd.NA] * len(scores), dtype="Int64")
    scores["grade"] = None
    scores["placed_by_tiebreak"] = False
    grading = scheme.grading
    if grading is None or scores.empty:
        result.scores = scores[PERIOD_COLUMNS]
        return result
    tiebreak = list(grading.tiebreak)
    people = scores.assign(
        scope=scope_key(scores, grading.scope),
        score=scores["period_score"].where(scores["graded"]),
    )
    means = tiebreak_means(period, components, tiebreak)
    people = people.join(means, on="person_id") if tiebreak else people
    cols = ["person_id", "scope", "score", "graded", "veto", *tiebreak]
    graded = grade(people[cols], grading, tiebreak)
    for c in ("rank_in_scope", "grade", "placed_by_tiebreak"):
        scores[c] = graded[c].array  # keeps Int64 ranks whole where some are missing
    pace = scheme.pacesetters
    if pace is not None and pace.period == kind:
        headcount = roster_last.groupby("unit_id").size()
        picked, refused = pick_pacesetters(
            people[[*cols, "unit_id"]],
            nominations,
            headcount,
            pace,
            grading,
            tiebreak,
            streaks(monthly, period, grading.scope, pace) if pace.streak else None,
            barred,
        )
        scores["pacesetter"] = picked["pacesetter"].to_numpy()
        scores["pacesetter_route"] = picked["pacesetter_route"].to_numpy()
        result.refused_nominations = refused
    bonus = scheme.bonus
    if bonus is not None and bonus.period == kind:
        table, messages = allocate(
            scores.rename(columns={"period_score": "score"})[
                ["person_id", "unit_id", "grade", "score", "veto", "graded", "post_coefficient"]
            ],
            bonus,
        )
        result.bonus, result.messages = table, messages
    for c in ("grade", "pacesetter_route"):  # None, not NaN, where there is none
        scores[c] = scores[c].astype(object).where(scores[c].notna(), None)
    result.scores = scores[PERIOD_COLUMNS]
    return result
