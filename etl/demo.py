"""`make demo`: generate a county court and a county office, each with its own inbox and its own
demo scheme, run the real `kaohe_monthly` DAG for three months and `kaohe_period_close` for the
quarter they end, with the embedded defaults, and print what was loaded, what was set aside, where
the reports are, and the top of each category.

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

from etl.config import Settings, settings
from etl.generate import generate
from etl.warehouse import create_schema, engine_for, loaded_file, mart_period_score, mart_run
from scoring.scheme import Scheme, load_scheme
from scoring.timeline import periods_ending


def _airflow(args: list[str], log: Path, env: dict[str, str] | None = None) -> int:
    with open(log, "a", encoding="utf-8") as out:
        return subprocess.call(
            [sys.executable, "-m", "airflow", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


def _next_month(month: str) -> str:
    return (pd.Period(month, "M") + 1).strftime("%Y-%m")


# the default demo: a county court and county offices, each under its own scheme
DEMO_SCHEMES = ("court", "office")
# a scheme the generator cannot size up from its indicators alone: courts and offices together
KINDS = {"demo": "mixed", "demo-2026": "mixed"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--scheme",
        action="append",
        help="scheme id or path (repeatable); default: the court and the office demo schemes",
    )
    ap.add_argument("--people", type=int, default=240, help="people per organisation")
    ap.add_argument("--start", default="2026-01")
    ap.add_argument("--months", type=int, default=3)
    args = ap.parse_args(argv)
    refs = args.scheme or ([os.environ["KAOHE_SCHEME"]] if os.environ.get("KAOHE_SCHEME") else [])
    refs = refs or list(DEMO_SCHEMES)
    cfg = settings()
    logs = cfg.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    if _airflow(["db", "migrate"], logs / "airflow-db.log"):
        print(f"airflow db migrate failed: see {logs / 'airflow-db.log'}")
        return 1
    months = [str(p) for p in pd.period_range(args.start, periods=args.months, freq="M")]
    failed = []
    for ref in refs:
        failed += _demo_scheme(ref, args.people, months, cfg, logs)
    return 1 if failed else 0


def _demo_scheme(ref: str, people: int, months: list[str], cfg: Settings, logs: Path) -> list[str]:
    """One organisation under one scheme, in its own inbox: generate, take in, score, close."""
    scheme = load_scheme(ref)
    inbox = Path(cfg.inbox) / scheme.id
    env = {**os.environ, "KAOHE_INBOX": str(inbox)}
    print(f"\nkaohe demo: {scheme.name} ({scheme.id}), {people} people, {', '.join(months)}")
    kind = KINDS.get(ref) or KINDS.get(scheme.id)
    generate(inbox, people, months[0], len(months), seed=1, kind=kind, scheme=scheme)
    print(f"  sample extracts written to {inbox}")
    failed = []
    runs = [("kaohe_monthly", m, {"month": m}, f"{_next_month(m)}-05") for m in months]
    day = f"{_next_month(months[-1])}-05"
    runs += [("kaohe_period_close", p, {"period": p}, day) for p in periods_ending(months)]
    # notices out on the 6th; after the appeal window, bulletins and bonus tables on the 13th
    for stage, d in (("notify", "06"), ("final", "13")):
        runs += [
            ("kaohe_publish", p, {"period": p, "stage": stage}, f"{day[:8]}{d}")
            for p in periods_ending(months)
        ]
    for dag_id, what, conf, date in runs:
        log = (
            logs
            / f"{dag_id}-{scheme.id}-{what}{'-' + conf['stage'] if 'stage' in conf else ''}.log"
        )
        log.unlink(missing_ok=True)
        c = json.dumps({**conf, "scheme": ref})
        rc = _airflow(["dags", "test", dag_id, date, "-c", c], log, env)
        if rc:
            failed.append(what)
        step = f"{dag_id} {what}" + (f" {conf['stage']}" if "stage" in conf else "")
        print(f"  {step}: {'failed, see ' + str(log) if rc else 'done'}")
    _summary(cfg.warehouse_url, scheme.id, months, cfg.output)
    for period in periods_ending(months):
        _top(cfg.warehouse_url, scheme, period)
        _documents(cfg, scheme.id, period)
    return failed


def _documents(cfg: Settings, scheme_id: str, period: str) -> None:
    """Where the period's documents and the mail that carried them are."""
    out = cfg.output / scheme_id / period
    kinds = {"bulletin": "unit bulletins", "notice": "result notices", "bonus": "bonus tables"}
    print(f"\n{period} documents in {out}:")
    for stem, what in kinds.items():
        files = sorted(out.glob(f"{stem}-*.pdf" if stem != "bonus" else f"{stem}-*.xlsx"))
        if files:
            print(f"  {len(files)} {what}, e.g. {files[0]}")
    outbox = cfg.output / "outbox"
    print(f"  mail: {len(list(outbox.glob('*.eml')))} messages in {outbox}")


def _top(url: str, scheme: Scheme, period: str, n: int = 3) -> None:
    """The best of each category in the period, as the bulletin will rank them."""
    eng = engine_for(url)
    create_schema(eng)
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
            + ("（一票否决）" if r.veto else "")
            for r in top.itertuples()
        )
        print(f"  {scheme.categories.get(cat, cat)} ({len(g)}): {line}")


def _summary(url: str, scheme_id: str, months: list[str], output: Path) -> None:
    eng = engine_for(url)
    create_schema(eng)  # a demo whose every run failed still prints what there is: nothing
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
