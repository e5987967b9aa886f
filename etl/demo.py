"""`make demo`: generate a sample organisation, run the real `kaohe_monthly` DAG for three
months with the embedded defaults, and print what was loaded, what was set aside and where the
reports are.

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
from etl.warehouse import engine_for, loaded_file, mart_run
from scoring.scheme import load_scheme


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
    _summary(cfg.warehouse_url, scheme.id, months, cfg.output)
    return 1 if failed else 0


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
