"""The number rules of scheme.md, in one place.

Scores are floats and are stored unrounded, but every comparison (ranks, ties, quota boundaries,
thresholds, veto bounds) is made on the value rounded half-up to 6 decimals, so that
15.000000000000002 and 15 are the same score. Quotas and money are exact decimals.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import numpy as np
import pandas as pd

COMPARE_PLACES = 6


def r6(values: pd.Series | np.ndarray | float) -> pd.Series | np.ndarray | float:
    """Half-up (away from zero) at 6 decimals: the value every comparison is made on. NaN stays."""
    scaled = np.abs(values) * 10**COMPARE_PLACES
    # the tiny nudge absorbs binary noise such as 2.0000005 being stored as 2.00000049999...
    return np.sign(values) * np.floor(scaled + 0.5 + 1e-7) / 10**COMPARE_PLACES


def half_up(value: Decimal | float | int, places: int = 0) -> Decimal:
    """Decimal half-up rounding (四舍五入) to `places` decimals; floats are read as written."""
    d = value if isinstance(value, Decimal) else Decimal(str(value))
    return d.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def quota(n: int, share: float) -> int:
    """round_half_up(N × share), with the share as the scheme file writes it (0.15, not 0.1499…)."""
    return int(half_up(Decimal(n) * Decimal(str(share))))


def competition_rank(scores: pd.Series, by: pd.Series | list[pd.Series] | None = None) -> pd.Series:
    """Rank by score descending, equal scores (at 6 decimals) sharing the best rank ("1224").

    `by` groups the ranking (a grading scope); NaN scores get no rank.
    """
    key = pd.Series(r6(scores.astype(float)), index=scores.index)
    if by is None:
        ranked = key.rank(method="min", ascending=False)
    else:
        ranked = key.groupby(by).rank(method="min", ascending=False)
    return ranked.astype("Int64")


def lookup(keys: pd.Series, mapping: Mapping[Any, Any]) -> pd.Series:
    """keys.map(mapping) (missing: None), looking each distinct key up once: a dict map over
    Arrow-backed text goes cell by cell, and a city month maps hundreds of thousands of cells."""
    codes, uniques = pd.factorize(keys)
    # the small table takes its dtype once; taking from it stays in that dtype's own arrays
    table = pd.Series(np.array([*(mapping.get(u) for u in uniques), None], dtype=object))
    return table.take(codes).set_axis(keys.index)  # code -1 (a missing key) is the None


def among(keys: pd.Series, values: pd.Series) -> np.ndarray:
    """keys.isin(values) through one hash table (pandas turns every value of an Arrow-backed
    text isin into an Arrow scalar first)."""
    known = pd.Index(pd.unique(values.to_numpy(dtype=object)))
    return known.get_indexer(keys.to_numpy(dtype=object)) >= 0
