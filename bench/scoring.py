"""Scoring benchmark: one month and one year scored from loaded data to marts.

    python -m bench.scoring [--sizes 20000,200000] [--year-sizes 20000] [--db sqlite,postgresql]
                            [--month 2026-03] [--profile DIR]

The issue's targets, on a 2-core machine: one month of 200,000 people scored in under 10 s; one
month of 1,000,000 people in under 60 s with peak memory under 8 GiB (the 1,000,000 case and the
year of 200,000 run only with BENCH_FULL=1 in the environment, or when --sizes/--year-sizes name
them). "One month" is one `score_months` call for a quarter-end month whose extract delivered a
quarterly survey round, then, up to 200,000 people, the same call again, as an operator's rerun
(every mart row of the month replaced by the same rows; printed apart, as "rerun s", and not in
the month's figures);
"one year" is `score_months` for every month of 2026 in order, then `close_period_in_warehouse`
for the four quarters, both halves and the year.

The loaded data is synthetic and built straight into warehouse tables with numpy (seeded), not
through the file generator and intake, which would take far longer than the scoring at these sizes:
units of 200 people in departments of 20, a quarter of the units courts (judges and assistants,
15 % and 10 % of everyone), hires and leavers, attendance per person and calendar day, a case
universe of ~15 filings and ~15 closings per judge and month with appeals and panels, a quarterly
survey round of ~20 ratings per person, adjustments for ~5 % of people per month and nominations in
June and December. A month case loads what `score_months` reads for it (roster, case snapshots and
adjustments from January to the month, the month's attendance and survey round); a year case loads
the whole year. Loading (bulk_insert, then a checkpoint on SQLite, VACUUM ANALYZE and CHECKPOINT
on PostgreSQL: the load's pages are written before the clock, not in the middle of the scoring)
runs in its own spawned process before the clock starts, into a fresh SQLite file or a fresh
PostgreSQL database per case; scoring runs in another spawned process, so its peak memory is its
own. Figures are printed, never asserted: the command exits 0 whether a target is met or not.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.ingest import (
    DEFAULT_PG,
    SCHEME,
    SHORT,
    _in_child,
    _log,
    _peak_mib,
    _rate,
    _revision,
    _timed,
    pg_database,
    pg_version,
    print_pg_line,
)

SEED = 1
YEAR = 2026
MONTH = f"{YEAR}-03"
MONTHS = [f"{YEAR}-{m:02d}" for m in range(1, 13)]
PERIODS = [*(f"{YEAR}-Q{q}" for q in range(1, 5)), f"{YEAR}-H1", f"{YEAR}-H2", f"{YEAR}"]
SCHEME_ID = "demo-2026"
UNIT, DEPT = 200, 20  # people per unit and per department
DEFAULT_SIZES = [20_000, 200_000]
DEFAULT_YEAR_SIZES = [20_000]
FULL_SIZES = [1_000_000]
FULL_YEAR_SIZES = [200_000]
TARGET_MONTH = (200_000, 10.0)  # people, seconds
TARGET_FULL = (1_000_000, 60.0, 8 * 1024)  # people, seconds, peak MiB
SLOW_SETUP_S = 60.0
RERUN_MAX = 200_000  # people: larger months are scored once
CHUNK_ROWS = 2_000_000  # rows per generated frame and bulk_insert, to bound setup memory

# --- vocabulary of the demo scheme ----------------------------------------------------------------
DAY0 = np.datetime64(f"{YEAR - 3}-01-01")
ISO = np.datetime_as_string(np.arange(DAY0, np.datetime64(f"{YEAR + 3}-01-01"))).astype(object)
STATUS = np.array(
    ["present", "late", "early_leave", "absent", "leave", "business_trip", "holiday"], dtype=object
)
HOLIDAY = 6
WEEKDAY_STATUS_P = np.cumsum([0.91, 0.03, 0.01, 0.005, 0.03, 0.015])
PROCEDURE = np.array(["summary", "simple", "ordinary"], dtype=object)
OUTCOME = np.array(["judgment", "mediation", "withdrawal", "dismissal", "other"], dtype=object)
APPEAL = np.array(["upheld", "reversed", "remanded"], dtype=object)
RELATION = np.array(["superior", "peer", "subordinate", "public"], dtype=object)
CATEGORIES = np.array(["judge", "assistant", "leader", "middle", "staff"], dtype=object)
ITEMS = np.array(["de", "neng", "qin", "ji", "lian"], dtype=object)
LEVELS = np.array(["不称职", "基本称职", "称职", "优秀"], dtype=object)
LEVEL_POINTS = np.array([40.0, 65.0, 80.0, 95.0])
LEVEL_FLOORS = [60, 75, 90]
PUBLIC_PER_UNIT = 300  # outside raters per unit (public relation), ids after the people


# --- the synthetic organisation -------------------------------------------------------------------
def _obj(values: Any, n: int | None = None) -> np.ndarray:
    """An object array (one shared Python object per distinct value), so pandas infers no string
    dtype and bulk_insert hands the same objects on without copying them per row."""
    if n is not None:
        out = np.empty(n, dtype=object)
        out[:] = values
        return out
    return np.asarray(values, dtype=object)


def _frame(columns: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame({k: pd.Series(v, dtype=v.dtype, copy=False) for k, v in columns.items()})


def _month_days(k: int) -> np.ndarray:
    """Day numbers (since DAY0) of month index k of the year."""
    start = np.datetime64(MONTHS[k], "M")
    days = np.arange(start.astype("M8[D]"), (start + 1).astype("M8[D]")) - DAY0
    return days.astype(np.int64)


def _weekend(days: np.ndarray) -> np.ndarray:
    return (days + (DAY0 - np.datetime64("1970-01-01")).astype(np.int64) + 3) % 7 >= 5


@dataclass
class Org:
    n: int
    pid: np.ndarray  # object
    unit: np.ndarray
    dept: np.ndarray
    cat: np.ndarray  # object
    post: np.ndarray
    quality: np.ndarray
    first: np.ndarray  # first month index on the roster
    last: np.ndarray  # last month index on the roster
    active_from: np.ndarray  # object, None or ISO
    active_to: np.ndarray
    unit_size: np.ndarray

    def present(self, k: int) -> np.ndarray:
        return np.flatnonzero((self.first <= k) & (self.last >= k))


def build_org(n: int, seed: int = SEED) -> Org:
    rng = np.random.default_rng([seed, n])
    i = np.arange(n)
    unit, pos = i // UNIT, i % UNIT
    n_units = int(unit.max()) + 1 if n else 0
    court = unit % 4 == 0
    code = np.where(
        court,
        np.where(pos < 0.6 * UNIT, 0, 1),
        np.where(pos < 6, 2, np.where(pos % DEPT < 3, 3, 4)),
    )
    cat = CATEGORIES[code]
    # hires (first month after January) and leavers (last month before December), ~0.5 % each
    first = np.zeros(n, np.int64)
    last = np.full(n, 11, np.int64)
    active_from, active_to = _obj(None, n), _obj(None, n)
    r = rng.random(n)
    hired, left = np.flatnonzero(r < 0.005), np.flatnonzero((r >= 0.005) & (r < 0.01))
    first[hired] = rng.integers(1, 12, size=len(hired))
    last[left] = rng.integers(0, 11, size=len(left))
    for who, month_of, into in ((hired, first, active_from), (left, last, active_to)):
        for k in range(12):
            sel = who[month_of[who] == k]
            days = _month_days(k)
            into[sel] = ISO[days[rng.integers(0, len(days), size=len(sel))]]
    return Org(
        n=n,
        pid=_obj([f"P{x:07d}" for x in range(n)]),
        unit=unit,
        dept=i // DEPT,
        cat=cat,
        post=np.round(rng.uniform(1.0, 1.5, size=n), 1),
        quality=rng.normal(0, 6, size=n),
        first=first,
        last=last,
        active_from=active_from,
        active_to=active_to,
        unit_size=np.bincount(unit, minlength=n_units),
    )


def _common(n: int, month: str, source: str, line0: int) -> dict[str, np.ndarray]:
    return {
        "scheme_id": _obj(SCHEME_ID, n),
        "month": _obj(month, n),
        "source_file": _obj(f"{source}-{month}.csv", n),
        "source_line": np.arange(line0, line0 + n, dtype=np.int64),
    }


# --- tables, month by month (frames of at most CHUNK_ROWS rows) -----------------------------------
def roster_frame(org: Org, k: int) -> pd.DataFrame:
    p = org.present(k)
    units, depts = org.unit[p], org.dept[p]
    ustr = pd.Index(np.unique(units)).astype(str)
    dstr = pd.Index(np.unique(depts)).astype(str)
    uid = dict(zip(np.unique(units), _obj([f"U{u}" for u in ustr]), strict=True))
    did = dict(zip(np.unique(depts), _obj([f"D{d}" for d in dstr]), strict=True))
    uname = {u: f"单位{u}" for u in uid}
    dname = {d: f"科室{d}" for d in did}
    pids = org.pid[p]
    return _frame(
        {
            **_common(len(p), MONTHS[k], "roster", 2),
            "person_id": pids,
            "name": _obj([f"姓名{x[1:]}" for x in pids]),
            "unit_id": _obj(pd.Series(units).map(uid).to_numpy()),
            "unit_name": _obj(pd.Series(units).map(uname).to_numpy()),
            "dept_id": _obj(pd.Series(depts).map(did).to_numpy()),
            "dept_name": _obj(pd.Series(depts).map(dname).to_numpy()),
            "category": org.cat[p],
            "post_coefficient": org.post[p],
            "email": _obj([f"{x.lower()}@example.gov.cn" for x in pids]),
            "active_from": org.active_from[p],
            "active_to": org.active_to[p],
        }
    )


def attendance_frames(org: Org, k: int, rng: np.random.Generator) -> Iterator[pd.DataFrame]:
    """Every calendar day of the month per person on the roster: weekends are holidays (no filing
    required), weekdays mostly present, with late, early leave, absence, leave and trips."""
    p = org.present(k)
    days = _month_days(k)
    n_days = len(days)
    weekend = _weekend(days)
    dates = ISO[days]
    per = max(1, CHUNK_ROWS // n_days)
    line = 2
    for a in range(0, len(p), per):
        who = p[a : a + per]
        rows = len(who) * n_days
        status = np.searchsorted(WEEKDAY_STATUS_P, rng.random((len(who), n_days)))
        status[:, weekend] = HOLIDAY
        filed = (rng.random((len(who), n_days)) < 0.95).astype(np.int64)
        reviewed = filed & (rng.random((len(who), n_days)) < 0.85)
        blank = np.broadcast_to(weekend, (len(who), n_days)).ravel()
        yield _frame(
            {
                **_common(rows, MONTHS[k], "attendance", line),
                "person_id": np.repeat(org.pid[who], n_days),
                "date": np.tile(dates, len(who)),
                "status": STATUS[status.ravel()],
                "duty_filed": pd.arrays.IntegerArray(filed.ravel(), blank.copy()),
                "duty_reviewed": pd.arrays.IntegerArray(reviewed.ravel(), blank.copy()),
            }
        )
        line += rows


def case_universe(org: Org, k_last: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Every case a snapshot from January to month k_last can show, with its whole future."""
    judges = np.flatnonzero(org.cat == "judge")
    s0, e1 = int(_month_days(0)[0]), int(_month_days(k_last)[-1])
    t0 = s0 - 90
    fresh = rng.poisson(15 * (e1 - t0 + 1) / 30.44, size=len(judges))
    old = rng.poisson(0.5, size=len(judges))  # a backlog of long-pending cases
    judge = np.r_[np.repeat(judges, fresh), np.repeat(judges, old)]
    n_fresh, n = int(fresh.sum()), int(fresh.sum() + old.sum())
    filed = np.r_[
        rng.integers(t0, e1 + 1, size=n_fresh), rng.integers(s0 - 500, s0 - 370, n - n_fresh)
    ]
    duration = np.r_[
        np.clip(np.rint(np.exp(np.log(22) + 0.6 * rng.standard_normal(n_fresh))), 1, 300),
        rng.integers(400, 800, size=n - n_fresh),
    ].astype(np.int64)
    closed = filed + duration
    proc = rng.choice(3, size=n, p=[0.3, 0.45, 0.25])
    outcome = rng.choice(5, size=n, p=[0.5, 0.25, 0.15, 0.05, 0.05])
    judgment = outcome == 0
    appealed = judgment & (rng.random(n) < 0.1)
    never = np.iinfo(np.int64).max // 2
    decided = np.where(appealed, closed + rng.integers(30, 121, size=n), never)
    appeal = rng.choice(3, size=n, p=[0.76, 0.12, 0.12])
    keep = (closed >= s0) | (decided >= s0)
    u = {
        "judge": judge,
        "filed": filed,
        "closed": closed,
        "proc": proc,
        "outcome": outcome,
        "in_court": judgment & (rng.random(n) < 0.4),
        "decided": decided,
        "appeal": appeal,
        "fault": (proc == 2) & appealed & (appeal > 0) & (rng.random(n) < 0.5),
    }
    u = {key: v[keep] for key, v in u.items()}
    u["case_no"] = np.flatnonzero(keep)
    # ordinary procedure: a panel of the judge and two others of the same court
    ordinary = np.flatnonzero(u["proc"] == 2)
    j = u["judge"][ordinary]
    base, size = org.unit[j] * UNIT, org.unit_size[org.unit[j]]
    a = rng.integers(1, 100, size=len(j))
    b = a + rng.integers(1, 99, size=len(j))
    m1, m2 = base + (j - base + a) % size, base + (j - base + b) % size
    panel = _obj(None, len(u["judge"]))
    panel[ordinary] = (
        pd.Series(org.pid[j], dtype=object)
        + ";"
        + pd.Series(org.pid[m1], dtype=object)
        + ";"
        + pd.Series(org.pid[m2], dtype=object)
    ).to_numpy(dtype=object)
    u["panel"] = panel
    return u


def case_frames(org: Org, u: dict[str, np.ndarray], k: int) -> Iterator[pd.DataFrame]:
    """Month k's extract: every case open in the month or with an appeal decided in it, as the
    court's system knew it at the month's end."""
    days = _month_days(k)
    s, e = int(days[0]), int(days[-1])
    alive = ((u["filed"] <= e) & (u["closed"] >= s)) | ((u["decided"] >= s) & (u["decided"] <= e))
    idx = np.flatnonzero(alive)
    dept_ids = _obj([f"D{d}" for d in range(int(org.dept.max()) + 1)])
    top = len(ISO) - 1
    line = 2
    for a in range(0, len(idx), CHUNK_ROWS):
        c = {key: v[idx[a : a + CHUNK_ROWS]] for key, v in u.items()}
        rows = len(c["judge"])
        done = c["closed"] <= e
        known = c["decided"] <= e
        yield _frame(
            {
                **_common(rows, MONTHS[k], "cases", line),
                "case_id": _obj([f"({YEAR})C{x:09d}" for x in c["case_no"]]),
                "dept_id": dept_ids[org.dept[c["judge"]]],
                "judge_id": org.pid[c["judge"]],
                "panel_ids": c["panel"],
                "filed_on": ISO[c["filed"]],
                "closed_on": np.where(done, ISO[np.minimum(c["closed"], top)], None),
                "procedure": PROCEDURE[c["proc"]],
                "outcome": np.where(done, OUTCOME[c["outcome"]], None),
                "verdict_in_court": (done & c["in_court"]).astype(np.int64),
                "appeal_outcome": np.where(known, APPEAL[c["appeal"]], None),
                "appeal_decided_on": np.where(known, ISO[np.minimum(c["decided"], top)], None),
                "fault": (known & c["fault"]).astype(np.int64),
            }
        )
        line += rows


def rater_hashes(org: Org) -> np.ndarray:
    """Hex text per rater id: the people, then PUBLIC_PER_UNIT outside raters per unit."""
    total = org.n + len(org.unit_size) * PUBLIC_PER_UNIT
    mask = (1 << 64) - 1
    return _obj(
        [f"{(x * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & mask:016x}" for x in range(total)]
    )


def survey_frames(
    org: Org, k: int, rng: np.random.Generator, hashes: np.ndarray
) -> Iterator[pd.DataFrame]:
    """The quarter's round, delivered in its last month: per ratee three raters of each of
    superior, peer and subordinate from the same unit (and three of the public for 30 %), each
    scoring two of the five items, ~20 ratings a person; 5 % of the scores given as levels."""
    quarter = k // 3 + 1
    p = org.present(k)
    survey_ids = _obj([f"{YEAR}Q{quarter}-U{u}" for u in range(len(org.unit_size))])
    per = max(1, CHUNK_ROWS // 20)
    line = 2
    for a in range(0, len(p), per):
        who = p[a : a + per]
        unit = org.unit[who]
        base, size = unit * UNIT, org.unit_size[unit]
        off = 1 + 20 * np.arange(9)[None, :] + rng.integers(0, 20, size=(len(who), 9))
        inside = base[:, None] + ((who - base)[:, None] + off) % size[:, None]
        public = np.flatnonzero(rng.random(len(who)) < 0.3)
        pub = (
            org.n
            + unit[public, None] * PUBLIC_PER_UNIT
            + np.arange(3)[None, :] * (PUBLIC_PER_UNIT // 3)
            + rng.integers(0, PUBLIC_PER_UNIT // 3, size=(len(public), 3))
        )
        ratee = np.r_[np.repeat(who, 9), np.repeat(who[public], 3)]
        rater = np.r_[inside.ravel(), pub.ravel()]
        rel = np.r_[np.tile(np.repeat([0, 1, 2], 3), len(who)), np.full(pub.size, 3)]
        if (size < UNIT).any():  # a small unit: drop self-pairs and repeated pairs
            ok = rater != ratee
            ratee, rater, rel = ratee[ok], rater[ok], rel[ok]
            _, first = np.unique(ratee * (len(hashes) + 1) + rater, return_index=True)
            first = np.sort(first)
            ratee, rater, rel = ratee[first], rater[first], rel[first]
        i1 = rng.integers(0, 5, size=len(ratee))
        i2 = (i1 + rng.integers(1, 5, size=len(ratee))) % 5
        ratee, rater, rel = np.repeat(ratee, 2), np.repeat(rater, 2), np.repeat(rel, 2)
        item = np.column_stack([i1, i2]).ravel()
        score = np.clip(np.rint(82 + org.quality[ratee] + rng.normal(0, 6, len(ratee))), 40, 100)
        as_level = rng.random(len(ratee)) < 0.05
        level_no = np.digitize(score, LEVEL_FLOORS)
        rows = len(ratee)
        yield _frame(
            {
                **_common(rows, MONTHS[k], "surveys", line),
                "survey_id": survey_ids[org.unit[ratee]],
                "rater_hash": hashes[rater],
                "ratee_id": org.pid[ratee],
                "item": ITEMS[item],
                "period": _obj(f"{YEAR}-Q{quarter}", rows),
                "relation": RELATION[rel],
                "score": np.where(as_level, LEVEL_POINTS[level_no], score),
                "level": np.where(as_level, LEVELS[level_no], None),
            }
        )
        line += rows


def adjustment_frame(org: Org, k: int, rng: np.random.Generator, scheme: Any) -> pd.DataFrame:
    """~5 % of the month's people with a rule of the scheme, and a disciplinary veto or so per
    20,000 people; points fit the rule (a range rule inside it, a fixed rule none or its own)."""
    rules = [r for r in scheme.adjustments if not r.veto]
    vetoes = [r for r in scheme.adjustments if r.veto]
    p = org.present(k)
    who = p[rng.random(len(p)) < 0.05]
    veto_who = rng.choice(p, size=min(len(p), max(1, org.n // 20_000)), replace=False)
    pick = rng.integers(0, len(rules), size=len(who))
    points = np.full(len(who), np.nan)
    for r_i, rule in enumerate(rules):
        sel = pick == r_i
        if rule.range is not None:
            lo, hi = rule.range
            grid = np.arange(lo, hi + 1e-9, 0.5)
            points[sel] = grid[rng.integers(0, len(grid), size=sel.sum())]
        else:
            points[sel] = np.where(rng.random(sel.sum()) < 0.3, float(rule.points), np.nan)
    names = _obj([r.rule for r in rules])[pick]
    all_who = np.r_[who, veto_who]
    n = len(all_who)
    days = _month_days(k)
    return _frame(
        {
            **_common(n, MONTHS[k], "adjustments", 2),
            "person_id": org.pid[all_who],
            "date": ISO[days[rng.integers(0, len(days), size=n)]],
            "rule": np.r_[names, _obj(vetoes[0].rule if vetoes else rules[0].rule, len(veto_who))],
            "points": np.r_[points, np.full(len(veto_who), np.nan)],
            "count": rng.choice([1, 2, 3], size=n, p=[0.85, 0.1, 0.05]).astype(np.int64),
            "note": _obj("说明", n),
            "evidence": _obj("依据文件", n),
        }
    )


def nomination_frame(org: Org, k: int, rng: np.random.Generator) -> pd.DataFrame:
    """Three nominations per unit for the half ending in month k (June or December)."""
    p = org.present(k)
    units = org.unit[p]
    order = np.lexsort((rng.random(len(p)), units))
    first = np.r_[0, np.flatnonzero(np.diff(units[order])) + 1]
    take = np.concatenate([order[f : f + 3] for f in first]) if len(first) else order
    n = len(take)
    return _frame(
        {
            **_common(n, MONTHS[k], "nominations", 2),
            "person_id": org.pid[p[take]],
            "period": _obj(f"{YEAR}-H{1 if k < 6 else 2}", n),
            "reason": _obj("工作业绩突出", n),
            "approved_by": _obj("党组会议", n),
        }
    )


def _summed(parts: list[pd.DataFrame], key: list[str]) -> pd.DataFrame:
    """One month's counts (as the load keeps them) from its extract's chunks: a judge's cases or
    a round's ratings may span two."""
    both = pd.concat(parts, ignore_index=True)
    return both.groupby(key, as_index=False).sum().assign(scheme_id=SCHEME_ID)


def case_tables(
    size: int, kind: str, month: str, scheme: Any
) -> Iterator[tuple[str, pd.DataFrame]]:
    """(table name, frame) of everything a case loads: a month case what score_months reads for
    `month`, a year case the whole year."""
    from scoring.measures import attendance_counts, look_back_counts  # as the load keeps them
    from scoring.survey import delivered_round_counts

    org = build_org(size)
    k_last = MONTHS.index(month) if kind == "month" else 11
    rng = np.random.default_rng([SEED, size, k_last])
    universe = case_universe(org, k_last, rng)
    hashes = None
    for k in range(k_last + 1):
        scored = kind == "year" or k == k_last
        yield "roster", roster_frame(org, k)
        if scored:
            for frame in attendance_frames(org, k, rng):
                yield "attendance", frame
                yield "attendance_month", attendance_counts(frame).assign(scheme_id=SCHEME_ID)
        counts = []
        for frame in case_frames(org, universe, k):
            yield "case_snapshot", frame
            counts.append(look_back_counts(frame))
        yield "case_month", _summed(counts, ["month", "person_id"])
        if scored and k % 3 == 2:
            hashes = rater_hashes(org) if hashes is None else hashes
            rounds = []
            for frame in survey_frames(org, k, rng, hashes):
                yield "survey_response", frame
                rounds.append(delivered_round_counts(frame))
            yield "survey_round", _summed(rounds, ["month", "survey_id", "period"])
        yield "adjustment", adjustment_frame(org, k, rng, scheme)
        if scored and k in (5, 11):
            yield "nomination", nomination_frame(org, k, rng)


# --- the two children: load, then score -----------------------------------------------------------
def setup_case(size: int, kind: str, month: str, url: str) -> dict[str, Any]:
    """A fresh schema filled with the case's rows; seconds generating and inserting."""
    from sqlalchemy.exc import DBAPIError

    from etl.bulk import bulk_insert
    from etl.warehouse import create_schema, engine_for, md
    from scoring.scheme import load_scheme

    scheme = load_scheme(SCHEME)
    start = time.perf_counter()
    engine = engine_for(url)
    counts: Counter[str] = Counter()
    gen = ins = 0.0
    try:
        create_schema(engine)
        frames = case_tables(size, kind, month, scheme)
        while True:
            t0 = time.perf_counter()
            item = next(frames, None)
            gen += time.perf_counter() - t0
            if item is None:
                break
            name, frame = item
            t0 = time.perf_counter()
            with engine.begin() as conn:
                counts[name] += bulk_insert(conn, md.tables[name], frame)
            ins += time.perf_counter() - t0
            del frame, item
        t0 = time.perf_counter()
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE")
                # the load's dirty pages written now, not by a checkpoint in the middle of the
                # scoring (as SQLite's write-ahead log is folded into the file below); a role
                # without the right to (not superuser, not pg_checkpoint) leaves it to the server
                with contextlib.suppress(DBAPIError):
                    conn.exec_driver_sql("CHECKPOINT")
        else:
            with engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        settle = time.perf_counter() - t0
    finally:
        engine.dispose()
    return {
        "counts": dict(counts),
        "generate_s": gen,
        "insert_s": ins,
        "settle_s": settle,
        "total_s": time.perf_counter() - start,
        "peak_mib": _peak_mib(),
    }


class _Meter:
    """Wall seconds of wrapped functions by label, exclusive: a metered call inside another is
    its own label's time and not the outer one's (the measures computed inside _unit_inputs
    are compute, the rest of it is waiting for reads; a Writer.replace inside _replace is write
    time once)."""

    def __init__(self) -> None:
        self.t: dict[str, float] = defaultdict(float)
        self.inner: list[float] = []  # per open call: seconds spent in metered calls inside it

    def wrap(self, fn: Callable[..., Any], label: str) -> Callable[..., Any]:
        def metered(*args: Any, **kwargs: Any) -> Any:
            if threading.current_thread() is not threading.main_thread():
                return fn(*args, **kwargs)  # reads ahead, beside the clock's thread: not a part
            self.inner.append(0.0)
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.perf_counter() - start
                self.t[label] += spent - self.inner.pop()
                if self.inner:
                    self.inner[-1] += spent

        return metered

    def take(self) -> dict[str, float]:
        out, self.t = dict(self.t), defaultdict(float)
        return out


# what etl.score calls, metered by patching its module globals (the code is not edited); the
# reads run in parallel threads inside the *_inputs functions, so their wall time is metered
READ = ("_unit_inputs", "_survey_inputs", "_arrived", "_period_inputs")
WRITE = ("_replace",)
COMPUTE = (
    "presence",
    "attendance_measures_from_counts",
    "case_measures",
    "survey_scores",
    "unit_month",
    "month_totals",
    "close_period",
)


def score_case(kind: str, month: str, url: str, profile: str | None) -> dict[str, Any]:
    """Score the case's month, or the year's months and periods; seconds per part, split into
    read (queries to frames), compute (scoring/), write (deletes and bulk inserts) and the rest
    (glue, small queries, commit)."""
    import etl.score as score
    from etl.bulk import Writer
    from etl.warehouse import engine_for
    from scoring.scheme import load_scheme

    if url.startswith("postgresql"):
        import psycopg  # noqa: F401
    load1 = os.getloadavg()[0]
    scheme = load_scheme(SCHEME)
    engine = engine_for(url)
    with engine.connect() as conn:  # the pool's connection is opened outside the clock
        conn.exec_driver_sql("select 1")
    meter = _Meter()
    for name in READ:
        setattr(score, name, meter.wrap(getattr(score, name), "read"))
    for name in WRITE:
        setattr(score, name, meter.wrap(getattr(score, name), "write"))
    Writer.replace = meter.wrap(Writer.replace, "write")
    Writer.finish = meter.wrap(Writer.finish, "write")
    for name in COMPUTE:
        setattr(score, name, meter.wrap(getattr(score, name), name))
    base = _peak_mib()
    cpu = time.process_time()
    parts: list[dict[str, Any]] = []

    def run(name: str, fn: Callable[[], int], rerun: bool = False) -> None:
        t: dict[str, float] = {}
        cpu0 = time.process_time()
        prof = (
            Path(profile) / f"{kind}-{SHORT[engine.dialect.name]}-{name}.prof" if profile else None
        )
        meter.take()
        people, error = 0, None
        try:
            with _timed("wall", t, prof):
                people = fn()
        except Exception as exc:  # reported with the part; the later parts still run
            lines = [x.strip() for x in str(exc).strip().splitlines() if x.strip()]
            error = f"{type(exc).__name__}: {' | '.join(lines[:2])}"
        split = meter.take()
        parts.append(
            {
                "part": name,
                "seconds": t["wall"],
                "split": split,
                "people": people,
                "error": error,
                "cpu_s": time.process_time() - cpu0,
                "peak_mib": _peak_mib(),  # the high-water mark so far
                "rerun": rerun,
            }
        )

    try:
        if kind == "month":
            once = lambda: score.score_months(engine, scheme, month)["people"][month]  # noqa: E731
            run(month, once)
            # an operator's rerun of the same month: every mart row of it replaced in place (not
            # at a province's size, where the first scoring's figures must not be lost to it)
            if parts[0]["people"] <= RERUN_MAX and not parts[0]["error"]:
                run(f"{month} again", once, rerun=True)
        else:
            for m in MONTHS:
                run(m, lambda m=m: score.score_months(engine, scheme, m)["people"][m])
            for p in PERIODS:
                run(p, lambda p=p: score.close_period_in_warehouse(engine, scheme, p)["people"])
    finally:
        engine.dispose()
    return {
        "parts": parts,
        "cpu_s": time.process_time() - cpu,
        "base_mib": base,
        "peak_mib": _peak_mib(),
        "load1": load1,
    }


# --- the driver -----------------------------------------------------------------------------------
@dataclass
class Case:
    kind: str  # month | year
    size: int
    db: str

    @property
    def title(self) -> str:
        return f"{self.kind} {self.size:,} {self.db}"


def run_case(case: Case, month: str, root: Path, pg_url: str | None, profile: str | None) -> dict:
    """Setup child, then scoring child, on a fresh warehouse that is removed afterwards."""
    tag = f"kaohe_bench_score_{os.getpid()}_{case.kind}_{case.size}"
    out: dict[str, Any] = {}
    try:
        if case.db == "sqlite":
            work = Path(tempfile.mkdtemp(prefix=f"{case.kind}-{case.size}-", dir=root))
            url = f"sqlite:///{work / 'warehouse.db'}"
            try:
                _log(f"{case.title}: loading ...")
                out["setup"] = _in_child(setup_case, case.size, case.kind, month, url)
                _log(f"{case.title}: scoring ...")
                out["score"] = _in_child(score_case, case.kind, month, url, profile)
            finally:
                shutil.rmtree(work, ignore_errors=True)
        else:
            assert pg_url is not None
            with pg_database(pg_url, tag) as url:
                _log(f"{case.title}: loading ...")
                out["setup"] = _in_child(setup_case, case.size, case.kind, month, url)
                _log(f"{case.title}: scoring ...")
                out["score"] = _in_child(score_case, case.kind, month, url, profile)
    except Exception as exc:  # an out-of-memory kill or a failure: report it, keep going
        out["error"] = f"{type(exc).__name__}: {exc}".strip()
    return out


def _total(r: dict[str, Any]) -> float:
    """Seconds of a case's first scoring (its parts but the rerun)."""
    return sum(p["seconds"] for p in r["score"]["parts"] if not p.get("rerun"))


def _failure(r: dict[str, Any] | None) -> str | None:
    """Why a case has no complete figures (None when it has them)."""
    if r is None:
        return "not run"
    if "score" not in r:
        return f"failed: {r.get('error', '?')}"
    bad = [p for p in r["score"]["parts"] if p["error"] and not p.get("rerun")]
    return f"failed in {bad[0]['part']}: {bad[0]['error']}" if bad else None


def print_setup(case: Case, r: dict[str, Any]) -> None:
    s = r.get("setup")
    if not s:
        return
    rows = sum(s["counts"].values())
    counts = ", ".join(f"{k} {v:,}" for k, v in s["counts"].items())
    slow = f"  (slow setup: {s['total_s']:.0f} s)" if s["total_s"] > SLOW_SETUP_S else ""
    print(
        f"  setup {case.title}: {rows:,} rows in {s['total_s']:.1f} s (generate "
        f"{s['generate_s']:.1f} + insert {s['insert_s']:.1f} + "
        f"{'vacuum analyze, checkpoint' if case.db == 'postgresql' else 'checkpoint'} "
        f"{s['settle_s']:.1f}), "
        f"peak {s['peak_mib']:,.0f} MiB{slow}\n    {counts}"
    )


def _split_cols(part: dict[str, Any]) -> tuple[float, float, float, float]:
    split = part["split"]
    read, write = split.get("read", 0.0), split.get("write", 0.0)
    compute = sum(split.get(c, 0.0) for c in COMPUTE)
    return read, compute, write, part["seconds"] - read - compute - write


def _compute_line(label: str, split: dict[str, float]) -> str:
    inner = ", ".join(f"{c} {split[c]:.2f}" for c in COMPUTE if c in split)
    return f"  compute {label}: {inner}"


def print_month_cases(results: list[tuple[Case, dict[str, Any]]]) -> None:
    print(
        f"\n  {'people':>10}  {'db':<11}{'total s':>9}{'read s':>8}{'compute s':>11}{'write s':>9}"
        f"{'other s':>9}{'people/s':>10}{'cpu s':>7}{'MiB after imports':>19}{'peak MiB':>10}"
        f"{'load avg':>10}{'rerun s':>9}{'(write)':>8}"
    )
    for case, r in results:
        if "score" not in r:
            print(f"  {case.size:>10,}  {case.db:<11}failed: {r.get('error', '?')}")
            continue
        sc = r["score"]
        part, *again = sc["parts"]
        read, compute, write, other = _split_cols(part)
        rerun = ""
        if again and not again[0]["error"]:
            rerun = f"{again[0]['seconds']:>9.2f}{_split_cols(again[0])[2]:>8.2f}"
        print(
            f"  {case.size:>10,}  {case.db:<11}{part['seconds']:>9.2f}{read:>8.2f}{compute:>11.2f}"
            f"{write:>9.2f}{other:>9.2f}{_rate(part['people'], part['seconds']):>10}"
            f"{part['cpu_s']:>7.1f}{sc['base_mib']:>19.0f}{part['peak_mib']:>10.0f}"
            f"{sc['load1']:>10.1f}{rerun}"
            + "".join(f"  FAILED: {p['part']}: {p['error']}" for p in sc["parts"] if p["error"])
        )
    for case, r in results:
        if "score" in r:
            print(_compute_line(f"{case.size:,} {case.db}", r["score"]["parts"][0]["split"]))


def print_year(size: int, results: list[tuple[Case, dict[str, Any]]]) -> None:
    ok = [(c, r) for c, r in results if "score" in r]
    for case, r in results:
        if "score" not in r:
            print(f"  {case.db}: failed: {r.get('error', '?')}")
    if not ok:
        return
    head = "".join(f"{SHORT[c.db] + ' s':>9}{'(read':>7}{'comp':>6}{'write)':>7}" for c, _ in ok)
    print(f"\n  {'part':<10}{'people':>10}{head}")
    for i, name in enumerate(p["part"] for p in ok[0][1]["score"]["parts"]):
        cells, people = "", 0
        for _, r in ok:
            p = r["score"]["parts"][i]
            people = people or p["people"]
            if p["error"]:
                cells += f"{p['seconds']:>9.2f}{'FAILED':>20}"
                continue
            read, compute, write, _ = _split_cols(p)
            cells += f"{p['seconds']:>9.2f}{read:>7.1f}{compute:>6.1f}{write:>7.1f}"
        print(f"  {name:<10}{people:>10,}{cells}")
    for case, r in ok:
        ps = r["score"]["parts"]
        months = sum(p["seconds"] for p in ps if p["part"] in MONTHS)
        closes = sum(p["seconds"] for p in ps if p["part"] not in MONTHS)
        person_months = sum(p["people"] for p in ps if p["part"] in MONTHS)
        sc = r["score"]
        print(
            f"  {case.db:<11} total {months + closes:7.2f} s (12 months {months:.2f} s, "
            f"7 closes {closes:.2f} s), {_rate(person_months, months)} person-months/s, "
            f"{_rate(size, months + closes)} people/s; cpu {sc['cpu_s']:.1f} s; "
            f"MiB after imports {sc['base_mib']:.0f}, peak {sc['peak_mib']:,.0f} MiB; "
            f"load avg {sc['load1']:.1f}"
        )
        for p in ps:
            if p["error"]:
                print(
                    f"  {case.db:<11} {p['part']} FAILED after {p['seconds']:.2f} s: {p['error']}"
                )
        split: dict[str, float] = defaultdict(float)
        for p in ps:
            for k, v in p["split"].items():
                split[k] += v
        print(_compute_line(f"{case.db}, whole year", split))


def print_targets(
    month: str, done: dict[tuple[str, int, str], dict[str, Any]], dbs: list[str]
) -> None:
    print(f"\ntargets (printed, not asserted), one month ({month}):")
    size, limit = TARGET_MONTH
    fsize, flimit, fmem = TARGET_FULL
    for db in dbs:
        r = done.get(("month", size, db))
        why = _failure(r)
        if why or r is None:
            print(f"  {db:<11} {size:>9,} people  < {limit:.0f} s: {why}")
            continue
        t = _total(r)
        print(
            f"  {db:<11} {size:>9,} people  {t:7.2f} s  < {limit:.0f} s        "
            f"{'PASS' if t < limit else 'MISS'}"
        )
    for db in dbs:
        r = done.get(("month", fsize, db))
        why = _failure(r)
        if why or r is None:
            if r is None:
                why = "not run (BENCH_FULL=1 adds it)"
            print(
                f"  {db:<11} {fsize:>9,} people  < {flimit:.0f} s, peak < {fmem // 1024} GiB: {why}"
            )
            continue
        t, peak = _total(r), r["score"]["parts"][0]["peak_mib"]
        print(
            f"  {db:<11} {fsize:>9,} people  {t:7.2f} s  < {flimit:.0f} s        "
            f"{'PASS' if t < flimit else 'MISS'}"
        )
        print(
            f"  {db:<11} {fsize:>9,} people  {peak:7.0f} MiB < {fmem:.0f} MiB   "
            f"{'PASS' if peak < fmem else 'MISS'}"
        )


def _header(pg_url: str, pg: tuple[str | None, str | None], dbs: list[str], month: str) -> None:
    print(
        f"kaohe scoring benchmark at {_revision()}: scheme {SCHEME} ({SCHEME_ID}), seed {SEED}, "
        f"month {month}, year {YEAR}; Python {platform.python_version()}, pandas "
        f"{pd.__version__}, SQLite {sqlite3.sqlite_version}, {os.cpu_count()} cores"
    )
    print_pg_line(pg_url, pg, dbs)
    print(
        "synthetic warehouse rows are loaded in a separate process before the clock; times are wall"
        " seconds of score_months / close_period_in_warehouse;\nread = waiting for queries to"
        " frames (in parallel; a month's survey ratings are read beside the people's part),"
        " compute = scoring/ functions, write = waiting for mart deletes and bulk"
        " inserts (they run beside the computing), other = the rest (commit, glue);\n"
        "peak MiB is the scoring process's resident high-water mark (imports included)"
    )


def _sizes(text: str | None, default: list[int]) -> list[int]:
    if text is None:
        return default
    return [int(s.replace("_", "")) for s in text.split(",") if s.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    full = os.environ.get("BENCH_FULL", "") not in ("", "0")
    sizes = DEFAULT_SIZES + (FULL_SIZES if full else [])
    years = DEFAULT_YEAR_SIZES + (FULL_YEAR_SIZES if full else [])
    ap = argparse.ArgumentParser(prog="python -m bench.scoring", description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", help=f"people per month case (default {','.join(map(str, sizes))})")
    ap.add_argument(
        "--year-sizes", help=f"people per year case, '' for none (default {years[0]:,}…)"
    )
    ap.add_argument("--db", default="sqlite,postgresql", help="sqlite and/or postgresql")
    ap.add_argument("--month", default=MONTH, help="the month case's month, YYYY-MM of 2026")
    ap.add_argument("--profile", metavar="DIR", help="dump cProfile stats per part (slower)")
    args = ap.parse_args(argv)
    args.sizes = _sizes(args.sizes, sizes)
    args.year_sizes = _sizes(args.year_sizes, years)
    args.db = [d.strip() for d in args.db.split(",") if d.strip()]
    unknown = set(args.db) - {"sqlite", "postgresql"}
    if unknown:
        ap.error(f"--db: unknown {', '.join(sorted(unknown))} (sqlite, postgresql)")
    if args.month not in MONTHS:
        ap.error(f"--month: one of {MONTHS[0]} … {MONTHS[-1]}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pg_url = os.environ.get("KAOHE_BENCH_PG_URL") or DEFAULT_PG
    pg = pg_version(pg_url) if "postgresql" in args.db else (None, "not asked for")
    dbs = [d for d in args.db if d != "postgresql" or pg[0]]
    _header(pg_url, pg, args.db, args.month)
    if args.profile:
        print(f"profiling every part into {args.profile}: times are inflated by cProfile")
    root = Path(tempfile.mkdtemp(prefix="kaohe-bench-scoring-"))
    done: dict[tuple[str, int, str], dict[str, Any]] = {}
    start = time.perf_counter()
    try:

        def cases(kind: str, size: int) -> list[tuple[Case, dict[str, Any]]]:
            results = []
            for db in dbs:
                case = Case(kind, size, db)
                r = run_case(case, args.month, root, pg_url, args.profile)
                print_setup(case, r)
                results.append((case, r))
                done[(kind, size, db)] = r
            return results

        for size in args.sizes:
            print(f"\n== one month ({args.month}), {size:,} people ==")
            print_month_cases(cases("month", size))
        for size in args.year_sizes:
            print(
                f"\n== one year ({YEAR}: 12 months, then {', '.join(PERIODS)}), {size:,} people =="
            )
            print_year(size, cases("year", size))
        print_targets(args.month, done, dbs)
        print(f"\nbenchmark wall time {time.perf_counter() - start:.0f} s")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
