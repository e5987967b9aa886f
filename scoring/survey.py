"""Survey score (民主测评): ratings -> relation results and component scores, per round.

Follows scheme.md "Survey score". A round is one (survey_id, period). A city round is millions of
ratings, so nothing loops per person or per rating, and nothing groups on text: every key column
is factorised once, the codes of a grouping level are packed into one int64 per rating, and sums
are taken over dense group ids. Rater-level figures exist only inside this module: neither output
carries a rater column, so nothing that reaches a mart can tell which rater gave which score.

Sums are plain float sums in row order (np.bincount); every comparison downstream is made at 6
decimals (scoring/numbers.py), far above the last bits in which ways of adding differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from scoring.scheme import Scheme

ROUND = ["survey_id", "period"]
COMPONENT_KEY = [*ROUND, "person_id", "component_id"]
RELATION_KEY = [*COMPONENT_KEY, "relation"]
RATER_KEY = [*RELATION_KEY, "rater_hash"]
ONE_ORDER = [*RATER_KEY, "item"]  # every key above is a prefix: its groups are runs of rows
COMPONENT_COLUMNS = [*COMPONENT_KEY, "score", "score_raw", "no_basis"]
RELATION_COLUMNS = [*RELATION_KEY, "raters", "score", "score_raw", "suppressed"]
SELF = "self"
_INT64_LIMIT = 2**63
CODE = np.int32  # a key column's codes: half the memory of int64 over a city's ratings


def delivered_round_counts(ratings: pd.DataFrame) -> pd.DataFrame:
    """Per month delivered and round: how many ratings. The load keeps this beside the ratings
    (`survey_round`), so scoring finds a round's ratings by the months that delivered them (the
    ratings' key) instead of searching every rating the scheme has for the round's period."""
    key = ["month", *ROUND]
    counts = ratings.groupby(key, observed=True, sort=True).size()
    return counts.rename("ratings").reset_index().astype({c: object for c in key})


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


# --- the scheme's knobs ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _Settings:
    """The scheme's survey knobs as arrays indexed by component code (the component's place among
    the survey components), looked up per rating or per group by fancy indexing, not joins."""

    ids: pd.Index  # survey component ids: position = component code
    items: pd.DataFrame  # index item id -> component (code), item_weight
    min_raters: np.ndarray
    normalise: np.ndarray
    neutral: np.ndarray
    relations: list[dict[str, float]]  # per component code: relation -> weight

    def relation_weights(self, labels: pd.Index) -> np.ndarray:
        """Weight by (component code, relation code); a relation the component does not weigh,
        or a missing relation (the code after the last label), weighs 0."""
        table = np.zeros((len(self.relations), len(labels) + 1))
        for k, weights in enumerate(self.relations):
            at = labels.get_indexer(list(weights))
            table[k, at[at >= 0]] = np.array(list(weights.values()))[at >= 0]
        return table


def _settings(scheme: Scheme) -> _Settings:
    comps = [c for c in scheme.components if c.survey]
    items = pd.DataFrame(
        [(i, k, float(w)) for k, c in enumerate(comps) for i, w in c.survey.items.items()],
        columns=["item", "component", "item_weight"],
    )
    return _Settings(
        ids=pd.Index(np.array([c.id for c in comps], dtype=object)),
        items=items.set_index("item"),
        min_raters=np.array([c.survey.min_raters for c in comps], dtype=np.int64),
        normalise=np.array([c.survey.normalize == "rater_mean" for c in comps], dtype=bool),
        neutral=np.array([float(c.survey.neutral_points) for c in comps], dtype=float),
        relations=[{r: float(w) for r, w in c.survey.relations.items()} for c in comps],
    )


# --- keys as integers -----------------------------------------------------------------------------
@dataclass
class _Key:
    """One key column of the kept ratings as integer codes (labels in order of first appearance);
    a missing value gets the code after the last label: a group of its own, labelled missing."""

    codes: np.ndarray  # CODE per kept rating
    labels: pd.Index

    @property
    def size(self) -> int:
        return len(self.labels) + 1

    @cached_property
    def rank(self) -> np.ndarray:
        """Per code: its place in label order (as sort_values orders labels), missing last."""
        if isinstance(self.labels.dtype, pd.StringDtype):  # Arrow sorts its text in C++
            ranks = pc.rank(pa.array(self.labels.array), tiebreaker="first").to_numpy()
            ranks = ranks.astype(np.int64) - 1
        else:
            ranks = pd.factorize(self.labels, sort=True)[0]
        return np.append(ranks, len(self.labels))

    def label(self, codes: np.ndarray) -> pd.Index:
        missing = codes >= len(self.labels)
        if missing.any():
            return self.labels.take(np.where(missing, -1, codes), allow_fill=True)
        return self.labels.take(codes)

    def is_(self, label: str) -> np.ndarray:
        """Per code: is it `label` (a lookup table; a missing value is not)."""
        return np.append(np.asarray(self.labels == label, dtype=bool), False)


def _key(column: pd.Series, kept: slice | np.ndarray) -> _Key:
    """Factorised on the whole column (text is hashed once), then cut to the kept ratings; labels
    seen only on dropped ratings leave unused codes, which nothing needs to be dense."""
    codes, labels = pd.factorize(column)
    if isinstance(labels.dtype, pd.CategoricalDtype):  # its labels as text: they sort as text
        labels = labels.categories.take(labels.codes).astype("str")
    codes = codes[kept].astype(CODE)
    if len(codes) and codes.min() < 0:
        codes = np.where(codes < 0, len(labels), codes)
    return _Key(codes, labels)


@dataclass(frozen=True)
class _Ratings:
    """The ratings that count (an item of a survey component, a score given), as arrays."""

    raw: np.ndarray
    item_weight: np.ndarray
    keys: dict[str, _Key]  # RATER_KEY -> codes

    def packed(
        self, names: list[str], rows: slice | np.ndarray = slice(None), sortable: bool = False
    ) -> np.ndarray:
        """One int64 per rating (of `rows`) for the tuple of `names` codes (mixed radix); with
        `sortable` it sorts like the tuple of labels. Should the next digit overflow int64, the
        key so far is first re-ranked densely (an order-preserving factorize): any number of
        distinct keys fits."""
        count = len(self.raw) if isinstance(rows, slice) else len(rows)
        key, size = np.zeros(count, dtype=np.int64), 1
        for name in names:
            digit = self.keys[name]
            if size * digit.size >= _INT64_LIMIT:
                key, uniques = pd.factorize(key, sort=True)
                size = len(uniques)
            key *= digit.size
            key += digit.rank[digit.codes[rows]] if sortable else digit.codes[rows]
            size *= digit.size
        return key

    def labelled(self, names: list[str], rows: np.ndarray) -> dict[str, pd.Index]:
        return {k: self.keys[k].label(self.keys[k].codes[rows]) for k in names}


def _ratings(responses: pd.DataFrame, settings: _Settings) -> _Ratings | None:
    code, distinct = pd.factorize(responses["item"])  # a handful of items: look each up once
    by_item = settings.items.reindex(pd.Index(distinct, dtype=object))
    comp_of = np.append(by_item["component"].fillna(-1).to_numpy(dtype=np.int64), -1)[code]
    score = responses["score"].to_numpy(dtype=float, na_value=np.nan)
    known = (comp_of >= 0) & ~np.isnan(score)
    if not known.any():
        return None
    kept = slice(None) if known.all() else np.flatnonzero(known)
    weight = by_item["item_weight"].to_numpy(dtype=float)
    columns = {"survey_id": "survey_id", "period": "period", "person_id": "ratee_id"}
    keys = {k: _key(responses[c], kept) for k, c in columns.items()}
    keys["component_id"] = _Key(comp_of[kept].astype(CODE), settings.ids)
    keys["relation"] = _key(responses["relation"], kept)
    keys["rater_hash"] = _key(responses["rater_hash"], kept)
    keys["item"] = _Key(code[kept].astype(CODE), pd.Index(distinct, dtype=object))
    return _in_one_order(_Ratings(raw=score[kept], item_weight=weight[code[kept]], keys=keys))


def _in_one_order(ratings: _Ratings) -> _Ratings:
    """The ratings in one order that depends on their values only: float sums depend on the
    order of their terms, and a rerun must give the very same figures when the database's plan,
    and so the order of its rows, differs from the first run's. The order is that of the text of
    (round, ratee, component, relation, rater, item), then the points: the same rating delivered
    by two months (a late correction) ties on the text. Each level's key (rater, relation,
    component) is a prefix of it, so its groups are runs of rows, found without a sort."""
    canonical = ratings.packed(ONE_ORDER, sortable=True)
    if (canonical[1:] > canonical[:-1]).all():
        return ratings
    order = np.argsort(canonical, kind="stable")
    ranked = canonical[order]
    if not (ranked[1:] > ranked[:-1]).all():  # ties: in order of their points too
        order = np.lexsort((ratings.raw, canonical))
    del canonical, ranked
    for key in ratings.keys.values():  # one column at a time: a city month is millions of rows
        key.codes = key.codes[order]
    return _Ratings(ratings.raw[order], ratings.item_weight[order], ratings.keys)


# --- groups ---------------------------------------------------------------------------------------
@dataclass
class _Groups:
    """Dense group ids per row, numbered in order of first appearance."""

    ids: np.ndarray
    n: int

    @cached_property
    def sizes(self) -> np.ndarray:
        return np.bincount(self.ids, minlength=self.n)

    def sum(self, values: np.ndarray) -> np.ndarray:
        """Per-group sum, skipping missing values (a group without any sums to 0)."""
        present = ~np.isnan(values)
        if present.all():
            return np.bincount(self.ids, values, minlength=self.n)
        return np.bincount(self.ids[present], values[present], minlength=self.n)

    def mean(self, values: np.ndarray) -> np.ndarray:
        """Per-group mean as pandas computes it: that sum over the count of values present."""
        missing = np.isnan(values)
        present = np.bincount(self.ids, ~missing, self.n) if missing.any() else self.sizes
        return self.sum(values) / present


def _hashed(key: np.ndarray) -> _Groups:
    """Groups of a key with few distinct values, where hashing is cheapest."""
    ids, uniques = pd.factorize(key)
    return _Groups(ids, len(uniques))


def _runs(key: np.ndarray) -> tuple[_Groups, np.ndarray]:
    """Groups of a key whose rows are in key order (a prefix of ONE_ORDER, packed sortable, over
    rows in the ratings' order), and the first row of each: the groups are the key's runs, found
    in one pass, with no sort and no hashing of millions of keys."""
    if len(key) and not (key[1:] >= key[:-1]).all():
        raise ValueError("survey groups: the key is not in the ratings' order")
    starts = np.r_[True, key[1:] != key[:-1]] if len(key) else np.zeros(0, dtype=bool)
    return _Groups(np.cumsum(starts) - 1, int(starts.sum())), np.flatnonzero(starts)


# --- the steps of scheme.md -----------------------------------------------------------------------
def _leniency_corrected(ratings: _Ratings, peer: np.ndarray, normalise: np.ndarray) -> np.ndarray:
    """scheme.md, literally: a non-self point of a normalising component moves by (grand mean -
    the rater's mean), clipped to [0, 100]; the grand mean is over the non-self points of the
    component in the round, the rater's mean over all their points for it, a self rating
    included. Without a normalising component the points stay the raw ones."""
    moved = normalise & peer
    if not moved.any():
        return ratings.raw
    raw, in_round = ratings.raw, [*ROUND, "component_id"]
    groups = _hashed(ratings.packed(in_round))
    grand = groups.mean(np.where(peer, raw, np.nan))[groups.ids]
    groups = _hashed(ratings.packed([*in_round, "rater_hash"]))
    rater_mean = groups.mean(raw)[groups.ids]
    shifted = pd.Series(raw + grand - rater_mean).clip(0, 100).to_numpy()
    return np.where(moved, shifted, raw)


@dataclass(frozen=True)
class _Level:
    """One output level: a row of the ratings per group (which carries the group's keys), groups
    in key order (they are runs of the ratings' order, _runs), and its figures."""

    rows: np.ndarray
    figures: dict[str, np.ndarray]

    def frame(self, ratings: _Ratings, names: list[str], columns: list[str]) -> pd.DataFrame:
        labels = ratings.labelled(names, self.rows)
        return pd.DataFrame({**labels, **{c: self.figures[c] for c in columns}})


def _rater_scores(ratings: _Ratings, corr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (a rating of each rater, corrected score, raw score). A rater's score is item-weighted
    over the items that rater scored; a rater who scored only zero-weight items has no score and
    is not counted."""
    groups, first = _runs(ratings.packed(RATER_KEY, sortable=True))
    w = ratings.item_weight
    total = groups.sum(w)
    raw = groups.sum(ratings.raw * w)
    valid = total > 0
    raw = raw[valid] / total[valid]
    if corr is not ratings.raw:
        return first[valid], groups.sum(corr * w)[valid] / total[valid], raw
    return first[valid], raw, raw


def _relation_results(ratings: _Ratings, settings: _Settings, corr: np.ndarray) -> _Level:
    """A relation's score is the mean of its raters' scores; a relation with fewer than
    min_raters raters (self exempt) is suppressed: its weight becomes 0 (survey_scores then
    reports its count without its figures)."""
    rater_rows, rater_corr, rater_raw = _rater_scores(ratings, corr)
    groups, first = _runs(ratings.packed(RELATION_KEY, rater_rows, sortable=True))
    rows = rater_rows[first]
    relation = ratings.keys["relation"]
    comp, rel = ratings.keys["component_id"].codes[rows], relation.codes[rows]
    raters = groups.sizes.astype(np.int64)
    suppressed = (raters < settings.min_raters[comp]) & ~relation.is_(SELF)[rel]
    weight = settings.relation_weights(relation.labels)[comp, rel]
    score_raw = groups.mean(rater_raw)
    figures = {
        "raters": raters,
        "score": score_raw if rater_corr is rater_raw else groups.mean(rater_corr),
        "score_raw": score_raw,
        "suppressed": suppressed,
        "weight": np.where(suppressed, 0.0, weight),
    }
    return _Level(rows, figures)


def _component_scores(ratings: _Ratings, settings: _Settings, relations: _Level) -> _Level:
    """Relation-weighted over the relations left (weights renormalised); with none left the
    component has no basis and scores its neutral points."""
    groups, first = _runs(ratings.packed(COMPONENT_KEY, relations.rows, sortable=True))
    rows, fig = relations.rows[first], relations.figures
    w = fig["weight"]
    total = groups.sum(w)
    no_basis = ~(total > 0)
    neutral = settings.neutral[ratings.keys["component_id"].codes[rows]]
    score = np.where(no_basis, neutral, groups.sum(fig["score"] * w) / total)
    raw = np.where(no_basis, neutral, groups.sum(fig["score_raw"] * w) / total)
    figures = {"score": score, "score_raw": raw, "no_basis": no_basis}
    return _Level(rows, figures)


def survey_scores(responses: pd.DataFrame, scheme: Scheme) -> tuple[pd.DataFrame, pd.DataFrame]:
    """-> (component_scores, relation_results): per rated round, person, component (and relation),
    sorted by that key.

    score is the leniency-corrected figure when the component normalises (rater_mean), else equal
    to score_raw; both are kept so a notice can show what the correction did. A relation under
    min_raters (self exempt) is `suppressed`: its raters are counted, its score and score_raw are
    null.
    """
    settings = _settings(scheme)
    ratings = _ratings(responses, settings)
    if ratings is None:
        return _empty(COMPONENT_COLUMNS), _empty(RELATION_COLUMNS)
    relation = ratings.keys["relation"]
    peer = ~relation.is_(SELF)[relation.codes]
    normalise = settings.normalise[ratings.keys["component_id"].codes]
    # 0/0 (a group without values, no basis) and inf - inf (absurd points) give NaN quietly, as
    # pandas arithmetic does
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        corr = _leniency_corrected(ratings, peer, normalise)
        relations = _relation_results(ratings, settings, corr)
        components = _component_scores(ratings, settings, relations)
    relation_results = relations.frame(ratings, RELATION_KEY, RELATION_COLUMNS[5:])
    # a suppressed group's figures are never reported, here or in any mart: from one or two
    # raters they would tell what those raters gave. Its count stays, to say why it is missing.
    hidden = relation_results["suppressed"].to_numpy(dtype=bool)
    for col in ("score", "score_raw"):
        relation_results[col] = relation_results[col].mask(hidden)
    # relation figures keep the kind of number the scores came as (Float64, double[pyarrow]...),
    # as pandas arithmetic on them always did; component scores are plain floats
    kind = (responses["score"].iloc[:0] * np.float64(1)).dtype
    if isinstance(kind, pd.api.extensions.ExtensionDtype):
        relation_results = relation_results.astype({"score": kind, "score_raw": kind})
    return components.frame(ratings, COMPONENT_KEY, COMPONENT_COLUMNS[4:]), relation_results


__all__ = ["survey_scores", "COMPONENT_COLUMNS", "RELATION_COLUMNS"]
