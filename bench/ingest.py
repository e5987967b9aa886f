"""Ingest benchmark: land -> validate -> load of one generated month, against its floor.

    python -m bench.ingest [--sizes 2000,20000] [--db sqlite,postgresql] [--month 2026-03]
                           [--profile DIR]

The issue's targets are for 20,000 people: land + validate + load under 30 s on SQLite and on
PostgreSQL, and at most 2 x the floor. The floor is what the same work costs with nothing but pandas
and the database's fastest bulk path: pandas reading the same files (right encoding, calamine for
XLSX) plus `bulk_insert` of the same rows into the project's tables in one transaction on a fresh
schema. A month at a quarter's end is used so the survey round is part of the month.

Each case runs in its own spawned process and its own KAOHE_HOME, so no case inherits another's
landed files, warm caches or memory high-water mark; imports (pandas, Great Expectations) happen
before the clock starts and are reported apart, since a long-lived worker pays them once. Figures
are printed, never asserted: the command exits 0 whether a target is met or not.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import hashlib
import json
import logging
import os
import platform
import resource
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from etl.sources import SOURCES, source_of

MONTH = "2026-03"
SEED = 1
SCHEME = "demo"
TARGET_SIZE = 20_000
TARGET_SECONDS = 30.0
TARGET_RATIO = 2.0
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
BASE_ENV = {"KAOHE_RATER_SECRET": "bench", "GX_ANALYTICS_ENABLED": "false", "KAOHE_SCHEME": SCHEME}
# settings the caller's shell may carry that would send a case's output or warehouse elsewhere
FOREIGN_ENV = ("KAOHE_OUTPUT", "KAOHE_CONNECTOR", "KAOHE_WAREHOUSE_URL", "KAOHE_BASE_URL")
STAGES = ("land", "validate", "load")
SHORT = {"sqlite": "sqlite", "postgresql": "pg"}


# --- small helpers --------------------------------------------------------------------------------
def _rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds:,.0f}" if seconds > 0 else "-"


def _peak_mib() -> float:
    """This process's resident high-water mark (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _quiet() -> None:
    """GX logs every checkpoint at INFO; the benchmark's output must stay a table."""
    for name in ("great_expectations", "great_expectations.core", "tqdm"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _encoding(data: bytes) -> str:
    """The encoding pandas needs for a file; detected outside the floor's clock, as an operator
    would know it, so the floor is the parse alone."""
    if data.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return "gb18030"
    return "utf-8"


def inbox_files(inbox: Path, month: str) -> list[dict[str, Any]]:
    """The month's files in the shape validate_month takes (what landing would hand it)."""
    out = []
    for p in sorted((inbox / month).iterdir()):
        src = source_of(p.name)
        if src:
            sha = hashlib.sha256(p.read_bytes()).hexdigest()
            out.append({"source": src, "name": p.name, "sha256": sha, "path": str(p)})
    return out


@contextlib.contextmanager
def _timed(name: str, into: dict[str, float], profile: Path | None = None) -> Iterator[None]:
    """Wall time of a block into `into[name]`; with `profile`, a cProfile dump beside it."""
    prof = cProfile.Profile() if profile else None
    start = time.perf_counter()
    if prof:
        prof.enable()
    try:
        yield
    finally:
        if prof:
            prof.disable()
        into[name] = time.perf_counter() - start
        if prof and profile:
            profile.parent.mkdir(parents=True, exist_ok=True)
            prof.dump_stats(str(profile))


def _in_child(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run fn in a fresh spawned interpreter: its own imports, memory peak and environment."""
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def _child_env(home: Path, inbox: Path, warehouse_url: str | None) -> None:
    for key in FOREIGN_ENV:
        os.environ.pop(key, None)
    os.environ.update(BASE_ENV, KAOHE_HOME=str(home), KAOHE_INBOX=str(inbox))
    if warehouse_url:
        os.environ["KAOHE_WAREHOUSE_URL"] = warehouse_url


# --- PostgreSQL: a fresh database per case ----------------------------------------------------
def _pg_conninfo(url: str) -> str:
    """libpq wants `postgresql://`; a SQLAlchemy URL may name a driver."""
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def pg_version(url: str) -> tuple[str | None, str | None]:
    """(server version, None) when reachable, else (None, why not)."""
    import psycopg

    try:
        with psycopg.connect(_pg_conninfo(url), connect_timeout=5) as conn:
            return str(conn.execute("show server_version").fetchone()[0]), None
    except Exception as exc:  # any failure to connect means: skip PostgreSQL, say why
        return None, str(exc).strip().splitlines()[0]


def pg_admin(url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(_pg_conninfo(url), autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql)


@contextlib.contextmanager
def pg_database(url: str, name: str) -> Iterator[str]:
    """A database created for one case and dropped after it, whatever happens; yields its URL."""
    pg_admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    pg_admin(url, f'CREATE DATABASE "{name}"')
    try:
        yield (
            sa.make_url(_pg_conninfo(url)).set(database=name).render_as_string(hide_password=False)
        )
    finally:
        pg_admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- per source: the project's reader and coercion against pandas alone ---------------------------
def _pandas_read(path: str, data: bytes) -> pd.DataFrame:
    if path.lower().endswith(".xlsx"):
        return pd.read_excel(path, engine="calamine")
    return pd.read_csv(path, encoding=_encoding(data))


def _source_timings(files: list[dict[str, Any]], levels: dict, secret: bytes) -> dict[str, dict]:
    from etl.coerce import coerce
    from etl.read import to_frame

    out: dict[str, dict] = {}
    for source in SOURCES:
        mine = [f for f in files if f["source"] == source]
        if not mine:
            continue
        data = {f["path"]: Path(f["path"]).read_bytes() for f in mine}
        t: dict[str, float] = {}
        with _timed("read", t):
            frames = [to_frame(source, f["name"], data[f["path"]])[0] for f in mine]
            raw = pd.concat(frames, ignore_index=True)
        with _timed("coerce", t):
            coerce(source, raw, levels, secret)
        with _timed("pandas", t):
            pandas_rows = sum(len(_pandas_read(p, b)) for p, b in data.items())
        out[source] = {"files": len(mine), "rows": len(raw), "pandas_rows": pandas_rows, **t}
    return out


def probe_sources(inbox: str, month: str, work: str) -> dict[str, Any]:
    """Per-source read/coerce rates and the pandas read floor; stage the rows the floor writes.

    The floor must write exactly the rows the pipeline loads, so validation runs here once (without
    Data Docs: its time is the rules-only share of the validate stage) and its accepted rows,
    quarantine and file list are staged as validate_step stages them.
    """
    from etl.pipeline import write_stage
    from etl.validate import validate_month
    from scoring.scheme import load_scheme

    os.environ.update(BASE_ENV)
    _quiet()
    scheme = load_scheme(SCHEME)
    secret = BASE_ENV["KAOHE_RATER_SECRET"].encode()
    files = inbox_files(Path(inbox), month)
    sources = _source_timings(files, scheme.survey_levels(), secret)
    t: dict[str, float] = {}
    with _timed("rules", t):
        result = validate_month(files, month, scheme, secret, None)
    write_stage(result, Path(work))
    rejected = [r.source for r in result.rejected]
    return {"sources": sources, "rules_s": t["rules"], "scheme_id": scheme.id, "rejected": rejected}


# --- one case: the pipeline, then the floor's write ----------------------------------------------
def floor_tables(work: Path, scheme_id: str, month: str) -> list[tuple[sa.Table, pd.DataFrame]]:
    """Every row load_month writes, shaped as it hands them to bulk_insert (`cases` included)."""
    from etl.pipeline import read_stage
    from etl.warehouse import SOURCE_TABLE, cases, loaded_file, mart_quarantine

    accepted, quarantine, files = read_stage(work)
    out = []
    for source, table in SOURCE_TABLE.items():
        if source in accepted:
            rows = accepted[source].assign(scheme_id=scheme_id, month=month)
            out.append((table, rows))
            if source == "cases":
                out.append((cases, rows.assign(as_of_month=month)))
    for frame, table in ((quarantine, mart_quarantine), (files, loaded_file)):
        out.append((table, frame.assign(scheme_id=scheme_id, month=month)))
    return out


def floor_write(url: str, tables: list[tuple[sa.Table, pd.DataFrame]]) -> dict[str, float]:
    """bulk_insert of every table in one transaction on a fresh schema: seconds per table and the
    whole transaction (`total`, commit included)."""
    from etl.bulk import bulk_insert
    from etl.warehouse import create_schema, engine_for

    engine = engine_for(url)
    t: dict[str, float] = {}
    try:
        create_schema(engine)
        with _timed("total", t), engine.begin() as conn:
            for table, frame in tables:
                with _timed(table.name, t):
                    bulk_insert(conn, table, frame)
    finally:
        engine.dispose()
    return t


def _warm_imports() -> float:
    """Import what validate_step imports lazily, so stage times are the work, not the imports."""
    start = time.perf_counter()
    _quiet()
    import great_expectations  # noqa: F401

    _quiet()
    return time.perf_counter() - start


def _stages(
    month: str, run_id: str, cfg: Any, profile: Path | None
) -> tuple[dict[str, float], dict[str, Any]]:
    from etl.pipeline import land_step, load_step, validate_step

    t: dict[str, float] = {}
    cpu = time.process_time()

    def prof(stage: str) -> Path | None:
        return profile / f"{run_id}-{stage}.prof" if profile else None

    with _timed("land", t, prof("land")):
        manifest = land_step(month, run_id, cfg=cfg)
    with _timed("validate", t, prof("validate")):
        validation = validate_step(json.loads(json.dumps(manifest)), cfg)
    with _timed("load", t, prof("load")):
        loaded = load_step(validation, cfg)
    t["cpu"] = time.process_time() - cpu
    return t, {"validation": validation, "loaded": loaded}


def run_case(
    size: int,
    db: str,
    inbox: str,
    month: str,
    work: str,
    urls: tuple[str | None, str | None],
    profile: str | None,
) -> dict[str, Any]:
    """One size on one database in a fresh KAOHE_HOME: stage times, rows, memory, floor write."""
    from etl.config import settings

    home = Path(tempfile.mkdtemp(prefix=f"kaohe-bench-{size}-{db}-"))
    try:
        warehouse_url, floor_url = urls
        _child_env(home, Path(inbox), warehouse_url)
        load1 = os.getloadavg()[0]
        imports = _warm_imports()
        base = _peak_mib()
        cfg = settings()
        run_id = f"bench-{size}-{db}"
        times, out = _stages(month, run_id, cfg, Path(profile) if profile else None)
        peak = _peak_mib()
        sources = out["validation"]["sources"]
        rows = {s: v["rows_in"] for s, v in sources.items() if v["status"] != "absent"}
        scheme_id = out["validation"]["scheme_id"]
        floor = floor_write(
            floor_url or f"sqlite:///{home / 'floor.db'}",
            floor_tables(Path(work), scheme_id, month),
        )
        return {
            "times": times,
            "rows": rows,
            "loaded": out["loaded"]["loaded"],
            "imports": imports,
            "base_mib": base,
            "load1": load1,
            "peak_mib": peak,
            "floor_write": floor,
        }
    finally:
        shutil.rmtree(home, ignore_errors=True)


# --- the driver -----------------------------------------------------------------------------------
def generate_inbox(size: int, month: str, inbox: str) -> dict[str, Any]:
    """Run in a child: generating 20,000 people takes ~1 GiB, which a forked case would otherwise
    inherit as its ru_maxrss."""
    from etl.generate import generate

    start = time.perf_counter()
    counts = generate(Path(inbox), size, month, 1, SEED)[month]
    return {"seconds": time.perf_counter() - start, "counts": counts}


def run_size(
    size: int, dbs: list[str], month: str, root: Path, pg_url: str | None, profile: str | None
) -> None:
    inbox = root / f"inbox-{size}"
    gen = _in_child(generate_inbox, size, month, str(inbox))
    rows = sum(gen["counts"].values())
    print(f"\n== {size:,} people, {month}: {rows:,} rows generated in {gen['seconds']:.1f} s ==")
    work = root / f"floor-{size}"
    work.mkdir()
    probe = _in_child(probe_sources, str(inbox), month, str(work))
    if probe["rejected"]:
        print(f"  validation rejects {', '.join(probe['rejected'])}: figures are not comparable")
    results: dict[str, dict[str, Any]] = {}
    for db in dbs:
        if db == "postgresql" and pg_url is None:
            continue
        _log(f"{size:,} people on {db} ...")
        results[db] = _run_db_case(size, db, inbox, month, work, pg_url, profile)
    print_sources(probe, results)
    print_cases(probe, results)
    if size == TARGET_SIZE:
        print_targets(probe, results)


def _run_db_case(
    size: int, db: str, inbox: Path, month: str, work: Path, pg_url: str | None, profile: str | None
) -> dict[str, Any]:
    args = (size, db, str(inbox), month, str(work))
    if db == "sqlite":
        return _in_child(run_case, *args, (None, None), profile)
    assert pg_url is not None
    tag = f"kaohe_bench_{os.getpid()}_{size}"
    with pg_database(pg_url, tag) as wh, pg_database(pg_url, f"{tag}_floor") as floor:
        return _in_child(run_case, *args, (wh, floor), profile)


def _log(text: str) -> None:
    sys.stdout.flush()
    print(f"  ... {text}", file=sys.stderr, flush=True)


# --- printing -------------------------------------------------------------------------------------
def floor_seconds(probe: dict[str, Any], case: dict[str, Any]) -> float:
    """pandas reading every file plus the one-transaction bulk write of every row."""
    read = sum(s["pandas"] for s in probe["sources"].values())
    return read + case["floor_write"]["total"]


def print_sources(probe: dict[str, Any], results: dict[str, dict[str, Any]]) -> None:
    """Per source: the project's reader (to_frame) and coercion, pandas alone, the bulk write."""
    from etl.warehouse import SOURCE_TABLE

    dbs = list(results)
    head = (
        f"  {'source':<12}{'files':>6}{'rows':>10}{'to_frame s':>12}{'rows/s':>11}"
        f"{'coerce s':>10}{'rows/s':>11}{'read+coerce':>13}{'pandas s':>10}{'rows/s':>11}"
        + "".join(f"{'write ' + SHORT[db] + ' s':>16}" for db in dbs)
    )
    print(head)
    for source, s in probe["sources"].items():
        writes = "".join(
            f"{r['floor_write'].get(SOURCE_TABLE[source].name, 0.0):>16.2f}"
            for r in results.values()
        )
        print(
            f"  {source:<12}{s['files']:>6}{s['rows']:>10,}{s['read']:>12.2f}"
            f"{_rate(s['rows'], s['read']):>11}{s['coerce']:>10.2f}"
            f"{_rate(s['rows'], s['coerce']):>11}{_rate(s['rows'], s['read'] + s['coerce']):>13}"
            f"{s['pandas']:>10.2f}{_rate(s['pandas_rows'], s['pandas']):>11}{writes}"
        )
    print(
        f"  rules-only validation (validate_month without Data Docs): {probe['rules_s']:.2f} s; "
        "'write' is the floor's bulk_insert of the source's accepted rows"
    )


def print_cases(probe: dict[str, Any], results: dict[str, dict[str, Any]]) -> None:
    print(
        f"\n  {'db':<11}{'rows':>10}{'land s':>9}{'validate s':>12}{'load s':>9}{'total s':>9}"
        f"{'rows/s':>10}{'cpu s':>7}{'floor s':>9}{'(read':>7}{'+ write)':>10}{'total/floor':>13}"
        f"{'MiB after imports':>19}{'peak MiB':>10}{'imports s':>11}{'load avg':>10}"
    )
    for db, r in results.items():
        rows = sum(r["rows"].values())
        total = sum(r["times"][s] for s in STAGES)
        floor = floor_seconds(probe, r)
        read = floor - r["floor_write"]["total"]
        print(
            f"  {db:<11}{rows:>10,}{r['times']['land']:>9.2f}{r['times']['validate']:>12.2f}"
            f"{r['times']['load']:>9.2f}{total:>9.2f}{_rate(rows, total):>10}"
            f"{r['times']['cpu']:>7.1f}{floor:>9.2f}"
            f"{read:>7.2f}{r['floor_write']['total']:>10.2f}{total / floor:>13.2f}"
            f"{r['base_mib']:>19.0f}{r['peak_mib']:>10.0f}{r['imports']:>11.1f}"
            f"{r['load1']:>10.1f}"
        )
    for db, r in results.items():
        counts = ", ".join(f"{s} {n:,}/{r['loaded'].get(s, 0):,}" for s, n in r["rows"].items())
        print(f"  {db} rows per source, read/loaded: {counts}")


def print_targets(probe: dict[str, Any], results: dict[str, dict[str, Any]]) -> None:
    print(f"\n  targets for {TARGET_SIZE:,} people (printed, not asserted):")
    for db, r in results.items():
        total = sum(r["times"][s] for s in STAGES)
        ratio = total / floor_seconds(probe, r)
        print(
            f"    {db:<11} land+validate+load {total:6.2f} s  < {TARGET_SECONDS:.0f} s   "
            f"{'PASS' if total < TARGET_SECONDS else 'MISS'}"
        )
        print(
            f"    {db:<11} total/floor        {ratio:6.2f}    <= {TARGET_RATIO:.0f}     "
            f"{'PASS' if ratio <= TARGET_RATIO else 'MISS'}"
        )


def _revision() -> str:
    """The commit measured (others commit while benchmarks run): short hash, '+dirty' when code
    outside bench/ has uncommitted edits."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "-uno", "--", ".", ":!bench"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def print_pg_line(pg_url: str, pg: tuple[str | None, str | None], dbs: list[str]) -> None:
    """Which PostgreSQL the cases use, or why they skip it."""
    shown = sa.make_url(pg_url).render_as_string(hide_password=True)
    if "postgresql" in dbs:
        version, why = pg
        print(
            f"PostgreSQL {version} at {shown}: a fresh database per case, dropped afterwards"
            if version
            else f"PostgreSQL: skipped, cannot connect to {shown} ({why})"
        )


def _header(month: str, pg_url: str, pg: tuple[str | None, str | None], dbs: list[str]) -> None:
    print(
        f"kaohe ingest benchmark at {_revision()}: {month}, scheme {SCHEME}, seed {SEED}; Python "
        f"{platform.python_version()}, pandas {pd.__version__}, SQLite {sqlite3.sqlite_version}, "
        f"{os.cpu_count()} cores"
    )
    print_pg_line(pg_url, pg, dbs)
    print(
        "stage times are wall seconds without imports (GX etc.: 'imports s', paid once per worker"
        " process); 'cpu s' is the case process's CPU over the stages (not the database server's);"
        "\nfloor = pandas read of the files + bulk_insert of the same rows in one transaction;"
        " 'load avg' is the machine's 1-minute load when the case started"
        f" ({os.cpu_count()} cores: above that, other work shares the CPUs)"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="2000,20000", help="people per case, comma-separated")
    ap.add_argument("--db", default="sqlite,postgresql", help="sqlite and/or postgresql")
    ap.add_argument("--month", default=MONTH, help="YYYY-MM; a quarter's last month has surveys")
    ap.add_argument("--profile", metavar="DIR", help="dump cProfile stats per stage (slower)")
    args = ap.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    args.db = [d.strip() for d in args.db.split(",") if d.strip()]
    unknown = set(args.db) - {"sqlite", "postgresql"}
    if unknown:
        ap.error(f"--db: unknown {', '.join(sorted(unknown))} (sqlite, postgresql)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.update(BASE_ENV)
    pg_url = os.environ.get("KAOHE_BENCH_PG_URL") or DEFAULT_PG
    pg = pg_version(pg_url) if "postgresql" in args.db else (None, "not asked for")
    _header(args.month, pg_url, pg, args.db)
    if args.profile:
        print(f"profiling every stage into {args.profile}: times are inflated by cProfile")
    root = Path(tempfile.mkdtemp(prefix="kaohe-bench-"))
    try:
        for size in args.sizes:
            run_size(size, args.db, args.month, root, pg_url if pg[0] else None, args.profile)
        if TARGET_SIZE not in args.sizes:
            print(f"\ntargets are set for {TARGET_SIZE:,} people, which --sizes leaves out")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
