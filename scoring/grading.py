"""Grades (等次) of a period, per grading scope: relative quotas or absolute thresholds.

Everything per person is vectorised over all scopes at once: people are sorted once into rank order
(`rank_order`), each scope's grade boundaries are positions in that order, and a tie is a run of
equal scores (at 6 decimals) in it. Pacesetters reuse the same order, so a tie is broken the same
way in the bulletin's grade table and its pacesetter list.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from scoring.numbers import competition_rank, quota, r6
from scoring.scheme import Grading


def floats(values: pd.Series) -> np.ndarray:
    """Plain float64 with NaN for missing, whatever nullable dtype the caller used."""
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def flags(values: pd.Series) -> np.ndarray:
    """Booleans with a missing flag read as False (no veto, not graded)."""
    return values.astype("boolean").fillna(False).to_numpy(dtype=bool)


def rank_order(people: pd.DataFrame, tiebreak: list[str]) -> np.ndarray:
    """Row positions in rank order: scope, score desc, tiebreak means desc, person_id ascending.

    The single sort behind grading and pacesetters. Scores and component means are compared at
    6 decimals. A missing component mean sorts after any value: a component is missing for a whole
    category (not assessed), so among tied people of one scope it is in effect skipped.
    """
    keys = {"scope": people["scope"].astype("string").array, "s": -r6(floats(people["score"]))}
    for i, comp in enumerate(tiebreak):
        keys[f"t{i}"] = -r6(floats(people[comp]))
    keys["p"] = people["person_id"].astype("string").array
    frame = pd.DataFrame(keys)
    ordered = frame.sort_values(list(frame.columns), na_position="last", kind="stable")
    return ordered.index.to_numpy()


@dataclass(frozen=True)
class Ranked:
    """People of a mask in rank order, with where each scope starts and each tie run ends.

    `rows` are row positions of the input; every other per-entry array is aligned with `rows`.
    Positions called "global" index `rows`; a scope occupies `start[s] : start[s] + count[s]`.
    """

    rows: np.ndarray
    scope: np.ndarray  # scope code per entry
    start: np.ndarray  # per scope code
    count: np.ndarray  # per scope code
    tie: np.ndarray  # tie run id per entry (equal 6-decimal score within one scope)
    tie_end: np.ndarray  # per tie run: global position one past its last entry

    def straddles(self, boundary: np.ndarray) -> np.ndarray:
        """Per scope: does the global `boundary` cut a tie run in two?"""
        local = boundary - self.start
        inside = (local > 0) & (local < self.count)
        out = np.zeros(len(boundary), dtype=bool)
        b = boundary[inside]
        out[inside] = self.tie[b - 1] == self.tie[b]
        return out

    def extend(self, boundary: np.ndarray) -> np.ndarray:
        """Move each straddling boundary past the end of its tie run (ties: generous)."""
        cut = self.straddles(boundary)
        out = boundary.copy()
        out[cut] = self.tie_end[self.tie[boundary[cut] - 1]]
        return out


def ranked(people: pd.DataFrame, order: np.ndarray, mask: np.ndarray, codes: np.ndarray) -> Ranked:
    """The rank order restricted to `mask`, with scope starts and tie runs (codes: scope codes)."""
    n_scopes = int(codes.max()) + 1 if len(codes) else 0
    rows = order[mask[order]]
    scope = codes[rows]
    key = r6(floats(people["score"]))[rows]
    count = np.bincount(scope, minlength=n_scopes)
    start = np.zeros(n_scopes, dtype=np.int64)
    if len(rows):
        first = np.flatnonzero(np.r_[True, scope[1:] != scope[:-1]])
        start[scope[first]] = first
        new_tie = np.r_[True, (scope[1:] != scope[:-1]) | (key[1:] != key[:-1])]
    else:
        new_tie = np.zeros(0, dtype=bool)
    tie = np.cumsum(new_tie) - 1
    tie_end = np.r_[np.flatnonzero(new_tie)[1:], len(rows)].astype(np.int64)
    return Ranked(rows, scope, start, count, tie, tie_end)


def scope_codes(people: pd.DataFrame) -> np.ndarray:
    """Integer code per row for its grading scope (a missing scope is a scope of its own)."""
    codes, _ = pd.factorize(people["scope"].astype("string"), use_na_sentinel=False)
    return codes.astype(np.int64)


def grade(people: pd.DataFrame, grading: Grading, tiebreak: list[str]) -> pd.DataFrame:
    """Add `rank_in_scope`, `grade` and `placed_by_tiebreak` to a period's people (same rows/order).

    A person flagged graded but without a score cannot be placed, so is treated as not graded.
    """
    out = people.copy()
    score = floats(people["score"])
    by = pd.Series(people["scope"].astype("string").to_numpy())
    rank = competition_rank(pd.Series(score), by=by)
    out["rank_in_scope"] = rank.array
    graded = flags(people["graded"]) & ~np.isnan(score)
    veto = flags(people["veto"]) & graded
    ids = np.array([g.grade for g in grading.grades] + [None], dtype=object)
    if grading.method == "absolute":
        idx, tied = _absolute(score, graded, grading), np.zeros(len(people), dtype=bool)
    else:
        idx, tied = _relative(people, graded, veto, grading, tiebreak)
    idx[veto] = len(grading.grades) - 1
    out["grade"] = pd.Series(ids[idx], index=out.index, dtype=object)  # None, not NaN
    out["placed_by_tiebreak"] = tied
    return out


def _absolute(score: np.ndarray, graded: np.ndarray, grading: Grading) -> np.ndarray:
    """First grade whose min the score reaches; below every min means the worst grade."""
    last = len(grading.grades) - 1
    idx = np.where(graded, last, -1)
    key = r6(score)
    for k in range(last, -1, -1):  # worst first, so the first match (best) is written last
        g = grading.grades[k]
        hit = graded if g.min is None else graded & (key >= r6(float(g.min)))
        idx[hit] = k
    return idx


def _quotas(n: np.ndarray, grading: Grading) -> tuple[np.ndarray, int]:
    """Quota per scope and grade (rest grade: 0 here), cut from the worst shared grade upward."""
    grades = grading.grades
    rest = [k for k, g in enumerate(grades) if g.share is None]
    if len(rest) != 1:
        raise ValueError("relative grading needs exactly one grade without a share (the rest)")
    uniq, inv = np.unique(n, return_inverse=True)
    table = np.array(
        [[0 if g.share is None else quota(int(u), g.share) for g in grades] for u in uniq],
        dtype=np.int64,
    ).reshape(len(uniq), len(grades))
    q = table[inv]
    excess = np.maximum(q.sum(axis=1) - n, 0)
    for k in range(len(grades) - 1, -1, -1):
        cut = np.minimum(q[:, k], excess)
        q[:, k] -= cut
        excess -= cut
    return q, rest[0]


def _relative(
    people: pd.DataFrame,
    graded: np.ndarray,
    veto: np.ndarray,
    grading: Grading,
    tiebreak: list[str],
) -> tuple[np.ndarray, np.ndarray]:
    """Grade index per row (-1: not graded) and the placed-by-tiebreak flag, all scopes at once."""
    n_rows, n_grades = len(people), len(grading.grades)
    idx = np.full(n_rows, -1, dtype=np.int64)
    tied = np.zeros(n_rows, dtype=bool)
    codes = scope_codes(people)
    n_scopes = int(codes.max()) + 1 if n_rows else 0
    n = np.bincount(codes[graded], minlength=n_scopes)
    v = np.bincount(codes[veto], minlength=n_scopes)
    q, rest = _quotas(n, grading)
    worst = n_grades - 1
    if worst != rest:
        q[:, worst] = np.maximum(q[:, worst] - v, 0)  # vetoed people already hold these places
    view = ranked(people, rank_order(people, tiebreak), graded & ~veto, codes)
    m = view.count
    # boundary k (1..G-1) is where grade k starts; grades above the rest fill from the top,
    # those below it from the bottom, the rest grade takes what is between
    bounds = np.zeros((n_scopes, n_grades + 1), dtype=np.int64)
    bounds[:, n_grades] = m
    for k in range(1, rest + 1):
        bounds[:, k] = np.minimum(q[:, :k].sum(axis=1), m)
    for k in range(rest + 1, n_grades):
        bounds[:, k] = np.maximum(m - q[:, k:].sum(axis=1), bounds[:, rest])
    glob = bounds + view.start[:, None]
    if grading.ties == "generous":
        for k in range(1, n_grades):
            glob[:, k] = np.maximum(view.extend(glob[:, k]), glob[:, k - 1])
    else:
        cut = np.zeros(len(view.tie_end), dtype=bool)
        for k in range(1, n_grades):
            hit = view.straddles(glob[:, k])
            cut[view.tie[glob[hit, k] - 1]] = True
        tied[view.rows] = cut[view.tie]
    pos = np.arange(len(view.rows))
    idx[view.rows] = (pos[:, None] >= glob[view.scope, 1:n_grades]).sum(axis=1)
    return idx, tied
