"""The monthly intake as plain functions: land -> validate -> load, plus the run log.

The DAG only wires these. Between tasks only small JSON travels (the manifest, the verdicts); the
validated tables wait in a staging folder keyed by run, so a retried load reads exactly what its
validation accepted.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from etl import lock
from etl.config import Settings, rater_secret, settings
from etl.connectors import connector_from_config
from etl.landing import land
from etl.load import load_month
from etl.score import (
    close_period_in_warehouse,
    combine,
    finish_months,
    plan_batches,
    score_months,
    unit_parts,
)
from etl.validate import MonthValidation, slug, validate_month
from etl.warehouse import create_schema, engine_for, mart_run
from scoring.monthly import UnitMonth
from scoring.scheme import Scheme, load_scheme
from scoring.timeline import parse_period, periods_ending


class SourceRejected(Exception):
    """A source failed validation: nothing of the month is loaded. Not worth a retry."""


MONTHLY = "kaohe_monthly"


def month_of(
    param: str | None, interval_start: dt.datetime | None, tz: str = "Asia/Shanghai"
) -> str:
    """The business month: the `month` param, else the month the data interval starts in."""
    if param:
        stamp = dt.datetime.strptime(param.strip(), "%Y-%m")
        return stamp.strftime("%Y-%m")
    if interval_start is None:
        raise ValueError("no month: pass the `month` param (YYYY-MM)")
    import pendulum

    return pendulum.instance(interval_start).in_timezone(tz).strftime("%Y-%m")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def record_run(engine: sa.Engine, run_id: str, **values: Any) -> None:
    """Create or update the run's row in `mart_run` (one row per run, retries update it)."""
    with engine.begin() as conn:
        exists = conn.scalar(sa.select(sa.func.count()).where(mart_run.c.run_id == run_id))
        if exists:
            conn.execute(mart_run.update().where(mart_run.c.run_id == run_id).values(**values))
        else:
            conn.execute(mart_run.insert().values(run_id=run_id, started_at=_now(), **values))


def start_run(engine: sa.Engine, run_id: str, dag_id: str, scheme_id: str, what: str) -> None:
    """The run's row in mart_run, marked running (a retry resets it); the schema must exist."""
    record_run(
        engine,
        run_id,
        dag_id=dag_id,
        scheme_id=scheme_id,
        month_or_period=what,
        status="running",
        finished_at=None,
        message=None,
    )


def land_step(
    month: str,
    run_id: str,
    dag_id: str = "kaohe_monthly",
    scheme_ref: str | None = None,
    reland: bool = False,
    cfg: Settings | None = None,
) -> dict[str, Any]:
    cfg = cfg or settings()
    scheme = load_scheme(scheme_ref or cfg.scheme)
    engine = engine_for(cfg.warehouse_url)
    try:
        create_schema(engine)
        lock.take(engine, scheme.id, month, run_id, dag_id)  # before the run log: a run
        start_run(engine, run_id, dag_id, scheme.id, month)  # turned away leaves no trace
        extracts, skipped = connector_from_config(cfg.connector, cfg.inbox).fetch(month)
        used, notes = land(extracts, month, scheme.id, run_id, cfg.archive, engine, reland)
        record_run(engine, run_id, source_checksums={u.name: u.sha256 for u in used})
    finally:
        engine.dispose()
    return {
        "month": month,
        "run_id": run_id,
        "scheme_ref": scheme_ref or cfg.scheme,
        "scheme_id": scheme.id,
        "files": [u.as_dict() for u in used],
        "notes": skipped + notes,
    }


def staging_dir(cfg: Settings, scheme_id: str, month: str, run_id: str) -> Path:
    return cfg.staging / scheme_id / month / slug(run_id)


def write_stage(result: MonthValidation, stage: Path) -> None:
    """Keep what validation accepted for the load task: accepted rows, quarantine, file list."""
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    # Arrow IPC files, uncompressed: the stage lives minutes, and writing it is on the clock
    for source, frame in result.accepted.items():
        _feather(frame, stage / f"{source}.arrow")
    _feather(result.quarantine, stage / "_quarantine.arrow")
    _feather(result.files_frame(), stage / "_files.arrow")


def _feather(frame: pd.DataFrame, path: Path) -> None:
    frame.reset_index(drop=True).to_feather(path, compression="uncompressed")


class StagedRows(Mapping[str, pd.DataFrame]):
    """The accepted rows per source, read from the stage each time a source is asked for and held
    by no one here: the load takes one source at a time, so only that one is in memory."""

    def __init__(self, stage: Path) -> None:
        self._files = {p.stem: p for p in sorted(stage.glob("[!_]*.arrow"))}

    def __getitem__(self, source: str) -> pd.DataFrame:
        return pd.read_feather(self._files[source])

    def __iter__(self) -> Iterator[str]:
        return iter(self._files)

    def __len__(self) -> int:
        return len(self._files)


def read_stage(stage: Path) -> tuple[StagedRows, pd.DataFrame, pd.DataFrame]:
    """The accepted rows per source (read lazily), the quarantine and the file list that
    write_stage kept."""
    return (
        StagedRows(stage),
        pd.read_feather(stage / "_quarantine.arrow"),
        pd.read_feather(stage / "_files.arrow"),
    )


def validate_step(manifest: dict[str, Any], cfg: Settings | None = None) -> dict[str, Any]:
    """Validate and stage; raise SourceRejected (after logging the run) on a rejected source."""
    cfg = cfg or settings()
    scheme = load_scheme(manifest["scheme_ref"])
    month, run_id = manifest["month"], manifest["run_id"]
    docs = cfg.output / scheme.id / month / "validation"
    result = validate_month(manifest["files"], month, scheme, rater_secret(cfg), docs)
    summary = result.summary()
    rows_in = sum(r.rows_in for r in result.reports.values())
    rows_q = sum(r.rows_quarantined for r in result.reports.values())
    engine = engine_for(cfg.warehouse_url)
    try:
        lock.take(engine, scheme.id, month, run_id, MONTHLY)
        if result.rejected:
            message = "; ".join(
                f"{r.source} rejected: " + " | ".join(r.problems) for r in result.rejected
            )
            record_run(
                engine,
                run_id,
                status="rejected",
                finished_at=_now(),
                rows_in=rows_in,
                rows_quarantined=rows_q,
                message=message,
            )
            lock.free(engine, scheme.id, month, run_id)
            raise SourceRejected(
                f"{month}: {message}. Nothing of {month} was loaded; the "
                f"validation report is {docs / 'index.html'}"
            )
        record_run(engine, run_id, rows_in=rows_in, rows_quarantined=rows_q)
    finally:
        engine.dispose()
    stage = staging_dir(cfg, scheme.id, month, run_id)
    write_stage(result, stage)
    return {
        "month": month,
        "run_id": run_id,
        "scheme_id": scheme.id,
        "scheme_ref": manifest["scheme_ref"],
        "staging": str(stage),
        "report": str(docs / "index.html"),
        "sources": summary,
        "notes": manifest["notes"],
    }


def load_step(validation: dict[str, Any], cfg: Settings | None = None) -> dict[str, Any]:
    cfg = cfg or settings()
    stage = Path(validation["staging"])
    accepted, quarantine, files = read_stage(stage)
    engine = engine_for(cfg.warehouse_url)
    try:
        scheme_id, month = validation["scheme_id"], validation["month"]
        # from the load on: what it loads changes the later months of the year, which scoring
        # then rescores; a busy one turns the run away before anything is loaded
        lock.take_rest_of_year(engine, scheme_id, month, validation["run_id"], MONTHLY)
        counts = load_month(engine, scheme_id, month, accepted, quarantine, files)
        record_run(engine, validation["run_id"], status="success", finished_at=_now())
    finally:
        engine.dispose()
    shutil.rmtree(stage, ignore_errors=True)
    return {
        "month": validation["month"],
        "run_id": validation["run_id"],
        "scheme_ref": validation["scheme_ref"],
        "loaded": counts,
        "report": validation["report"],
        "sources": {
            s: {k: v[k] for k in ("status", "rows_in", "rows_quarantined", "reasons")}
            for s, v in validation["sources"].items()
        },
        "notes": validation["notes"],
    }


def _scored(loaded: dict[str, Any], scheme: Scheme, summary: dict[str, Any]) -> dict[str, Any]:
    """What scoring tells the next tasks: the months scored and the periods to close, those that
    end with a scored month and closed ones that contain a rescored month."""
    due = set(periods_ending(summary["months"])) | set(summary["periods_to_redo"])
    if scheme.pacesetters is not None and scheme.pacesetters.period == "month":
        due |= set(summary["months"])  # monthly pacesetters: every month is closed as a period
    return {
        **summary,
        "scheme_ref": loaded["scheme_ref"],
        "scheme_id": scheme.id,
        "periods": sorted(due),
    }


def score_step(loaded: dict[str, Any], cfg: Settings | None = None) -> dict[str, Any]:
    """Score the loaded month (and the later months of its year already scored) in one piece."""
    cfg = cfg or settings()
    scheme = load_scheme(loaded["scheme_ref"])
    engine = engine_for(cfg.warehouse_url)
    try:
        lock.take_rest_of_year(engine, scheme.id, loaded["month"], loaded["run_id"], MONTHLY)
        summary = score_months(engine, scheme, loaded["month"])
        lock.free_rest_of_year(engine, scheme.id, loaded["month"], loaded["run_id"])
    finally:
        engine.dispose()
    return _scored(loaded, scheme, summary)


def score_plan_step(loaded: dict[str, Any], cfg: Settings | None = None) -> list[dict[str, Any]]:
    """The unit batches of the month's scoring (KAOHE_BATCH_PEOPLE people each), one mapped task
    each; a retried plan starts from an empty stage."""
    cfg = cfg or settings()
    scheme = load_scheme(loaded["scheme_ref"])
    engine = engine_for(cfg.warehouse_url)
    try:
        lock.take_rest_of_year(engine, scheme.id, loaded["month"], loaded["run_id"], MONTHLY)
        plan = plan_batches(engine, scheme, loaded["month"], cfg.batch_people)
    finally:
        engine.dispose()
    stage = staging_dir(cfg, scheme.id, loaded["month"], loaded["run_id"]) / "scores"
    shutil.rmtree(stage, ignore_errors=True)
    common = {"scheme_ref": loaded["scheme_ref"], "months": plan["months"], "stage": str(stage)}
    return [common | {"index": i, "units": units} for i, units in enumerate(plan["batches"])]


PARTS = ("people", "indicators", "summed", "adjustments")


def score_batch_step(batch: dict[str, Any], cfg: Settings | None = None) -> dict[str, Any]:
    """The people's own part of the months for one unit batch, kept as Arrow files for `score`;
    written under a temporary name and renamed, so a half-written batch is never read."""
    cfg = cfg or settings()
    scheme = load_scheme(batch["scheme_ref"])
    engine = engine_for(cfg.warehouse_url)
    try:
        parts = unit_parts(engine, scheme, batch["months"], batch["units"])
    finally:
        engine.dispose()
    folder = Path(batch["stage"]) / f"batch-{batch['index']:05d}"
    part = folder.with_suffix(".part")
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    for m, unit in parts.items():
        for name in PARTS:
            _feather(getattr(unit, name), part / f"{m}.{name}.arrow")
    shutil.rmtree(folder, ignore_errors=True)
    part.rename(folder)
    return {"folder": str(folder), "people": {m: len(u.people) for m, u in parts.items()}}


def score_finish_step(
    loaded: dict[str, Any], batches: list[dict[str, Any]], cfg: Settings | None = None
) -> dict[str, Any]:
    """The batches put together, then what needs the whole scheme (survey rounds, totals, ranks,
    red flags, departments); every mart of the months replaced in one transaction."""
    cfg = cfg or settings()
    scheme = load_scheme(loaded["scheme_ref"])
    folders = [Path(b["folder"]) for b in batches]
    months = sorted({m for b in batches for m in b["people"]})
    parts = {
        m: combine(
            [
                UnitMonth(*(pd.read_feather(f / f"{m}.{name}.arrow") for name in PARTS))
                for f in folders
            ]
        )
        for m in months
    }
    engine = engine_for(cfg.warehouse_url)
    try:
        lock.take_rest_of_year(engine, scheme.id, loaded["month"], loaded["run_id"], MONTHLY)
        summary = finish_months(engine, scheme, months, parts)
        lock.free_rest_of_year(engine, scheme.id, loaded["month"], loaded["run_id"])
    finally:
        engine.dispose()
    if folders:
        shutil.rmtree(folders[0].parent, ignore_errors=True)
    return _scored(loaded, scheme, summary)


def close_step(
    period: str, run_id: str, scheme_ref: str | None = None, cfg: Settings | None = None
) -> dict[str, Any]:
    """Close one period: period scores, grades, pacesetters, bonus; logged in mart_run."""
    cfg = cfg or settings()
    scheme = load_scheme(scheme_ref or cfg.scheme)
    engine = engine_for(cfg.warehouse_url)
    try:
        create_schema(engine)
        lock.take(engine, scheme.id, period, run_id, "kaohe_period_close")
        start_run(engine, run_id, "kaohe_period_close", scheme.id, period)
        try:
            summary = close_period_in_warehouse(engine, scheme, period)
        finally:  # one step: nothing of the period is held between tasks
            lock.free(engine, scheme.id, period, run_id)
        note = "; ".join(summary["messages"]) or None
        if summary["months_missing"]:
            note = f"months not scored: {', '.join(summary['months_missing'])}" + (
                f"; {note}" if note else ""
            )
        record_run(
            engine,
            run_id,
            status="success",
            finished_at=_now(),
            rows_in=summary["people"],
            message=note,
        )
    finally:
        engine.dispose()
    return summary


def fail_run(run_id: str, message: str, cfg: Settings | None = None) -> None:
    """Mark a run failed unless validation already said it was rejected."""
    cfg = cfg or settings()
    engine = engine_for(cfg.warehouse_url)
    try:
        create_schema(engine)
        with engine.begin() as conn:
            conn.execute(
                mart_run.update()
                .where(mart_run.c.run_id == run_id, mart_run.c.status == "running")
                .values(status="failed", finished_at=_now(), message=message[:2000])
            )
            lock.free_run(conn, run_id)
    finally:
        engine.dispose()


def run_month(
    month: str,
    run_id: str,
    scheme_ref: str | None = None,
    reland: bool = False,
    cfg: Settings | None = None,
) -> dict[str, Any]:
    """The intake in one process (tests, benchmarks): what the DAG's land, validate and load do.
    The month (and the rest of its year, which the load holds) is free again afterwards, and a
    `score_step` of it takes them anew."""
    cfg = cfg or settings()
    manifest = land_step(month, run_id, scheme_ref=scheme_ref, reland=reland, cfg=cfg)
    loaded = load_step(validate_step(json.loads(json.dumps(manifest)), cfg), cfg)
    engine = engine_for(cfg.warehouse_url)
    try:
        lock.free_rest_of_year(engine, manifest["scheme_id"], month, run_id)
    finally:
        engine.dispose()
    return loaded


def due_periods(
    period: str | None, scheme: str | None, events: list[dict[str, Any]]
) -> list[tuple[str | None, str]]:
    """(scheme, period) pairs to close: the `period` param, else what the asset events announced,
    each once, shorter periods first (a quarter before the half and year that contain it)."""
    if period:
        return [(scheme, period)]
    pairs = {(e.get("scheme"), p) for e in events for p in e.get("periods", [])}
    if not pairs:
        raise ValueError("no period: pass the `period` param (YYYY-Qn, YYYY-H1/H2 or YYYY)")
    order = {"month": 0, "quarter": 1, "half": 2, "year": 3}
    return sorted(
        pairs, key=lambda sp: (str(sp[0]), sp[1][:4], order[parse_period(sp[1])[0]], sp[1])
    )
