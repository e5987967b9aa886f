"""Pacesetters (绩效标兵): the top share of each grading scope, then approved unit nominations.

The rank route reuses grading's rank order, so a boundary tie is broken exactly as in the grade
table. Every nomination that is not taken comes back with its reason: the office must be able to
answer the unit that nominated someone.
"""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal

import numpy as np
import pandas as pd

from scoring.grading import flags, floats, rank_order, ranked, scope_codes
from scoring.numbers import quota
from scoring.scheme import Grading, Pacesetters, Streak
from scoring.timeline import months_of, scope_key

REPORT_COLUMNS = ["person_id", "unit_id", "month", "source_file", "source_line", "reason_refused"]
UNKNOWN = "unknown person"
NOT_GRADED = "not graded"
VETOED = "vetoed"
BARRED = "barred from honours"
ALREADY = "already a pacesetter by rank"
ALREADY_STREAK = "already a pacesetter by first-tier streak"
DUPLICATE = "duplicate"
OVER_CAP = "over the unit's cap"


def _floor(n: int | float, share: float) -> int:
    """floor(N × share) on the share as written, so 0.1 × 30 is 3, not 2."""
    return int((Decimal(str(n)) * Decimal(str(share))).to_integral_value(rounding=ROUND_FLOOR))


def _headcount(headcount: pd.Series, unit: object) -> float:
    """The unit's roster headcount; a unit the roster does not know has none, so no nominations."""
    h = headcount.get(unit, 0) if unit is not None else 0
    return 0 if pd.isna(h) else h


def _rank_count(n: int, cfg: Pacesetters) -> int:
    k = quota(n, cfg.share) if cfg.rounding == "half_up" else _floor(n, cfg.share)
    if cfg.at_least_one and n >= 1:
        k = max(k, 1)
    return min(k, n)


def first_tier(monthly: pd.DataFrame, scope: str, cfg: Pacesetters) -> pd.Series:
    """Per monthly row: in the month's first tier (第一方阵) of its grading scope, i.e. ranked
    within the top max(1, N × streak.share) of the N people ranked there that month (rounded as
    `cfg.rounding`); people tied at the boundary are all in."""
    streak = cfg.streak
    if streak is None or monthly.empty:
        return pd.Series(False, index=monthly.index)
    rank = pd.to_numeric(monthly["rank_in_scope"], errors="coerce")
    key = monthly["month"].astype(str) + "|" + scope_key(monthly, scope)
    n = key.map(key[rank.notna()].value_counts()).fillna(0).astype(int)
    sizes = {
        int(x): _rank_count(int(x), cfg.model_copy(update={"share": streak.share}))
        for x in n.unique()
    }
    k = n.map(sizes).clip(lower=1)
    return (rank <= k).fillna(False).astype(bool)


def streaks(monthly: pd.DataFrame, period: str, scope: str, cfg: Pacesetters) -> pd.Series:
    """person_id -> True for people in the first tier in `streak.months` consecutive months of
    the period (连续N个月进入第一方阵)."""
    streak: Streak | None = cfg.streak
    if streak is None:
        return pd.Series(dtype=bool)
    months = months_of(period)
    rows = monthly[monthly["month"].isin(months)]
    top = rows[first_tier(rows, scope, cfg).to_numpy()]
    m = top["month"].map({x: i for i, x in enumerate(months)}).astype(int)
    frame = pd.DataFrame({"p": top["person_id"].astype(str).to_numpy(), "m": m.to_numpy()})
    frame = frame.drop_duplicates().sort_values(["p", "m"])
    # a run of consecutive months: month index minus position in the person's list is constant
    frame["run"] = frame["m"] - frame.groupby("p").cumcount()
    longest = frame.groupby(["p", "run"]).size().groupby(level=0).max()
    return longest >= streak.months


def pick_pacesetters(
    people: pd.DataFrame,
    nominations: pd.DataFrame,
    headcount: pd.Series,
    cfg: Pacesetters,
    grading: Grading,
    tiebreak: list[str],
    streak: pd.Series | None = None,
    barred: set[str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Add `pacesetter` and `pacesetter_route`; return the nominations not taken with the reason.

    A person flagged graded but without a score is treated as not graded (as in grading).
    streak: person_id -> in the first tier for the scheme's consecutive months (route `streak`,
    after the rank route and before nominations, uncapped).
    barred: people a register row bars from honours (取消评先评优): like the vetoed, they are not
    counted in N and take no route; their grade is not touched.
    """
    out = people.copy()
    score = floats(people["score"])
    graded = flags(people["graded"]) & ~np.isnan(score)
    veto = flags(people["veto"])
    bar = people["person_id"].astype(str).isin(barred or set()).to_numpy()
    codes = scope_codes(people)
    view = ranked(people, rank_order(people, tiebreak), graded & ~veto & ~bar, codes)
    uniq, inv = np.unique(view.count, return_inverse=True)
    k = np.array([_rank_count(int(u), cfg) for u in uniq], dtype=np.int64)[inv]
    end = view.start + k
    if grading.ties == "generous":
        end = view.extend(end)
    pos = np.arange(len(view.rows))
    by_rank = np.zeros(len(people), dtype=bool)
    by_rank[view.rows] = pos < end[view.scope]

    on_streak = np.zeros(len(people), dtype=bool)
    if streak is not None and len(streak):
        hit = people["person_id"].astype(str).map(streak).fillna(False).to_numpy(dtype=bool)
        on_streak = hit & graded & ~veto & ~bar & ~by_rank
    before = by_rank | on_streak
    taken, report = _nominations(
        people, nominations, headcount, cfg, graded, veto, bar, by_rank, on_streak
    )
    route = np.full(len(people), None, dtype=object)
    route[by_rank] = "rank"
    route[on_streak] = "streak"
    route[taken] = "nomination"
    out["pacesetter"] = before | taken
    out["pacesetter_route"] = pd.Series(route, index=out.index, dtype=object)
    return out, report


def _nominations(
    people: pd.DataFrame,
    nominations: pd.DataFrame,
    headcount: pd.Series,
    cfg: Pacesetters,
    graded: np.ndarray,
    veto: np.ndarray,
    bar: np.ndarray,
    by_rank: np.ndarray,
    on_streak: np.ndarray,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Rows of `people` taken by nomination, and the refused nominations in nomination order."""
    taken = np.zeros(len(people), dtype=bool)
    if nominations.empty:
        return taken, pd.DataFrame({c: pd.Series(dtype=object) for c in REPORT_COLUMNS})
    nom = nominations.sort_values(["month", "source_file", "source_line"], kind="stable")
    nom = nom.reset_index(drop=True)
    row_of = pd.Series(np.arange(len(people)), index=people["person_id"].astype(str).to_numpy())
    row_of = row_of[~row_of.index.duplicated()]
    pid = nom["person_id"].astype(str)
    row = pid.map(row_of)
    known = row.notna().to_numpy()
    r = row.fillna(0).astype(np.int64).to_numpy()
    unit = pd.Series(np.where(known, people["unit_id"].to_numpy(dtype=object)[r], None))
    reason = np.full(len(nom), None, dtype=object)
    reason[known & bar[r]] = BARRED
    reason[known & veto[r]] = VETOED
    reason[known & ~graded[r]] = NOT_GRADED
    reason[known & on_streak[r]] = ALREADY_STREAK
    reason[known & by_rank[r]] = ALREADY
    reason[~known] = UNKNOWN
    open_ = pd.Series(reason).isna().to_numpy()

    first = open_ & ~pid.where(open_).duplicated().to_numpy()
    units = unit[first]
    order_in_unit = np.zeros(len(nom), dtype=np.int64)
    order_in_unit[first] = units.groupby(units, dropna=False).cumcount().to_numpy()
    cap = np.zeros(len(nom), dtype=np.int64)
    cap[first] = [_floor(_headcount(headcount, u), cfg.nomination_cap) for u in units]
    win = first & (order_in_unit < cap)
    winners = set(pid[win])
    reason[first & ~win] = OVER_CAP
    again = open_ & ~first
    reason[again & pid.isin(winners).to_numpy()] = DUPLICATE
    reason[again & ~pid.isin(winners).to_numpy()] = OVER_CAP
    taken[r[win]] = True

    refused = pd.notna(reason)
    report = pd.DataFrame(
        {
            "person_id": nom["person_id"].to_numpy()[refused],
            "unit_id": unit.to_numpy()[refused],
            "month": nom["month"].to_numpy()[refused],
            "source_file": nom["source_file"].to_numpy()[refused],
            "source_line": nom["source_line"].to_numpy()[refused],
            "reason_refused": reason[refused],
        }
    )
    return taken, report
