"""Bonus allocation (奖金分配): each unit's pool split by weight, exactly, to the cent or yuan.

Weights and shares are exact fractions of the numbers as written (1.5, not 1.4999…), so finance can
recompute every amount from the printed table, and the amounts of a unit always add up to its pool.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pandas as pd

from scoring.grading import flags, floats
from scoring.numbers import half_up
from scoring.scheme import Bonus

OUTPUT_COLUMNS = ["unit_id", "person_id", "grade", "weight", "amount_cents"]


def exact(x: float | int | str | Decimal) -> Fraction:
    """A number as written (Decimal of its repr), as an exact fraction."""
    return Fraction(x if isinstance(x, Decimal) else Decimal(str(x)))


def largest_remainder(total: int, weights: Sequence[Fraction], keys: Sequence[str]) -> list[int]:
    """Split `total` whole units in proportion to `weights` so the parts sum to `total` exactly.

    Everyone gets the floor of their exact share; the units still missing go one each to the
    largest remainders, equal remainders by key ascending, so a larger weight never gets less.
    """
    if len(weights) != len(keys):
        raise ValueError("one key per weight")
    fracs = [Fraction(w) for w in weights]
    den = math.lcm(*{w.denominator for w in fracs}) if fracs else 1
    ints = np.array([w.numerator * (den // w.denominator) for w in fracs], dtype=object)
    return _split(total, ints, np.asarray(keys, dtype=str)).tolist()


def _split(total: int, ints: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """largest_remainder on integer weights (an object array, so no product can overflow)."""
    if total < 0 or (ints < 0).any():
        raise ValueError("a bonus split needs a non-negative total and non-negative weights")
    whole = int(ints.sum()) if len(ints) else 0
    if whole == 0:
        if total == 0:
            return np.zeros(len(ints), dtype=np.int64)
        raise ValueError("every weight is 0: there is nothing to split the total by")
    share = ints * total
    amounts = (share // whole).astype(np.int64)
    missing = total - int(amounts.sum())
    if missing:
        rem = share % whole
        if whole < 2**62:
            order = np.lexsort((keys, -rem.astype(np.int64)))
        else:  # weights with very long decimals: stay in Python integers
            order = sorted(range(len(rem)), key=lambda i: (-rem[i], keys[i]))
        amounts[np.asarray(order[:missing])] += 1
    return amounts


def _pool_units(yuan: Fraction, unit: str, per: int) -> int:
    """The pool in allocation units (cents or whole yuan); a pool finer than that is refused."""
    units = yuan * 100 / per
    if units.denominator != 1:
        what = "whole yuan (rounding: yuan)" if per == 100 else "at most 2 decimals"
        raise ValueError(f"bonus pool of unit {unit} is {float(yuan)} yuan: pools are {what}")
    return int(units)


def _weights(people: pd.DataFrame, bonus: Bonus) -> tuple[list[Fraction], np.ndarray]:
    """Exact weights of the distinct (grade or score, post, veto) combinations, and each person's.

    Distinct combinations are few (grades × post coefficients, or 2-decimal scores), so the exact
    arithmetic is done per combination, not per person.
    """
    veto = flags(people["veto"])
    if bonus.method == "score_share":
        score = floats(people["score"])
        if np.isnan(score).any():
            raise ValueError("score_share needs a period score for every graded person")
        base = pd.Series(score)
    else:
        unknown = set(people.loc[~veto, "grade"].astype(object)) - set(bonus.coefficients)
        if unknown:
            missing = ", ".join(sorted(map(str, unknown)))
            raise ValueError(f"bonus.coefficients has no coefficient for grade {missing}")
        base = people["grade"].astype(object).reset_index(drop=True)
    post = (
        pd.Series(floats(people["post_coefficient"]))
        if bonus.post_coefficient
        else pd.Series(np.ones(len(people)))
    )
    if post.isna().any():
        raise ValueError("post_coefficient is enabled but some graded people have none")
    key = pd.DataFrame({"b": base, "p": post, "v": veto})
    group = key.groupby(["b", "p", "v"], sort=False, dropna=False).ngroup().to_numpy()
    firsts = key.drop_duplicates(["b", "p", "v"]).itertuples(index=False)
    veto_gets = exact(bonus.veto_gets)
    table = []
    for b, p, v in firsts:
        if bonus.method == "score_share":
            w = Fraction(half_up(b, 2)) * exact(p) * (veto_gets if v else 1)
        else:
            w = (veto_gets if v else exact(bonus.coefficients[b])) * exact(p)
        table.append(w)
    return table, group


def allocate(people: pd.DataFrame, bonus: Bonus) -> tuple[pd.DataFrame, list[str]]:
    """One row per graded person with weight and amount_cents; plus what the run must report.

    A unit without a pool or with every weight 0 gets no money (rows with 0), and says so. With
    `pool.total` the whole scheme shares one fund: everyone graded is split together, and a
    unit's table is its people's part of it.
    """
    g = people[flags(people["graded"])].reset_index(drop=True)
    pool = bonus.pool
    if len(pool.given()) != 1:
        raise ValueError("bonus.pool needs exactly one of per_capita, per_unit and total")
    per = 100 if bonus.rounding == "yuan" else 1
    messages: list[str] = []
    table, group = _weights(g, bonus) if len(g) else ([], np.zeros(0, dtype=np.int64))
    for c, w in enumerate(table):
        if w < 0:
            who = ", ".join(g["person_id"].astype(str)[group == c])
            messages.append(f"negative bonus weight counted as 0 for {who}")
            table[c] = Fraction(0)
    den = math.lcm(*{w.denominator for w in table}) if table else 1
    ints = np.array([w.numerator * (den // w.denominator) for w in table], dtype=object)[group]
    keys = g["person_id"].astype(str).to_numpy(dtype=str)
    amounts = np.zeros(len(g), dtype=np.int64)
    unit_col = g["unit_id"].astype(object)
    groups = g.groupby(unit_col, sort=True, dropna=False).indices
    if pool.total is not None:
        groups = {"(all units)": np.arange(len(g))} if len(g) else {}
        if not len(g):
            messages.append(
                f"bonus.pool.total ¥{Decimal(str(pool.total)):,.2f}: nobody is graded, "
                "nothing allocated"
            )
    for unit, rows in groups.items():
        if pool.total is not None:
            yuan = exact(pool.total)
        elif pool.per_unit is not None:
            if unit not in pool.per_unit:
                messages.append(f"unit {unit}: no pool in bonus.pool.per_unit, nothing allocated")
                continue
            yuan = exact(pool.per_unit[unit])
        else:
            yuan = exact(pool.per_capita) * len(rows)
        total = _pool_units(yuan, unit, per)
        if total and not ints[rows].any():
            messages.append(
                f"unit {unit}: every bonus weight is 0, nothing allocated "
                f"(pool ¥{Decimal(total * per) / 100:,.2f})"
            )
            continue
        amounts[rows] = _split(total, ints[rows], keys[rows]) * per
    if pool.per_unit is not None:
        for unit in sorted(set(pool.per_unit) - set(unit_col)):
            messages.append(
                f"unit {unit}: bonus.pool.per_unit gives ¥{Decimal(str(pool.per_unit[unit])):,.2f} "
                "but nobody in the unit is graded, nothing allocated"
            )
    out = pd.DataFrame(
        {
            "unit_id": g["unit_id"].to_numpy(),
            "person_id": g["person_id"].to_numpy(),
            "grade": g["grade"].to_numpy(),
            "weight": np.array([float(w) for w in table], dtype=float)[group],
            "amount_cents": amounts,
        }
    )
    return out, messages
