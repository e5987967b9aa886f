"""Two runs of one month never interleave: the hold per scheme and month (or period), on SQLite
and PostgreSQL, through the steps the DAG tasks call."""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from etl import lock
from etl.generate import generate
from etl.pipeline import (
    close_step,
    fail_run,
    land_step,
    load_step,
    score_batch_step,
    score_finish_step,
    score_plan_step,
    validate_step,
)
from etl.warehouse import create_schema, engine_for, run_lock
from tests.helpers import snapshot, table


def _land(run_id: str) -> dict:
    return json.loads(json.dumps(land_step("2026-03", run_id, scheme_ref="demo")))


def _finish(manifest: dict) -> None:
    loaded = load_step(validate_step(manifest))
    batches = [score_batch_step(b) for b in score_plan_step(loaded)]
    score_finish_step(loaded, batches)


def _holds(url: str) -> list[list[str]]:
    return table(url, "run_lock")[["subject", "run_id"]].values.tolist()


def test_a_second_run_of_the_month_is_turned_away_until_the_first_has_scored(kaohe):
    generate(Path(kaohe.inbox), 30, "2026-03", 1, seed=5)
    first = _land("run-a")
    with pytest.raises(lock.MonthBusy) as busy:
        _land("run-b")
    said = str(busy.value)
    assert "2026-03 of scheme demo-2026 is being processed by run run-a (kaohe_monthly)" in said
    assert "mark it failed in Airflow" in said
    assert table(kaohe.warehouse_url, "mart_run")["run_id"].tolist() == ["run-a"]  # b left no trace

    loaded = load_step(validate_step(first))
    with pytest.raises(lock.MonthBusy):  # still held between load and scoring
        _land("run-b")
    batches = [score_batch_step(b) for b in score_plan_step(loaded)]
    score_finish_step(loaded, batches)
    assert _holds(kaohe.warehouse_url) == []  # scoring done: the month is free
    done = snapshot(kaohe.warehouse_url, skip=("mart_run", "landing_log"))

    _finish(_land("run-b"))
    assert snapshot(kaohe.warehouse_url, skip=("mart_run", "landing_log")) == done
    assert _holds(kaohe.warehouse_url) == []


def test_a_step_of_the_first_run_fails_if_another_run_has_taken_the_month_over(kaohe):
    generate(Path(kaohe.inbox), 30, "2026-03", 1, seed=5)
    first = _land("run-a")
    fail_run("run-a", "land: the worker was lost")  # the failure callback frees the month
    assert _holds(kaohe.warehouse_url) == []
    _land("run-b")
    with pytest.raises(lock.MonthBusy, match="processed by run run-b"):
        validate_step(first)  # a task of the failed run, run late, must not load over run b
    assert table(kaohe.warehouse_url, "roster").empty


def test_a_retried_step_keeps_its_hold_and_a_month_and_another_month_run_side_by_side(kaohe):
    generate(Path(kaohe.inbox), 30, "2026-03", 2, seed=5)
    _land("run-a")
    again = _land("run-a")  # Airflow retried `land`
    april = json.loads(json.dumps(land_step("2026-04", "run-c", scheme_ref="demo")))
    assert sorted(_holds(kaohe.warehouse_url)) == [["2026-03", "run-a"], ["2026-04", "run-c"]]
    _finish(april)  # first: March's scoring holds April too (the next test)
    _finish(again)
    assert _holds(kaohe.warehouse_url) == []


@pytest.mark.parametrize("how", ["run log says it ended", "not renewed for the lease"])
def test_an_abandoned_hold_is_taken_over(kaohe, how):
    generate(Path(kaohe.inbox), 30, "2026-03", 1, seed=5)
    _land("run-a")
    engine = engine_for(kaohe.warehouse_url)
    with engine.begin() as conn:
        if how == "run log says it ended":  # e.g. validation rejected the month, then a crash
            conn.execute(sa.text("update mart_run set status = 'rejected' where run_id = 'run-a'"))
        else:  # the run died and no callback ran
            old = dt.datetime.now(dt.UTC) - lock.LEASE - dt.timedelta(minutes=1)
            conn.execute(run_lock.update().values(renewed_at=old))
    engine.dispose()
    _finish(_land("run-b"))
    assert _holds(kaohe.warehouse_url) == []
    assert table(kaohe.warehouse_url, "mart_monthly_score")["person_id"].nunique() == 30


def test_rescoring_a_month_waits_for_a_run_of_a_later_month_of_its_year(kaohe):
    # a March rerun rescores April; were April's own run to load and score April meanwhile, one
    # of the two would overwrite the other's April with scores from what it had not seen
    generate(Path(kaohe.inbox), 30, "2026-03", 2, seed=5)
    _finish(_land("march"))
    logs = ("mart_run", "landing_log", "landed_file", "run_lock")  # April's landing adds to them
    before = snapshot(kaohe.warehouse_url, skip=logs)
    april = json.loads(json.dumps(land_step("2026-04", "april", scheme_ref="demo")))
    validation = validate_step(_land("march-again"))
    busy = "2026-04 of scheme demo-2026 is being processed by run april"
    with pytest.raises(lock.MonthBusy, match=busy):
        load_step(validation)  # turned away before anything of March is loaded
    assert snapshot(kaohe.warehouse_url, skip=logs) == before
    assert sorted(_holds(kaohe.warehouse_url)) == [["2026-03", "march-again"], ["2026-04", "april"]]
    _finish(april)
    loaded = load_step(validation)  # Airflow's retry
    batches = [score_batch_step(b) for b in score_plan_step(loaded)]
    # from March's load to the end of its scoring, April is held by it: April's next run waits
    with pytest.raises(
        lock.MonthBusy, match="2026-04 of scheme demo-2026 is being processed by run march-again"
    ):
        land_step("2026-04", "april-again", scheme_ref="demo")
    assert score_finish_step(loaded, batches)["months"] == ["2026-03", "2026-04"]
    assert _holds(kaohe.warehouse_url) == []


def test_of_runs_racing_for_one_month_exactly_one_takes_it(kaohe):
    engine = engine_for(kaohe.warehouse_url)
    create_schema(engine)
    won: list[str] = []
    refused: list[str] = []

    def race(run_id: str) -> None:
        try:
            lock.take(engine, "demo-2026", "2026-03", run_id, "kaohe_monthly")
            won.append(run_id)
        except lock.MonthBusy:
            refused.append(run_id)

    threads = [threading.Thread(target=race, args=(f"run-{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    holder = table(kaohe.warehouse_url, "run_lock", "where subject = '2026-03'")["run_id"]
    engine.dispose()
    assert len(won) == 1 and len(refused) == 5
    assert holder.tolist() == won


def test_closing_a_period_holds_it_and_is_turned_away_while_another_close_runs(kaohe):
    generate(Path(kaohe.inbox), 30, "2026-01", 3, seed=5)
    for m in ("2026-01", "2026-02", "2026-03"):
        _finish(json.loads(json.dumps(land_step(m, f"m-{m}", scheme_ref="demo"))))
    engine = engine_for(kaohe.warehouse_url)
    lock.take(engine, "demo-2026", "2026-Q1", "close-a", "kaohe_period_close")
    engine.dispose()
    with pytest.raises(
        lock.MonthBusy, match="2026-Q1 of scheme demo-2026 is being processed by run"
    ):
        close_step("2026-Q1", "close-b", "demo")
    assert table(kaohe.warehouse_url, "mart_period_score").empty
    fail_run("close-a", "killed")
    close_step("2026-Q1", "close-b", "demo")
    assert _holds(kaohe.warehouse_url) == []
    people = set(table(kaohe.warehouse_url, "roster")["person_id"])  # joiners included
    assert set(table(kaohe.warehouse_url, "mart_period_score")["person_id"]) == people
