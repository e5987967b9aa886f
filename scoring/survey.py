"""Survey score (民主测评): ratings -> relation results and component scores, per round.

Follows scheme.md "Survey score". A round is one (survey_id, period). Everything is grouped and
merged, never looped per person, because a city round is tens of thousands of ratees. Rater-level
figures exist only inside this module: neither output carries a rater column, so nothing that
reaches a mart can tell which rater gave which score.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scoring.scheme import Scheme

ROUND = ["survey_id", "period"]
COMPONENT_KEY = [*ROUND, "person_id", "component_id"]
RELATION_KEY = [*COMPONENT_KEY, "relation"]
COMPONENT_COLUMNS = [*COMPONENT_KEY, "score", "score_raw", "no_basis"]
RELATION_COLUMNS = [*RELATION_KEY, "raters", "score", "score_raw", "suppressed"]
SELF = "self"


def _empty(columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    for c in ("score", "score_raw"):
        frame[c] = frame[c].astype(float)
    for c in ("no_basis", "suppressed"):
        if c in frame:
            frame[c] = frame[c].astype(bool)
    if "raters" in frame:
        frame["raters"] = frame["raters"].astype("int64")
    return frame


def _settings(scheme: Scheme) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The scheme's survey knobs as small tables, so they join onto ratings instead of looping."""
    comps = [c for c in scheme.components if c.survey]
    params = pd.DataFrame(
        {
            "component_id": [c.id for c in comps],
            "min_raters": [c.survey.min_raters for c in comps],
            "normalise": [c.survey.normalize == "rater_mean" for c in comps],
            "neutral": [float(c.survey.neutral_points) for c in comps],
        }
    )
    items = pd.DataFrame(
        [(i, c.id, float(w)) for c in comps for i, w in c.survey.items.items()],
        columns=["item", "component_id", "item_weight"],
    )
    relations = pd.DataFrame(
        [(c.id, r, float(w)) for c in comps for r, w in c.survey.relations.items()],
        columns=["component_id", "relation", "relation_weight"],
    )
    return params, items, relations


def _weighted(frame: pd.DataFrame, keys: list[str], weight: str, values: list[str]) -> pd.DataFrame:
    """Weighted mean of `values` per group, the weights renormalised over the rows present."""
    parts = frame[keys].copy()
    parts["_w"] = frame[weight]
    for v in values:
        parts[v] = frame[v] * frame[weight]
    sums = parts.groupby(keys, sort=False, observed=True).sum()
    out = sums[values].div(sums["_w"].where(sums["_w"] > 0), axis=0)
    out["_w"] = sums["_w"]
    return out.reset_index()


def survey_scores(responses: pd.DataFrame, scheme: Scheme) -> tuple[pd.DataFrame, pd.DataFrame]:
    """-> (component_scores, relation_results): per rated round, person, component (and relation).

    score is the leniency-corrected figure when the component normalises (rater_mean), else equal
    to score_raw; both are kept so a notice can show what the correction did.
    """
    params, items, relations = _settings(scheme)
    cols = [*ROUND, "rater_hash", "relation", "ratee_id", "item", "score"]
    code, distinct = pd.factorize(responses["item"])  # a handful of items: look each up once
    by_item = items.set_index("item").reindex(pd.Index(distinct, dtype=object))
    comp_of = np.append(by_item["component_id"].to_numpy(dtype=object), None)[code]
    known = pd.notna(comp_of) & responses["score"].notna().to_numpy()
    rows = responses.loc[known, cols].rename(columns={"ratee_id": "person_id", "score": "raw"})
    rows["component_id"] = comp_of[known]
    rows["item_weight"] = by_item["item_weight"].to_numpy(dtype=float)[code[known]]
    if rows.empty:
        return _empty(COMPONENT_COLUMNS), _empty(RELATION_COLUMNS)
    # every key becomes an integer code once: a city round is millions of ratings, and grouping on
    # text keys would hash the same strings again at every step
    labels: dict[str, np.ndarray] = {}
    for k in [*ROUND, "person_id", "component_id", "relation", "rater_hash"]:
        rows[k], labels[k] = pd.factorize(rows[k])
    for table in (params, relations):
        table["component_id"] = pd.Index(labels["component_id"]).get_indexer(table["component_id"])
    relations["relation"] = pd.Index(labels["relation"]).get_indexer(relations["relation"])
    self_code = pd.Index(labels["relation"]).get_indexer([SELF])[0]
    rows["normalise"] = rows["component_id"].map(params.set_index("component_id")["normalise"])
    rows["normalise"] = rows["normalise"].fillna(False).astype(bool)

    # leniency correction (scheme.md, literally): a non-self point moves by (grand mean - the
    # rater's mean); the grand mean is over the non-self points of the component in the round,
    # the rater's mean over all their points for it, a self rating included
    peer = rows["relation"].ne(self_code)
    in_round = [*ROUND, "component_id"]
    grand = rows["raw"].where(peer).groupby([rows[k] for k in in_round], sort=False)
    grand = grand.transform("mean")
    by_rater = [rows[k] for k in [*in_round, "rater_hash"]]
    rater_mean = rows["raw"].groupby(by_rater, sort=False).transform("mean")
    shifted = (rows["raw"] + grand - rater_mean).clip(0, 100)
    rows["corr"] = shifted.where(rows["normalise"] & peer, rows["raw"])

    # a rater's score: item-weighted over the items that rater scored; a rater who scored only
    # zero-weight items has no score and is not counted
    rater_key = [*RELATION_KEY, "rater_hash"]
    raters = _weighted(rows, rater_key, "item_weight", ["corr", "raw"])
    raters = raters[raters["_w"] > 0]

    rel = (
        raters.groupby(RELATION_KEY, sort=False, observed=True)
        .agg(raters=("rater_hash", "size"), score=("corr", "mean"), score_raw=("raw", "mean"))
        .reset_index()
        .merge(params, on="component_id", how="left")
        .merge(relations, on=["component_id", "relation"], how="left")
    )
    rel["raters"] = rel["raters"].astype("int64")
    rel["suppressed"] = (rel["raters"] < rel["min_raters"]) & rel["relation"].ne(self_code)
    rel["relation_weight"] = rel["relation_weight"].fillna(0.0).where(~rel["suppressed"], 0.0)

    comp = _weighted(rel, COMPONENT_KEY, "relation_weight", ["score", "score_raw"])
    comp = comp.merge(params[["component_id", "neutral"]], on="component_id", how="left")
    comp["no_basis"] = ~(comp["_w"] > 0)
    for c in ("score", "score_raw"):
        comp[c] = comp[c].where(~comp["no_basis"], comp["neutral"]).astype(float)

    for frame in (rel, comp):  # codes back to the ids people know
        for k in [c for c in RELATION_KEY if c in frame]:
            frame[k] = labels[k][frame[k].to_numpy()]
    relation_results = rel[RELATION_COLUMNS].sort_values(RELATION_KEY, ignore_index=True)
    component_scores = comp[COMPONENT_COLUMNS].sort_values(COMPONENT_KEY, ignore_index=True)
    component_scores["no_basis"] = component_scores["no_basis"].astype(bool)
    relation_results["suppressed"] = relation_results["suppressed"].astype(bool)
    return component_scores, relation_results


__all__ = ["survey_scores", "COMPONENT_COLUMNS", "RELATION_COLUMNS"]
