"""`make demo`: generate a sample organisation, run the real `kaohe_monthly` DAG for three
months and `kaohe_period_close` for the quarter they end, with the embedded defaults, and print
what was loaded, what was set aside, where the reports are, and the top of each category.

The DAG runs through `airflow dags test`, the same code path an operator uses to try a run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from etl.config import settings
from etl.generate import generate
from etl.warehouse import engine_for, loaded_file, mart_period_score, mart_run
from scoring.scheme import Scheme, load_scheme
from scoring.timeline import periods_ending


def _airflow(args: list[str], log: Path) -> int:
    with open(log, "a", encoding="utf-8") as out:
        return subprocess.call(
            [sys.executable, "-m", "airflow", *args], stdout=out, stderr=subprocess.STDOUT
        )


def _next_month(month: str) -> str:
    return (pd.Period(month, "M") + 1).strftime("%Y-%m")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scheme", default=os.environ.get("KAOHE_SCHEME") or "demo")
    ap.add_argument("--people", type=int, default=240)
    ap.add_argument("--start", default="2026-01")
    ap.add_argument("--months", type=int, default=3)
    args = ap.parse_args(argv)
    cfg = settings()
    scheme = load_scheme(args.scheme)
    logs = cfg.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    months = [str(p) for p in pd.period_range(args.start, periods=args.months, freq="M")]
    print(f"kaohe demo: {scheme.name} ({scheme.id}), {args.people} people, {', '.join(months)}")
    generate(Path(cfg.inbox), args.people, args.start, args.months, seed=1)
    print(f"  sample extracts written to {cfg.inbox}")
    if _airflow(["db", "migrate"], logs / "airflow-db.log"):
        print(f"airflow db migrate failed: see {logs / 'airflow-db.log'}")
        return 1
    failed = []
    for m in months:
        log = logs / f"kaohe_monthly-{m}.log"
        log.unlink(missing_ok=True)
        conf = json.dumps({"month": m, "scheme": args.scheme})
        rc = _airflow(["dags", "test", "kaohe_monthly", f"{_next_month(m)}-05", "-c", conf], log)
        if rc:
            failed.append(m)
        print(f"  kaohe_monthly {m}: {'failed, see ' + str(log) if rc else 'done'}")
    for period in periods_ending(months):
        log = logs / f"kaohe_period_close-{period}.log"
        log.unlink(missing_ok=True)
        conf = json.dumps({"period": period, "scheme": args.scheme})
        day = f"{_next_month(months[-1])}-05"
        rc = _airflow(["dags", "test", "kaohe_period_close", day, "-c", conf], log)
        if rc:
            failed.append(period)
        print(f"  kaohe_period_close {period}: {'failed, see ' + str(log) if rc else 'done'}")
    _summary(cfg.warehouse_url, scheme.id, months, cfg.output)
    for period in periods_ending(months):
        _top(cfg.warehouse_url, scheme, period)
    return 1 if failed else 0


def _top(url: str, scheme: Scheme, period: str, n: int = 3) -> None:
    """The best of each category in the period, as the bulletin will rank them."""
    eng = engine_for(url)
    with eng.connect() as conn:
        scores = pd.read_sql(
            sa.select(mart_period_score).where(
                mart_period_score.c.scheme_id == scheme.id, mart_period_score.c.period == period
            ),
            conn,
        )
    eng.dispose()
    grades = {g.grade: g.name or g.grade for g in scheme.grading.grades} if scheme.grading else {}
    print(f"\n{period}: top {n} of each category (period score, grade)")
    for cat, g in scores[scores.graded].groupby("category"):
        top = g.sort_values(["rank_in_scope", "person_id"]).head(n)
        line = "  ".join(
            f"{r.rank_in_scope}. {r.name} {r.period_score:.2f} {grades.get(r.grade, r.grade)}"
            for r in top.itertuples()
        )
        print(f"  {scheme.categories.get(cat, cat)} ({len(g)}): {line}")


def _summary(url: str, scheme_id: str, months: list[str], output: Path) -> None:
    eng = engine_for(url)
    with eng.connect() as conn:
        files = pd.read_sql(
            sa.select(loaded_file).where(
                loaded_file.c.scheme_id == scheme_id, loaded_file.c.month.in_(months)
            ),
            conn,
        )
        runs = pd.read_sql(
            sa.select(mart_run)
            .where(mart_run.c.scheme_id == scheme_id, mart_run.c.month_or_period.in_(months))
            .order_by(mart_run.c.started_at),
            conn,
        )
    eng.dispose()
    print("\nrows per source (loaded / quarantined):")
    for m in months:
        f = files[files.month == m].groupby("source")[["rows_in", "rows_quarantined"]].sum()
        line = ", ".join(
            f"{s} {int(r.rows_in - r.rows_quarantined)}/{int(r.rows_quarantined)}"
            for s, r in f.iterrows()
        )
        last = runs[runs.month_or_period == m].tail(1)
        status = last.status.iloc[0] if len(last) else "not run"
        print(f"  {m} [{status}] {line}")
        print(f"    validation report: {output / scheme_id / m / 'validation' / 'index.html'}")
    print(f"\nwarehouse: {url}")


if __name__ == "__main__":
    sys.exit(main())
