"""A month's scores: indicators, components, adjustments with their caps, totals, ranks, red flags.

Every function loops over the scheme (its components, indicators, rules) and never over people:
each step is one vectorised pass over everybody in the month.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from scoring.numbers import among, competition_rank, lookup, r6
from scoring.scheme import Component, Indicator, Scheme
from scoring.timeline import scope_key

INDICATOR_COLUMNS = [
    "person_id",
    "component_id",
    "indicator_id",
    "actual",
    "target",
    "points",
    "score",
    "no_basis",
]
COMPONENT_COLUMNS = ["person_id", "component_id", "weight", "score", "no_basis"]
ADJUSTMENT_COLUMNS = [
    "person_id",
    "date",
    "rule",
    "points",
    "count",
    "total",
    "veto",
    "note",
    "evidence",
    "source_file",
    "source_line",
]
DEPARTMENT_MIN_PEOPLE = 3  # a department needs this many people in the month for the red flag


@dataclass
class MonthScores:
    monthly: pd.DataFrame  # one row per person in the month
    indicators: pd.DataFrame
    components: pd.DataFrame
    adjustments: pd.DataFrame  # the month's register rows, priced
    departments: pd.DataFrame  # per department: people, mean total, red flag


def _per_category(people: pd.DataFrame, values: dict[str, float | None]) -> pd.Series:
    return lookup(people["category"], values).astype(float)


def _weight(people: pd.DataFrame, comp: Component, scheme: Scheme) -> pd.Series:
    """Each person's monthly weight on a component, by their category (0: not assessed on it)."""
    return _per_category(people, {k: comp.weight_for(k) for k in scheme.categories})


def _indicator(ind: Indicator, comp: Component, rows: pd.DataFrame, scheme: Scheme) -> pd.DataFrame:
    """One indicator for everyone assessed on its component (scheme.md "Indicator score")."""
    actual = (
        rows[ind.measure].astype(float)
        if ind.measure in rows
        else pd.Series(np.nan, index=rows.index)
    )
    target = _per_category(rows, {k: ind.target_for(k) for k in scheme.categories})
    if ind.per_unit is not None:
        score = ind.per_unit * actual
    else:
        score = ind.points + ind.coefficient * (actual - target)
    score = score.clip(lower=ind.min, upper=ind.max)
    vetoed = pd.Series(False, index=rows.index)
    if ind.veto_below is not None:
        vetoed |= r6(actual) < r6(ind.veto_below)
    if ind.veto_above is not None:
        vetoed |= r6(actual) > r6(ind.veto_above)
    score = score.where(~vetoed, ind.veto_points if ind.veto_points is not None else 0.0)
    no_basis = actual.isna()
    return pd.DataFrame(
        {
            "person_id": rows["person_id"],
            "component_id": comp.id,
            "indicator_id": ind.id,
            "actual": actual,
            "target": target,
            "points": ind.points,
            "score": score.where(~no_basis, ind.neutral).astype(float),
            "no_basis": no_basis,
        }
    )


def indicator_scores(people: pd.DataFrame, measures: pd.DataFrame, scheme: Scheme) -> pd.DataFrame:
    """Every indicator of every component a person is assessed on (weight > 0 for the category)."""
    base = people[["person_id", "category"]].merge(
        measures.drop(columns=["month"], errors="ignore"), on="person_id", how="left"
    )
    parts = []
    for comp in scheme.components:
        assessed = _weight(base, comp, scheme) > 0
        rows = base[assessed]
        parts += [((comp.id, i.id), _indicator(i, comp, rows, scheme)) for i in comp.indicators]
    if not parts:
        return pd.DataFrame(columns=INDICATOR_COLUMNS)
    # person by person, in the order of `people` (a stable sort on the row labels of `base`), and
    # a person's rows by component and indicator id, as the code points sort them: with people in
    # key order, that is the mart's key order under the C collation (elsewhere close to it), in
    # which PostgreSQL keys a month's rows in one pass over them rather than a sort
    parts.sort(key=lambda part: part[0])
    frame = pd.concat([rows for _, rows in parts]).sort_index(kind="stable")
    return frame.reset_index(drop=True)[INDICATOR_COLUMNS]


def indicator_components(indicators: pd.DataFrame) -> pd.DataFrame:
    """Each person's indicator components: the sum of their indicators (no basis when none has)."""
    return (
        indicators.groupby(["person_id", "component_id"], sort=False)
        .agg(score=("score", "sum"), no_basis=("no_basis", "all"))
        .reset_index()
    )


def component_scores(
    people: pd.DataFrame,
    indicators: pd.DataFrame,
    surveys: pd.DataFrame,
    scheme: Scheme,
    summed: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Indicator components sum their indicators; a monthly survey component takes the mean of
    the month's rounds, or its neutral points when the person has no basis in any of them.
    `summed`: the indicator components already summed (by unit batches), else from `indicators`."""
    parts = [indicator_components(indicators) if summed is None else summed]
    rated = surveys[~surveys["no_basis"]] if len(surveys) else surveys
    for comp in scheme.components:
        if comp.survey is None:
            continue
        weight = _weight(people, comp, scheme)
        who = people.loc[weight > 0, ["person_id"]]
        if who.empty:
            continue
        mine = rated[rated["component_id"] == comp.id] if len(rated) else rated
        mean = mine.groupby("person_id")["score"].mean() if len(mine) else pd.Series(dtype=float)
        score = who["person_id"].map(mean)
        parts.append(
            pd.DataFrame(
                {
                    "person_id": who["person_id"],
                    "component_id": comp.id,
                    "score": score.fillna(comp.survey.neutral_points).astype(float),
                    "no_basis": score.isna(),
                }
            )
        )
    table = pd.DataFrame(
        [(c.id, k, c.weight_for(k)) for c in scheme.components for k in scheme.categories],
        columns=["component_id", "category", "weight"],
    )
    out = pd.concat(parts, ignore_index=True)
    out = people[["person_id", "category"]].merge(out, on="person_id")
    out = out.merge(table, on=["component_id", "category"], how="left")
    return out[COMPONENT_COLUMNS].reset_index(drop=True)


def price_adjustments(rows: pd.DataFrame, scheme: Scheme) -> pd.DataFrame:
    """Each register row's points per unit and total (points × count); veto rules carry none."""
    rules = scheme.rules()
    fixed = {k: r.points for k, r in rules.items() if r.range is None and not r.veto}
    veto = {k: r.veto for k, r in rules.items()}
    out = rows.copy()
    out["points"] = out["rule"].map(fixed).astype(float).fillna(out["points"].astype(float))
    out["veto"] = out["rule"].map(veto).fillna(False).astype(bool)
    out.loc[out["veto"], "points"] = np.nan
    out["count"] = out["count"].astype(float).fillna(1.0)
    out["total"] = (out["points"] * out["count"]).fillna(0.0)
    return out


def adjustment_totals(priced: pd.DataFrame, month: str, scheme: Scheme) -> pd.DataFrame:
    """Per person: the month's adjustment total after caps, and whether a veto rule hit them.

    `priced` holds the year's rows up to and including `month`. The bonus part of a month is cut
    to bonus_per_month, then to what the earlier months left of bonus_per_year; deductions are
    never capped. min(cumulative bonus, year cap) differenced month by month is exactly "what
    remains after the earlier months".
    """
    caps = scheme.adjustment_caps
    rows = priced[priced["month"] <= month]
    per = (
        rows.assign(
            bonus=rows["total"].clip(lower=0),
            deduction=rows["total"].clip(upper=0),
        )
        .groupby(["person_id", "month"], sort=True)
        .agg(bonus=("bonus", "sum"), deduction=("deduction", "sum"), veto=("veto", "any"))
        .reset_index()
    )
    if caps.bonus_per_month is not None:
        per["bonus"] = per["bonus"].clip(upper=caps.bonus_per_month)
    if caps.bonus_per_year is not None:
        cum = per.groupby("person_id")["bonus"].cumsum()
        reached = cum.clip(upper=caps.bonus_per_year)
        per["bonus"] = reached - (reached.groupby(per["person_id"]).shift(1).fillna(0.0))
    now = per[per["month"] == month]
    return pd.DataFrame(
        {
            "person_id": now["person_id"],
            "adjustment_total": now["bonus"] + now["deduction"],
            "veto": now["veto"],
        }
    )


@dataclass
class UnitMonth:
    """The part of a month that needs only the people themselves, so unit batches compute it
    apart: indicators, indicator components, and the adjustments after caps."""

    people: pd.DataFrame  # the month's people with adjustment_total and veto
    indicators: pd.DataFrame
    summed: pd.DataFrame  # indicator components (indicator_components)
    adjustments: pd.DataFrame  # the month's register rows of these people, priced


def unit_month(
    month: str,
    people: pd.DataFrame,
    measures: pd.DataFrame,
    adjustments: pd.DataFrame,
    scheme: Scheme,
) -> UnitMonth:
    """people: the month's presence rows (person_id, name, unit_id, dept_id, category, ...);
    measures: per person the built-in measures of the month; adjustments: the register rows of
    the year up to this month."""
    indicators = indicator_scores(people, measures, scheme)
    priced = price_adjustments(adjustments, scheme)
    adj = adjustment_totals(priced, month, scheme).set_index("person_id")
    out = people.copy()
    out["adjustment_total"] = out["person_id"].map(adj["adjustment_total"]).fillna(0.0)
    out["veto"] = out["person_id"].map(adj["veto"]).fillna(False).astype(bool)
    mine = priced[priced["month"] == month]
    present = among(mine["person_id"], out["person_id"])
    return UnitMonth(
        people=out,
        indicators=indicators,
        summed=indicator_components(indicators),
        adjustments=mine.loc[present, ADJUSTMENT_COLUMNS].reset_index(drop=True),
    )


def month_totals(part: UnitMonth, surveys: pd.DataFrame, scheme: Scheme) -> MonthScores:
    """The month for everyone in it, from the people's own part (of one batch, or of every batch
    put together in person order) and the month's survey scores: the components, the totals, and
    what needs the whole scheme: ranks in scope, red flags, departments."""
    people = part.people
    components = component_scores(people, part.indicators, surveys, scheme, summed=part.summed)
    weighted = (components["weight"] * components["score"]).groupby(components["person_id"]).sum()
    out = people.copy()
    total = out["person_id"].map(weighted).fillna(0.0) + out["adjustment_total"]
    if scheme.score_range is not None:
        total = total.clip(*scheme.score_range)
    out["total_score"] = total.astype(float)
    scope = scope_key(out, scheme.grading.scope if scheme.grading else "category")
    out["rank_in_scope"] = competition_rank(out["total_score"], scope)
    out["red_flag"] = out["rank_in_scope"].eq(1).fillna(False).astype(bool)
    return MonthScores(
        monthly=out.reset_index(drop=True),
        indicators=part.indicators,
        components=components,
        adjustments=part.adjustments,
        departments=department_flags(out),
    )


def month_scores(
    month: str,
    people: pd.DataFrame,
    measures: pd.DataFrame,
    surveys: pd.DataFrame,
    adjustments: pd.DataFrame,
    scheme: Scheme,
) -> MonthScores:
    """The month for everyone in it (unit_month, then month_totals); surveys: component scores of
    the rounds whose period is this month."""
    return month_totals(unit_month(month, people, measures, adjustments, scheme), surveys, scheme)


def department_flags(monthly: pd.DataFrame) -> pd.DataFrame:
    """The red flag department: the highest mean total across the scheme among departments with at
    least 3 people in the month (all that tie at 6 decimals)."""
    dept = (
        monthly.groupby("dept_id", sort=True)
        .agg(people=("person_id", "size"), mean_total=("total_score", "mean"))
        .reset_index()
    )
    eligible = dept["people"] >= DEPARTMENT_MIN_PEOPLE
    best = r6(dept.loc[eligible, "mean_total"]).max() if eligible.any() else np.nan
    dept["red_flag"] = eligible & (r6(dept["mean_total"]) == best)
    return dept
