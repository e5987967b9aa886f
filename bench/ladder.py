"""Scale ladder: the monthly intake and period close, land -> scores, by size, on both databases.

    python -m bench.ladder [--sizes 2000,20000,200000] [--db sqlite,postgresql]
                           [--only month|year] [--detail] [--profile DIR]

Rungs: 2,000, 20,000 and 200,000 people for one month, 2,000 and 20,000 people for one year;
BENCH_FULL=1 adds the 1,000,000-people month and the 200,000-people year. `--sizes` picks rungs
(each runs the kinds the ladder gives it; a size off the ladder runs both); `--only` runs just the
month or just the year cases of the sizes named (`--only year --sizes 200000` runs that year).

Every stage calls the function its DAG task calls (etl.pipeline): land_step, validate_step,
load_step, score_step, then close_step for each period score_step names, in the order
kaohe_period_close closes them. "One month" is a quarter-end month (2026-03, with its survey
round) taken into an empty warehouse; "one year" is 2026-01 ... 2026-12 in order, each month
closing the periods it ends, followed by two reruns with late data: December (one attendance
day in one file corrected, `reland: true`), then June the same way; each prints what score_step
rescored and which periods were closed again.

Each (size, database, kind) case runs in its own spawned process with its own KAOHE_HOME, on a
fresh SQLite file or a fresh PostgreSQL database (dropped afterwards). Inboxes come from
etl.generate (seed 1, demo schemes), generated in a child process before any clock starts and
cached for the run's other cases of the same size (set KAOHE_BENCH_CACHE to keep them across
runs; they are keyed by the generator's source). Each case reads its inbox through a private
folder of symlinks, so the late-data edits stay its own. Imports are made before the clocks.

Per stage: rows (source rows for land, validate and load; mart rows written for score; period
rows written for close), wall seconds, rows per second, the case process's CPU seconds, and peak
resident memory: the kernel's exact high-water mark of the case process (VmHWM, reset at each
stage by writing 5 to /proc/self/clear_refs) or, if larger, the sum of VmRSS over the case process
and any processes it starts, sampled every 50 ms. The database server's memory is not included.

The floor of a month: pandas reading the same files (read_csv with the right encoding,
read_excel with calamine) plus bulk_insert of every row the load writes, in one transaction on a
fresh schema (COPY on PostgreSQL via psycopg 3, one executemany on SQLite): bench.ingest's floor.
Figures are printed, never asserted: the command exits 0 whether a target is met or not.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from bench.ingest import (
    BASE_ENV,
    DEFAULT_PG,
    SEED,
    TARGET_RATIO,
    TARGET_SECONDS,
    TARGET_SIZE,
    _child_env,
    _encoding,
    _in_child,
    _log,
    _pandas_read,
    _rate,
    _revision,
    _timed,
    _warm_imports,
    floor_tables,
    floor_write,
    pg_database,
    pg_version,
    print_pg_line,
)
from bench.scoring import TARGET_FULL, TARGET_MONTH

YEAR = 2026
MONTH = f"{YEAR}-03"  # a quarter's end: the month's extract carries a survey round
MONTHS = [f"{YEAR}-{m:02d}" for m in range(1, 13)]
LATE_MONTHS = (f"{YEAR}-12", f"{YEAR}-06")  # the reruns with late data, in this order
MONTH_SIZES, FULL_MONTH_SIZES = [2_000, 20_000, 200_000], [1_000_000]
YEAR_SIZES, FULL_YEAR_SIZES = [2_000, 20_000], [200_000]
STAGES = ("land", "validate", "load", "score", "close")
INTAKE = ("land", "validate", "load", "score")  # land -> scores in the warehouse
# targets of the issue (printed, never asserted)
T_MONTH = (20_000, "postgresql", 40.0, 3.0)  # people, database, seconds, times the floor
T_BIG = (200_000, 300.0, 6 * 1024)  # people, seconds, peak MiB
T_RERUN = 25.0  # December's rerun, percent of the full year
# earlier issues' targets, formerly printed by bench.ingest and bench.scoring (still runnable alone)
T_INGEST = (TARGET_SIZE, TARGET_SECONDS, TARGET_RATIO)  # land+validate+load: people, s, x floor
T_SCORE = [(*TARGET_MONTH, None), TARGET_FULL]  # score_step: people, seconds, peak MiB
SAMPLE_S = 0.05
GENERATOR = ("etl/generate.py", "etl/sample_profile.py")


# --- memory ---------------------------------------------------------------------------------------
def _status_kib(field: str, pid: str = "self") -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            m = re.search(rf"^{field}:\s+(\d+)", f.read(), re.M)
    except OSError:  # a process that has just ended
        return 0
    return int(m.group(1)) if m else 0


def _children(pid: str) -> list[str]:
    out: list[str] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as f:
                out += f.read().split()
    return out


def _tree_rss_kib() -> int:
    """VmRSS of this process plus every process below it."""
    total, todo = _status_kib("VmRSS"), _children(str(os.getpid()))
    while todo:
        pid = todo.pop()
        total += _status_kib("VmRSS", pid)
        todo += _children(pid)
    return total


def _reset_hwm() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux 4.0+); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


class Peak:
    """Peak resident memory over a block: max(exact VmHWM of this process, reset at entry; the
    sampled sum of VmRSS over this process and its descendants)."""

    def __init__(self) -> None:
        self.mib = 0.0
        self.exact = False
        self._kib = 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self._kib = max(self._kib, _tree_rss_kib())

    def __enter__(self) -> Peak:
        self.exact = _reset_hwm()
        self._kib = _tree_rss_kib()
        self._thread = threading.Thread(target=self._sample, name="bench-rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        hwm = _status_kib("VmHWM") if self.exact else 0
        self.mib = max(hwm, self._kib, _tree_rss_kib()) / 1024


# --- inboxes --------------------------------------------------------------------------------------
def _generator_key() -> str:
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for name in GENERATOR:
        digest.update((root / name).read_bytes())
    return digest.hexdigest()[:10]


def generate_inbox(size: int, start: str, months: int, into: str) -> dict[str, Any]:
    """Write the inbox into `into` (a child process: generating 200,000 people takes GiBs)."""
    from etl.generate import generate

    t = time.perf_counter()
    counts = generate(Path(into), size, start, months, SEED)
    return {"seconds": time.perf_counter() - t, "counts": counts}


def ensure_inbox(cache: Path, size: int, kind: str) -> tuple[Path, dict[str, Any], bool]:
    """The cached inbox of a size and kind, generated first if missing: (folder, its record,
    whether it came from the cache)."""
    start, months = (MONTH, 1) if kind == "month" else (MONTHS[0], 12)
    folder = cache / f"inbox-{size}-{start}-{months}-seed{SEED}-{_generator_key()}"
    done = folder / "generated.json"
    if done.exists():
        return folder, json.loads(done.read_text()), True
    _log(f"generating {size:,} people, {months} month(s) from {start} ...")
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    record = _in_child(generate_inbox, size, start, months, str(tmp))
    (tmp / "generated.json").write_text(json.dumps(record))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder, record, False


def _private_inbox(inbox: Path, into: Path) -> Path:
    """A folder of symlinks to the cached files: a case may replace any of them."""
    for month in inbox.iterdir():
        if month.is_dir():
            (into / month.name).mkdir(parents=True)
            for f in month.iterdir():
                (into / month.name / f.name).symlink_to(f)
    return into


def late_data(folder: Path) -> str:
    """Correct one attendance day of one file in place (present -> late), as a unit sending its
    extract again would; return what changed."""
    for path in sorted(folder.glob("attendance*.csv")):
        data = path.read_bytes()
        enc = _encoding(data)
        text = data.decode(enc)
        for old, new in ((",present,", ",late,"), (",正常,", ",迟到,")):
            at = text.find(old)
            if at >= 0:
                line = text.count("\n", 0, at) + 1
                text = text[:at] + new + text[at + len(old) :]
                path.unlink()  # the symlink, not the cached file
                path.write_bytes(text.encode(enc))
                return f"{path.name} line {line}: {old.strip(',')} -> {new.strip(',')}"
    raise RuntimeError(f"{folder}: no attendance file with a day to correct")


# --- one case, in its own process -----------------------------------------------------------------
def _stage(
    into: dict[str, dict], name: str, fn: Callable[[], Any], profile: Path | None = None
) -> Any:
    """Run one stage: wall and CPU seconds and peak memory into `into[name]` (rows: the caller)."""
    t: dict[str, float] = {}
    cpu = time.process_time()
    with Peak() as peak, _timed("wall", t, profile):
        out = fn()
    into[name] = {
        "rows": 0,
        "s": t["wall"],
        "cpu": time.process_time() - cpu,
        "peak": peak.mib,
        "exact": peak.exact,
    }
    return out


def _mart_rows(url: str, scheme_id: str, months: list[str]) -> int:
    """Rows the score marts hold for `months` (counted after the stage, off the clock)."""
    from etl.warehouse import (
        engine_for,
        mart_adjustment,
        mart_component_score,
        mart_department_score,
        mart_indicator_score,
        mart_monthly_score,
        mart_survey_result,
    )

    marts = (
        mart_monthly_score,
        mart_indicator_score,
        mart_component_score,
        mart_adjustment,
        mart_department_score,
        mart_survey_result,
    )
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            return sum(
                conn.scalar(
                    sa.select(sa.func.count())
                    .select_from(t)
                    .where(t.c.scheme_id == scheme_id, t.c.month.in_(months))
                )
                or 0
                for t in marts
            )
    finally:
        engine.dispose()


def run_month(
    month: str,
    run_id: str,
    cfg: Any,
    reland: bool = False,
    keep: Path | None = None,
    profile: Path | None = None,
) -> dict[str, Any]:
    """One month through the DAG's steps, then the periods score_step names closed as
    kaohe_period_close closes them. With `keep`, the validated stage is kept there (hard links,
    off the clock) for the floor."""
    from etl.pipeline import (
        close_step,
        due_periods,
        land_step,
        load_step,
        score_step,
        validate_step,
    )

    st: dict[str, dict] = {}

    def prof(name: str) -> Path | None:
        return profile / f"{run_id}-{name}.prof" if profile else None

    manifest = _stage(
        st, "land", lambda: land_step(month, run_id, reland=reland, cfg=cfg), prof("land")
    )
    validation = _stage(
        st, "validate", lambda: validate_step(json.loads(json.dumps(manifest)), cfg), prof("val")
    )
    sources = validation["sources"]
    rows = sum(s["rows_in"] for s in sources.values() if s["status"] != "absent")
    if keep is not None:
        shutil.copytree(validation["staging"], keep, copy_function=os.link)
    loaded = _stage(st, "load", lambda: load_step(validation, cfg), prof("load"))
    scored = _stage(st, "score", lambda: score_step(loaded, cfg), prof("score"))
    months, periods = list(scored["months"]), list(scored["periods"])
    for name in ("land", "validate", "load"):
        st[name]["rows"] = rows
    st["score"]["rows"] = _mart_rows(cfg.warehouse_url, validation["scheme_id"], months)
    ref = loaded["scheme_ref"]
    events = [{"scheme": ref, "periods": periods}]
    order = [p for _, p in due_periods(None, ref, events)] if periods else []

    def close() -> int:
        n = 0
        for p in order:
            s = close_step(p, f"{run_id}-close-{p}", scheme_ref=ref, cfg=cfg)
            n += s["people"] + s.get("bonus_rows", 0) + s.get("nominations_refused", 0)
        return n

    st["close"] = {"rows": 0, "s": 0.0, "cpu": 0.0, "peak": 0.0, "exact": True}
    if order:
        st["close"]["rows"] = _stage(st, "close", close, prof("close"))
    return {
        "month": month,
        "stages": st,
        "rescored": months,
        "closed": order,
        "files": len(manifest["files"]),
        "loaded": loaded["loaded"],
        "quarantined": sum(s["rows_quarantined"] for s in sources.values()),
        "scheme_id": validation["scheme_id"],
    }


def _floor(inbox: Path, month: str, stage: Path, scheme_id: str, url: str) -> dict[str, float]:
    """pandas reading the month's files, then bulk_insert of the rows the load wrote."""
    read = 0.0
    for path in sorted((inbox / month).iterdir()):
        if path.suffix.lower() not in (".csv", ".xlsx"):
            continue
        data = path.read_bytes()  # the encoding is found off the clock, as an operator knows it
        t = time.perf_counter()
        _pandas_read(str(path), data)
        read += time.perf_counter() - t
    write = floor_write(url, floor_tables(stage, scheme_id, month))["total"]
    return {"read": read, "write": write, "total": read + write}


def run_case(
    kind: str,
    size: int,
    db: str,
    inbox: str,
    urls: tuple[str | None, str | None],
    profile: str | None,
) -> dict[str, Any]:
    """A month or a year in a fresh KAOHE_HOME and warehouse; never raises (a failure is kept
    with whatever was measured before it)."""
    home = Path(tempfile.mkdtemp(prefix=f"kaohe-ladder-{kind}-{size}-{db}-"))
    out: dict[str, Any] = {"months": [], "reruns": []}
    try:
        mine = _private_inbox(Path(inbox), home / "inbox")
        wh_url = urls[0] or f"sqlite:///{home / 'warehouse.db'}"
        _child_env(home, mine, wh_url)
        out["load1"] = os.getloadavg()[0]
        out["imports"] = _warm_imports() + _warm_more(db)
        out["base_mib"] = _status_kib("VmRSS") / 1024
        from etl.config import settings

        cfg = settings()
        prof = Path(profile) if profile else None
        if kind == "month":
            keep = home / "floor-stage"
            r = run_month(MONTH, f"ladder-{MONTH}", cfg, keep=keep, profile=prof)
            out["months"].append(r)
            floor_url = urls[1] or f"sqlite:///{home / 'floor.db'}"
            out["floor"] = _floor(mine, MONTH, keep, r["scheme_id"], floor_url)
            return out
        for m in MONTHS:
            out["months"].append(run_month(m, f"ladder-{m}", cfg, profile=prof))
        for m in LATE_MONTHS:
            change = late_data(mine / m)
            r = run_month(m, f"ladder-{m}-late", cfg, reland=True, profile=prof)
            out["reruns"].append({**r, "change": change})
    except Exception as exc:  # reported with the case; the ladder goes on
        lines = [x.strip() for x in str(exc).strip().splitlines() if x.strip()]
        out["error"] = f"{type(exc).__name__}: {' | '.join(lines[:3])}"
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return out


def _warm_more(db: str) -> float:
    """Import what the steps import lazily beyond GX: the pipeline, scoring, the ADBC driver."""
    t = time.perf_counter()
    import etl.pipeline  # noqa: F401
    import scoring.periods  # noqa: F401

    if db == "postgresql":
        import adbc_driver_postgresql.dbapi  # noqa: F401
        import psycopg  # noqa: F401
    else:
        import adbc_driver_sqlite.dbapi  # noqa: F401
    return time.perf_counter() - t


# --- the driver -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    kind: str  # month | year
    size: int
    db: str


def _run(case: Case, inbox: Path, pg_url: str | None, profile: str | None) -> dict[str, Any]:
    args = (case.kind, case.size, case.db, str(inbox))
    try:
        if case.db == "sqlite":
            return _in_child(run_case, *args, (None, None), profile)
        assert pg_url is not None
        tag = f"kaohe_ladder_{os.getpid()}_{case.kind}_{case.size}"
        with pg_database(pg_url, tag) as wh:
            if case.kind == "year":
                return _in_child(run_case, *args, (wh, None), profile)
            with pg_database(pg_url, f"{tag}_floor") as floor:
                return _in_child(run_case, *args, (wh, floor), profile)
    except Exception as exc:  # the child died (out of memory?) or the database went away
        return {"months": [], "reruns": [], "error": f"{type(exc).__name__}: {exc}".strip()}


def _sum(results: list[dict[str, Any]], name: str) -> dict[str, float]:
    st = [r["stages"][name] for r in results]
    return {
        "rows": sum(s["rows"] for s in st),
        "s": sum(s["s"] for s in st),
        "cpu": sum(s["cpu"] for s in st),
        "peak": max((s["peak"] for s in st), default=0.0),
    }


def _seconds(results: list[dict[str, Any]], stages: tuple[str, ...] = STAGES) -> float:
    return sum(r["stages"][s]["s"] for r in results for s in stages)


def _peak(results: list[dict[str, Any]], stages: tuple[str, ...] = STAGES) -> float:
    return max((r["stages"][s]["peak"] for r in results for s in stages), default=0.0)


def _source_rows(results: list[dict[str, Any]]) -> int:
    return sum(r["stages"]["land"]["rows"] for r in results)


def _row(db: str, name: str, rows: int, s: float, cpu: float | None, peak: float, note: str) -> str:
    cpu_s = f"{cpu:>8.1f}" if cpu is not None else f"{'':>8}"
    return f"  {db:<11}{name:<12}{rows:>12,}{s:>10.2f}{_rate(rows, s):>12}{cpu_s}{peak:>10,.0f}" + (
        f"   {note}" if note else ""
    )


HEAD = (
    f"  {'db':<11}{'stage':<12}{'rows':>12}{'wall s':>10}{'rows/s':>12}{'cpu s':>8}{'peak MiB':>10}"
)


def _short(periods: list[str]) -> str:
    return ", ".join(periods) if periods else "none"


def _months_text(months: list[str]) -> str:
    if len(months) > 2:
        return f"{months[0]} … {months[-1]} ({len(months)} months)"
    return ", ".join(months) or "none"


def print_case(case: Case, r: dict[str, Any], detail: bool = False) -> None:
    res = r["months"]
    db = case.db
    if res:
        notes = {
            "land": "source rows",
            "validate": f"{sum(x['quarantined'] for x in res):,} quarantined",
            "load": "",
            "score": "mart rows written, "
            + (_months_text(res[0]["rescored"]) if case.kind == "month" else "12 months"),
            "close": "period rows written, "
            + _short(sorted({p for x in res for p in x["closed"]}, key=_period_key)),
        }
        for name in STAGES:
            s = _sum(res, name)
            print(_row(db, name, int(s["rows"]), s["s"], s["cpu"], s["peak"], notes[name]))
        rows = _source_rows(res)
        intake = _seconds(res, INTAKE)
        if case.kind == "month" and "floor" in r:
            f = r["floor"]
            note = (
                f"{intake / f['total']:.2f} × the floor ({f['total']:.2f} s: pandas read "
                f"{f['read']:.2f} + bulk_insert {f['write']:.2f})"
            )
            print(_row(db, "land→score", rows, intake, None, _peak(res, INTAKE), note))
        total = _seconds(res)
        cpu = sum(r2["stages"][s]["cpu"] for r2 in res for s in STAGES)
        print(_row(db, "total", rows, total, cpu, _peak(res), "source rows per second"))
        if case.kind == "year":
            per = "  ".join(f"{x['month'][5:]} {_seconds([x]):.1f}" for x in res)
            print(f"  {db:<11}month by month, wall s (closes included): {per}")
            if detail:
                for x in res:
                    parts = ", ".join(f"{s} {x['stages'][s]['s']:.2f}" for s in STAGES)
                    print(f"  {'':<11}  {x['month']}: {parts}; peak {_peak([x]):,.0f} MiB")
            for x in r["reruns"]:
                print_rerun(db, x, res, total)
    exact = all(s.get("exact", True) for x in res + r["reruns"] for s in x["stages"].values())
    if "imports" in r:
        print(
            f"  {db:<11}imports {r['imports']:.1f} s before the clocks; {r['base_mib']:,.0f} MiB "
            f"after them; load avg {r['load1']:.1f} at the start"
            + ("" if exact else "; peaks sampled only (no /proc/self/clear_refs)")
        )
    if "error" in r:
        print(f"  {db:<11}FAILED: {r['error']}")


def _period_key(p: str) -> tuple:
    from scoring.timeline import parse_period

    order = {"month": 0, "quarter": 1, "half": 2, "year": 3}
    return (p[:4], order[parse_period(p)[0]], p)


def expected_rerun(month: str, year: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """The project's rule: the month and every later scored month of its year; every closed
    period containing one of them."""
    from scoring.timeline import months_of

    scored = sorted({m for x in year for m in x["rescored"]})
    months = [m for m in scored if m >= month and m[:4] == month[:4]]
    closed = {p for x in year for p in x["closed"]}
    periods = sorted((p for p in closed if set(months_of(p)) & set(months)), key=_period_key)
    return months, periods


def rerun_verdict(x: dict[str, Any], year: list[dict[str, Any]]) -> tuple[bool, str]:
    months, periods = expected_rerun(x["month"], year)
    got_m, got_p = x["rescored"], sorted(x["closed"], key=_period_key)
    if got_m == months and got_p == periods:
        return True, "as the rule says"
    diff = []
    for what, got, want in (("months", got_m, months), ("periods", got_p, periods)):
        extra, missing = sorted(set(got) - set(want)), sorted(set(want) - set(got))
        if extra:
            diff.append(f"{what} it need not have: {', '.join(extra)}")
        if missing:
            diff.append(f"{what} it should have: {', '.join(missing)}")
    return False, "differs from the rule: " + "; ".join(diff)


def print_rerun(db: str, x: dict[str, Any], year: list[dict[str, Any]], full: float) -> None:
    total = _seconds([x])
    parts = ", ".join(f"{s} {x['stages'][s]['s']:.2f}" for s in STAGES)
    _, verdict = rerun_verdict(x, year)
    print(
        f"  {db:<11}rerun {x['month']} (late data, reland: {x['change']}): {total:.2f} s = "
        f"{100 * total / full:.1f} % of the full year ({full:.2f} s); {parts}; peak "
        f"{_peak([x]):,.0f} MiB"
    )
    print(
        f"  {'':<11}  rescored {_months_text(x['rescored'])}; closed again "
        f"{_short(sorted(x['closed'], key=_period_key))}: {verdict}"
    )


def print_group(kind: str, size: int, record: dict[str, Any], cached: bool) -> None:
    counts = record["counts"]
    rows = sum(sum(c.values()) for c in counts.values())
    what = f"one month ({MONTH})" if kind == "month" else f"one year ({MONTHS[0]} … {MONTHS[-1]})"
    origin = "from the cache" if cached else f"generated in {record['seconds']:.1f} s"
    print(f"\n== {size:,} people, {what}: {rows:,} source rows; inbox {origin} ==")
    if kind == "month":
        c = counts[MONTH]
        print("  " + ", ".join(f"{k} {v:,}" for k, v in c.items()))
    print(HEAD)


# --- targets --------------------------------------------------------------------------------------
def _met(ok: bool) -> str:
    return "met" if ok else "not met"


def print_targets(done: dict[Case, dict[str, Any]], dbs: list[str], full: bool) -> None:
    print("\ntargets (printed, not asserted):")
    size, tdb, limit, ratio = T_MONTH
    for db in [tdb, *(d for d in dbs if d != tdb)]:
        r = done.get(Case("month", size, db))
        label = f"{size:,} people, one month, land → scores, {db}"
        label += "" if db == tdb else " (target set on PostgreSQL; for comparison)"
        if not r or not r["months"] or "floor" not in r:
            print(f"  {label}: {_why(r, db, dbs)}")
            continue
        res = r["months"]
        t = _seconds(res, INTAKE)
        x = t / r["floor"]["total"]
        withclose = _seconds(res)
        print(
            f"  {label}: {t:.1f} s (< {limit:.0f} s) {_met(t < limit)}; {x:.2f} × the floor "
            f"(≤ {ratio:.0f} ×) {_met(x <= ratio)}  [with closing {_short(res[0]['closed'])}: "
            f"{withclose:.1f} s]"
        )
    size, limit, mem = T_BIG
    for db in dbs:
        r = done.get(Case("month", size, db))
        label = f"{size:,} people, one month, {db}"
        if not r or not r["months"]:
            print(f"  {label}: {_why(r, db, dbs)}")
            continue
        res = r["months"]
        t, peak = _seconds(res, INTAKE), _peak(res)
        print(
            f"  {label}: land → scores {t:.1f} s (< {limit:.0f} s) {_met(t < limit)} [with "
            f"closing {_short(res[0]['closed'])}: {_seconds(res):.1f} s]; peak {peak / 1024:.2f} "
            f"GiB (< {mem // 1024} GiB) {_met(peak < mem)}"
        )
    years = sorted(
        ((c, r) for c, r in done.items() if c.kind == "year"), key=lambda cr: (cr[0].size, cr[0].db)
    )
    for case, r in years:
        label = f"{case.size:,} people, rerun of December of a closed year, {case.db}"
        late = {x["month"]: x for x in r["reruns"]}
        dec = late.get(LATE_MONTHS[0])
        if dec is None:
            print(f"  {label}: {_why(r, case.db, dbs)}")
            continue
        pct = 100 * _seconds([dec]) / _seconds(r["months"])
        ok, verdict = rerun_verdict(dec, r["months"])
        print(
            f"  {label}: {pct:.1f} % of the full year (< {T_RERUN:.0f} %) {_met(pct < T_RERUN)}; "
            f"recomputes only that month and its periods: {_met(ok)} "
            f"({_months_text(dec['rescored'])}; {_short(sorted(dec['closed'], key=_period_key))})"
        )
        jun = late.get(LATE_MONTHS[1])
        if jun is not None:
            ok, verdict = rerun_verdict(jun, r["months"])
            print(
                f"  {case.size:,} people, rerun of {jun['month']}, {case.db}: recomputes nothing "
                f"beyond the rule (the month, the later scored months of its year, the closed "
                f"periods containing them): {_met(ok)} ({_months_text(jun['rescored'])}; "
                f"{_short(sorted(jun['closed'], key=_period_key))})"
            )
    if not years:
        print("  rerun of December of a closed year: not run (no year case)")
    size, limit, ratio = T_INGEST
    for db in dbs:
        r = done.get(Case("month", size, db))
        if r and r["months"] and "floor" in r:
            t = _seconds(r["months"], ("land", "validate", "load"))
            x = t / r["floor"]["total"]
            print(
                f"  (ingest issue) {size:,} people, land → load, {db}: {t:.1f} s (< {limit:.0f} s) "
                f"{_met(t < limit)}; {x:.2f} × the floor (≤ {ratio:.0f} ×) {_met(x <= ratio)}"
            )
    for size, limit, mem in T_SCORE:
        for db in dbs:
            r = done.get(Case("month", size, db))
            if r and r["months"]:
                st = r["months"][0]["stages"]["score"]
                line = f"{st['s']:.1f} s (< {limit:.0f} s) {_met(st['s'] < limit)}"
                if mem:
                    line += f", peak {st['peak'] / 1024:.2f} GiB (< {mem // 1024} GiB) "
                    line += _met(st["peak"] < mem)
                print(f"  (scoring issue) {size:,} people, score_step of one month, {db}: {line}")
    if not full:
        print(
            f"  ({FULL_MONTH_SIZES[0]:,}-people month and {FULL_YEAR_SIZES[0]:,}-people year: "
            "only with BENCH_FULL=1)"
        )


def _why(r: dict[str, Any] | None, db: str, dbs: list[str]) -> str:
    if db not in dbs:
        return "not run (database skipped or not asked for)"
    if r is None:
        return "not run (--sizes/--only leave it out)"
    return f"failed: {r.get('error', '?')}"


# --- command line ---------------------------------------------------------------------------------
def _sizes(text: str) -> list[int]:
    return [int(s.strip().replace("_", "")) for s in text.split(",") if s.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    full = os.environ.get("BENCH_FULL", "") not in ("", "0")
    months = MONTH_SIZES + (FULL_MONTH_SIZES if full else [])
    years = YEAR_SIZES + (FULL_YEAR_SIZES if full else [])
    ap = argparse.ArgumentParser(prog="python -m bench.ladder", description=__doc__.split("\n")[0])
    ap.add_argument(
        "--sizes",
        help=f"rungs, people (default: months {','.join(map(str, months))}; "
        f"years {','.join(map(str, years))})",
    )
    ap.add_argument("--db", default="sqlite,postgresql", help="sqlite and/or postgresql")
    ap.add_argument("--only", choices=("month", "year"), help="run only this kind of case")
    ap.add_argument("--detail", action="store_true", help="a year's stages month by month")
    ap.add_argument("--profile", metavar="DIR", help="dump cProfile stats per stage (slower)")
    args = ap.parse_args(argv)
    args.full = full
    args.db = [d.strip() for d in args.db.split(",") if d.strip()]
    unknown = set(args.db) - {"sqlite", "postgresql"}
    if unknown:
        ap.error(f"--db: unknown {', '.join(sorted(unknown))} (sqlite, postgresql)")
    sizes = _sizes(args.sizes) if args.sizes else sorted(set(months) | set(years))
    plan: list[tuple[int, str]] = []
    for size in sizes:
        off = size not in months and size not in years
        for kind, ladder in (("month", months), ("year", years)):
            if (args.only == kind) or (args.only is None and (size in ladder or off)):
                plan.append((size, kind))
    args.plan = plan
    args.left = [
        (s, k) for s in sizes for k in ("month", "year") if (s, k) not in plan and args.only is None
    ]
    return args


def _header(args: argparse.Namespace, pg_url: str, pg: tuple[str | None, str | None]) -> None:
    print(
        f"kaohe scale ladder at {_revision()}: scheme {BASE_ENV['KAOHE_SCHEME']}, seed {SEED}; "
        f"Python {platform.python_version()}, pandas {pd.__version__}, SQLite "
        f"{sqlite3.sqlite_version}, {os.cpu_count()} cores"
    )
    print_pg_line(pg_url, pg, args.db)
    months = MONTH_SIZES + (FULL_MONTH_SIZES if args.full else [])
    years = YEAR_SIZES + (FULL_YEAR_SIZES if args.full else [])
    print(
        f"ladder: one month {' / '.join(f'{s:,}' for s in months)} people, one year "
        f"{' / '.join(f'{s:,}' for s in years)} people"
        + (
            ""
            if args.full
            else f" (BENCH_FULL=1 adds the {FULL_MONTH_SIZES[0]:,}-people month and the "
            f"{FULL_YEAR_SIZES[0]:,}-people year)"
        )
    )
    print(f"this run: {', '.join(f'{s:,} {k}' for s, k in args.plan) or 'nothing'}")
    for size, kind in args.left:
        print(f"  ({size:,} people, one {kind}: not on the ladder without BENCH_FULL=1 or --only)")
    print(
        "each case: its own process, KAOHE_HOME and fresh warehouse; the steps the DAG tasks call;"
        " imports before the clocks; generation never timed.\nrows: source rows (land, validate, "
        "load), mart rows written (score), period rows written (close); cpu s: the case process "
        "only (not the database server);\npeak MiB: max(the case process's VmHWM, reset per stage "
        f"via /proc/self/clear_refs; VmRSS of it and its child processes sampled every "
        f"{SAMPLE_S * 1000:.0f} ms); a year's stage: summed over its months, peak the highest;\n"
        "floor: pandas reading the month's files + bulk_insert of the rows the load wrote, in one "
        "transaction (COPY on PostgreSQL, executemany on SQLite)"
    )


@contextlib.contextmanager
def _cache_dir() -> Iterator[tuple[Path, bool]]:
    kept = os.environ.get("KAOHE_BENCH_CACHE")
    if kept:
        Path(kept).mkdir(parents=True, exist_ok=True)
        yield Path(kept), True
        return
    root = Path(tempfile.mkdtemp(prefix="kaohe-ladder-cache-"))
    try:
        yield root, False
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.update(BASE_ENV)
    pg_url = os.environ.get("KAOHE_BENCH_PG_URL") or DEFAULT_PG
    pg = pg_version(pg_url) if "postgresql" in args.db else (None, "not asked for")
    dbs = [d for d in args.db if d != "postgresql" or pg[0]]
    _header(args, pg_url, pg)
    if args.profile:
        print(f"profiling every stage into {args.profile}: times are inflated by cProfile")
    start = time.perf_counter()
    done: dict[Case, dict[str, Any]] = {}
    with _cache_dir() as (cache, kept):
        if kept:
            print(f"inboxes cached in {cache} (KAOHE_BENCH_CACHE)")
        for size, kind in args.plan:
            inbox, record, cached = ensure_inbox(cache, size, kind)
            print_group(kind, size, record, cached)
            for db in dbs:
                case = Case(kind, size, db)
                _log(f"{size:,} people, one {kind}, {db} ...")
                done[case] = _run(case, inbox, pg_url if pg[0] else None, args.profile)
                print_case(case, done[case], args.detail)
                sys.stdout.flush()
    print_targets(done, dbs, args.full)
    print(f"\nladder wall time {time.perf_counter() - start:.0f} s (generation included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
