"""Scoring on a real warehouse (SQLite, and PostgreSQL with KAOHE_TEST_PG_URL): marts that explain
themselves, reruns that replace, and a quarter closed from the months."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

import etl.score as score
import etl.warehouse as warehouse
from etl.bulk import bulk_read, reading
from etl.generate import generate
from etl.load import load_month
from etl.pipeline import (
    close_step,
    run_month,
    score_batch_step,
    score_finish_step,
    score_plan_step,
    score_step,
)
from etl.score import _aggregated_history, delivered_rounds, unit_batches
from etl.warehouse import (
    attendance,
    attendance_month,
    case_month,
    case_snapshot,
    create_schema,
    engine_for,
    roster,
    survey_round,
)
from reports.publish import pdf_batches
from scoring.measures import attendance_counts, case_measures
from scoring.numbers import quota
from scoring.scheme import SCHEME_DIR as ROOT_SCHEMES
from scoring.scheme import load_scheme
from tests.helpers import snapshot, table


def _score(month: str, run: str) -> dict:
    loaded = run_month(month, run, "demo")
    return score_step(loaded)


@pytest.fixture
def quarter(kaohe):
    """Three generated months, taken in and scored in order."""
    generate(Path(kaohe.inbox), 60, "2026-01", 3, seed=11)
    out = [_score(m, f"run-{m}") for m in ("2026-01", "2026-02", "2026-03")]
    return kaohe, out


def test_months_are_scored_and_every_total_is_explained(quarter):
    kaohe, results = quarter
    assert [r["months"] for r in results] == [["2026-01"], ["2026-02"], ["2026-03"]]
    assert results[2]["periods"] == ["2026-Q1"]  # March ends the first quarter
    url = kaohe.warehouse_url
    monthly = table(url, "mart_monthly_score")
    roster = table(url, "roster")
    # everybody listed and active on a day of the month has exactly one monthly score
    last_day = {"2026-01": "2026-01-31", "2026-02": "2026-02-28", "2026-03": "2026-03-31"}
    for m, got in monthly.groupby("month"):
        r = roster[roster.month == m]
        start, end = r.active_from.astype(str), r.active_to.astype(str)
        active = (r.active_from.isna() | (start <= last_day[m])) & (
            r.active_to.isna() | (end >= f"{m}-01")
        )
        assert sorted(got.person_id) == sorted(r.person_id[active])
    comp = table(url, "mart_component_score")
    ind = table(url, "mart_indicator_score")
    # a component's score is the sum of its indicators
    sums = ind.groupby(["month", "person_id", "component_id"])["score"].sum()
    have = comp.set_index(["month", "person_id", "component_id"])["score"]
    assert (have.reindex(sums.index) - sums).abs().max() < 1e-9
    # a total is Σ weight × component score + adjustments, clamped to the score range [0, 120]
    weighted = (comp.weight * comp.score).groupby([comp.month, comp.person_id]).sum()
    m = monthly.set_index(["month", "person_id"])
    expect = (weighted.reindex(m.index).fillna(0) + m.adjustment_total).clip(0, 120)
    assert (expect - m.total_score).abs().max() < 1e-9
    # the quarter's survey round is reported by relation, delivered in March, never by rater
    surveys = table(url, "mart_survey_result")
    assert set(surveys.month) == {"2026-03"} and set(surveys.survey_period) == {"2026-Q1"}
    assert not any("rater" in c and c != "raters" for c in surveys.columns)
    responses = table(url, "survey_response")
    per_relation = responses.groupby(["survey_id", "ratee_id", "relation"]).rater_hash.nunique()
    got = surveys.set_index(["survey_id", "person_id", "relation"]).raters
    assert (got.groupby(level=[0, 1, 2]).max() == per_relation.rename_axis(got.index.names)).all()
    # ranks start at 1 in every category and month; red flags go to rank 1
    assert (monthly.groupby(["month", "category"])["rank_in_scope"].min() == 1).all()
    assert (monthly.red_flag.astype(bool) == (monthly.rank_in_scope == 1)).all()


def test_rerunning_an_earlier_month_rescores_the_later_ones_and_changes_nothing(quarter):
    kaohe, _ = quarter
    before = snapshot(kaohe.warehouse_url)
    again = _score("2026-02", "rerun-02")
    assert again["months"] == ["2026-02", "2026-03"]
    assert snapshot(kaohe.warehouse_url) == before


def test_closing_the_quarter_grades_within_quotas(quarter):
    kaohe, _ = quarter
    summary = close_step("2026-Q1", "close-q1", "demo")
    assert summary["months_missing"] == []
    url = kaohe.warehouse_url
    period = table(url, "mart_period_score")
    monthly = table(url, "mart_monthly_score")
    mean = monthly.groupby("person_id")["total_score"].mean()
    months = monthly.groupby("person_id").size()
    p = period.set_index("person_id")
    assert (p.months == months.reindex(p.index)).all()
    assert (p.mean_monthly - mean.reindex(p.index)).abs().max() < 1e-9
    for _, g in period[period.graded.astype(bool)].groupby("category"):
        n = len(g)
        assert (g.grade == "excellent").sum() <= quota(n, 0.15) + g.placed_by_tiebreak.sum()
        assert g.grade.notna().all()
    # a rerun of a quarter month names the closed quarter to be closed again
    assert _score("2026-03", "rerun-03")["periods"] == ["2026-Q1"]
    before = table(url, "mart_period_score")
    close_step("2026-Q1", "close-q1-again", "demo")
    assert table(url, "mart_period_score").equals(before)


def test_look_back_from_aggregated_history_equals_reading_every_snapshot(quarter):
    kaohe, _ = quarter
    url = kaohe.warehouse_url
    engine = engine_for(url)
    snaps = bulk_read(engine, case_snapshot)
    engine.dispose()
    monthly = table(url, "mart_monthly_score")
    direct = case_measures(snaps, monthly[["month", "person_id"]], 365)
    direct = direct[direct.month == "2026-03"].set_index("person_id")
    ind = table(url, "mart_indicator_score", "where month = '2026-03'")
    stored = ind[ind.indicator_id == "acceptance"].set_index("person_id")["actual"]
    assert len(stored) > 5
    want = direct.loc[stored.index, "cases.acceptance_rate"]
    assert ((stored - want).abs().fillna(0) < 1e-12).all() and stored.isna().equals(want.isna())


def test_quarter_bonus_and_pacesetters_reach_their_marts(kaohe, tmp_path):
    """A scheme that decides pacesetters and the bonus on the quarter: every unit's allocation
    sums to its pool to the cent, and nominations beyond a unit's cap are kept with a reason."""
    text = (ROOT_SCHEMES / "demo.yaml").read_text(encoding="utf-8")
    text = text.replace("pacesetters:\n  period: half", "pacesetters:\n  period: quarter")
    text = text.replace("bonus:\n  period: year", "bonus:\n  period: quarter")
    scheme = tmp_path / "quarterly.yaml"
    scheme.write_text(text, encoding="utf-8")
    generate(Path(kaohe.inbox), 60, "2026-01", 3, seed=13)
    for m in ("2026-01", "2026-02", "2026-03"):
        score_step(run_month(m, f"q-{m}", str(scheme)))
    close_step("2026-Q1", "close", str(scheme))
    url = kaohe.warehouse_url
    period = table(url, "mart_period_score")
    bonus = table(url, "mart_bonus_allocation")
    graded = period[period.graded.astype(bool)]
    # per_capita ¥6,000 × the unit's graded headcount, in cents, allocated exactly
    pools = graded.groupby("unit_id").size() * 6000 * 100
    assert bonus.groupby("unit_id").amount_cents.sum().to_dict() == pools.to_dict()
    assert set(bonus.person_id) == set(graded.person_id)
    # pacesetters: floor(10 % of each category's graded, non-vetoed people) by rank
    pace = period[period.pacesetter.astype(bool)]
    by_rank = pace[pace.pacesetter_route == "rank"].groupby("category").size()
    eligible = graded[~graded.veto.astype(bool)].groupby("category").size()
    assert set(by_rank.index) == set(eligible[eligible >= 10].index)
    assert (by_rank == eligible[by_rank.index] * 10 // 100).all()


def test_counts_kept_by_the_load_equal_the_counts_of_the_rows_and_stand_in_for_them(quarter):
    """attendance_month and case_month hold what scoring needs of the days and the snapshots; a
    warehouse loaded without them (an earlier kaohe) is counted from the rows, to the same marts."""
    kaohe, _ = quarter
    url = kaohe.warehouse_url
    engine = engine_for(url)
    days = bulk_read(engine, attendance)
    snaps = bulk_read(engine, case_snapshot)
    key = ["month", "person_id"]
    kept = table(url, "attendance_month").drop(columns="scheme_id").sort_values(key)
    counted = attendance_counts(days).sort_values(key)
    assert len(kept) == days.groupby(key).ngroups > 100
    assert kept.reset_index(drop=True).equals(counted.reset_index(drop=True).astype(kept.dtypes))
    history = table(url, "case_month").drop(columns="scheme_id").sort_values(key)
    with reading(engine) as read:
        summed = _aggregated_history(read, "demo-2026", ["2026-01", "2026-02", "2026-03"])
    summed = summed.sort_values(key).reset_index(drop=True).astype(history.dtypes)
    assert len(history) > 5 and history.reset_index(drop=True).equals(summed)
    assert history.reversed.sum() + history.remanded.sum() > 0
    assert len(snaps) > len(history)
    kept_tables = ("attendance_month", "case_month")
    before = snapshot(url, skip=kept_tables)
    with engine.begin() as conn:
        conn.execute(attendance_month.delete())
        conn.execute(case_month.delete())
    engine.dispose()
    assert _score("2026-02", "rerun-without-counts")["months"] == ["2026-02", "2026-03"]
    assert snapshot(url, skip=kept_tables) == before


def test_scoring_by_unit_batches_equals_scoring_everyone_at_once(kaohe, monkeypatch):
    """The DAG's mapped path (plan, one task per unit batch, then the whole-scheme step) writes
    exactly what one piece writes: the court's measures that read a division's cases, a judge's
    year (closure balance) and the panels, a judge who changed court in February included."""
    generate(Path(kaohe.inbox), 90, "2026-01", 2, seed=21, scheme=load_scheme("court"))
    for m in ("2026-01", "2026-02"):
        score_step(run_month(m, f"run-{m}", "court"))
    url = kaohe.warehouse_url
    roster_ = table(url, "roster")
    judges = set(table(url, "case_snapshot", "where month = '2026-02'").judge_id)
    feb = roster_[(roster_.month == "2026-02") & roster_.person_id.isin(judges)]
    mover = feb.iloc[0]
    there = roster_[(roster_.month == "2026-02") & (roster_.unit_id != mover.unit_id)].iloc[0]
    engine = engine_for(url)
    with engine.begin() as conn:
        conn.execute(
            roster.update()
            .where(roster.c.month == "2026-02", roster.c.person_id == mover.person_id)
            .values(
                unit_id=there.unit_id,
                unit_name=there.unit_name,
                dept_id=there.dept_id,
                dept_name=there.dept_name,
            )
        )
    engine.dispose()
    loaded = {"month": "2026-01", "scheme_ref": "court", "run_id": "batched"}
    assert score_step(loaded)["months"] == ["2026-01", "2026-02"]
    at_once = snapshot(url)

    monkeypatch.setenv("KAOHE_BATCH_PEOPLE", "1")  # every unit a batch of its own
    batches = score_plan_step(loaded)
    units = [u for b in batches for u in b["units"]]
    assert len(batches) == len(units) >= 2 and units == sorted(set(roster_.unit_id))
    parts = [score_batch_step(b) for b in batches]
    people = table(url, "mart_monthly_score", "where month = '2026-02'")
    assert sum(p["people"]["2026-02"] for p in parts) == len(people)
    assert score_finish_step(loaded, parts)["months"] == ["2026-01", "2026-02"]
    assert snapshot(url) == at_once
    assert not Path(batches[0]["stage"]).exists()  # the batches' files go once they are in


def test_unit_batches_keep_units_whole_in_unit_order():
    sizes = pd.Series({"b": 3, "a": 5, "c": 1, "d": 7})
    # a fills a batch (5 ≥ 5); b, c and d go together: the batch holds 3, then 4 (< 5) when d comes
    assert unit_batches(sizes, 5) == [["a"], ["b", "c", "d"]]
    assert unit_batches(sizes, 1) == [["a"], ["b"], ["c"], ["d"]]
    assert unit_batches(sizes.iloc[:0], 5) == [[]]  # a mapped task always has one batch to run
    docs = [("x", "u2"), ("y", "u1"), ("z", "u2")]
    jobs = [(Path(f"{n}.html"), Path(f"{n}.pdf"), u) for n, u in docs]
    by_unit = [[["y.html", "y.pdf"]], [["x.html", "x.pdf"], ["z.html", "z.pdf"]]]
    assert pdf_batches(jobs, 1) == by_unit
    assert pdf_batches([], 1) == [[]]


@pytest.mark.parametrize("kind", ["str", "category"])
def test_a_round_is_reported_in_the_first_scored_month_that_delivered_it(kind):
    # S1 came with March and again with April; S2 only with April; M3 (a monthly round of March)
    # came with May's extract, which is not being scored: read for its period, not delivered
    ratings = pd.DataFrame(
        {
            "survey_id": ["S1", "S1", "S1", "S2", "S2", "M3"],
            "period": ["2026-Q1", "2026-Q1", "2026-Q1", "2026-Q1", "2026-Q1", "2026-03"],
            "month": ["2026-04", "2026-03", "2026-04", "2026-04", "2026-04", "2026-05"],
            "score": [90.0, 80.0, 70.0, 60.0, 50.0, 40.0],
        }
    ).astype({"survey_id": kind, "period": kind, "month": kind})
    rounds = delivered_rounds(ratings, ["2026-03", "2026-04"])
    assert rounds.to_dict("records") == [
        {"survey_id": "S1", "period": "2026-Q1", "month": "2026-03"},
        {"survey_id": "S2", "period": "2026-Q1", "month": "2026-04"},
    ]
    assert delivered_rounds(ratings, ["2026-06"]).empty


def test_a_failure_while_scoring_leaves_no_read_of_the_warehouse_running(
    warehouse_url, monkeypatch
):
    # the ratings are read on a thread of their own; should the rest fail first, the call waits
    # for that read before it raises, so nothing holds the warehouse file once it has returned
    # (an engine connection opened next must not meet an ADBC reader of the same SQLite file)
    engine = engine_for(warehouse_url)
    create_schema(engine)
    finished = []

    def slow_read(read, sid, months):
        time.sleep(0.5)
        finished.append(True)
        return {}

    def broken(*args, **kwargs):
        raise RuntimeError("the people's part failed")

    monkeypatch.setattr(score, "_survey_inputs", slow_read)
    monkeypatch.setattr(score, "unit_parts", broken)
    with pytest.raises(RuntimeError, match="people's part"):
        score.score_months(engine, load_scheme("demo"), "2026-03")
    assert finished == [True]
    assert not [t for t in threading.enumerate() if t.name.startswith("kaohe-surveys")]
    monkeypatch.setattr(score, "_finish", broken)
    finished.clear()
    with pytest.raises(RuntimeError, match="people's part"):
        score.finish_months(engine, load_scheme("demo"), ["2026-03"], {})
    assert finished == [True]
    engine.dispose()


def _ratings(*rows: tuple[str, str, str], scheme_id: str = "s") -> pd.DataFrame:
    """Survey ratings, one per (round, period, month delivered), each by its own rater."""
    return pd.DataFrame(
        {
            "scheme_id": scheme_id,
            "month": [m for _, _, m in rows],
            "survey_id": [r for r, _, _ in rows],
            "rater_hash": [f"h{i}" for i in range(len(rows))],
            "ratee_id": "00001",
            "item": "de",
            "period": [p for _, p, _ in rows],
            "relation": "peer",
            "score": [float(90 - i) for i in range(len(rows))],
            "level": None,
            "source_file": "surveys.csv",
            "source_line": range(2, len(rows) + 2),
        }
    )


def _deliver(engine, ratings: pd.DataFrame) -> None:
    """The ratings loaded as the months' extracts deliver them (load_month: survey_round too)."""
    empty = pd.DataFrame()
    for (sid, month), rows in ratings.groupby(["scheme_id", "month"]):
        surveys = rows.drop(columns=["scheme_id", "month"])
        load_month(engine, sid, month, {"surveys": surveys}, empty, empty)


def test_a_month_reads_its_own_ratings_and_its_rounds_late_ones_each_once(warehouse_url):
    engine = engine_for(warehouse_url)
    create_schema(engine)
    rows = _ratings(
        ("F", "2026-02", "2026-02"),  # February's round: not March's
        ("M", "2026-03", "2026-03"),  # March's round, with March: once, not once per reason
        ("Q", "2026-Q1", "2026-03"),  # the quarter's round, delivered with March
        ("M", "2026-03", "2026-05"),  # March's round, late, with May
        ("Q", "2026-Q1", "2026-04"),  # the quarter's round, with April: April's, not March's
    )
    _deliver(engine, rows)
    with reading(engine) as read:
        data = score._survey_inputs(read, "s", ["2026-03"])
    engine.dispose()
    # each delivery has its own rater: h3 is March's round delivered late, with May
    got = data["surveys"].astype(str).sort_values("rater_hash")
    assert got[["survey_id", "period", "rater_hash"]].values.tolist() == [
        ["M", "2026-03", "h1"],
        ["Q", "2026-Q1", "h2"],
        ["M", "2026-03", "h3"],
    ]
    assert data["rounds"].to_dict("records") == [
        {"survey_id": "M", "period": "2026-03", "month": "2026-03"},
        {"survey_id": "Q", "period": "2026-Q1", "month": "2026-03"},
    ]


def test_the_load_records_which_months_delivered_which_rounds_and_an_older_warehouse_gets_it(
    warehouse_url, monkeypatch
):
    # scoring finds a round's ratings through survey_round; a warehouse loaded before it existed
    # gets it from the ratings it holds the first time the schema is created again
    engine = engine_for(warehouse_url)
    create_schema(engine)
    _deliver(
        engine,
        _ratings(
            ("M", "2026-03", "2026-03"),
            ("Q", "2026-Q1", "2026-03"),
            ("Q", "2026-Q1", "2026-03"),
            ("M", "2026-03", "2026-05"),
        ),
    )
    order = ["month", "survey_id", "period"]
    kept = table(warehouse_url, "survey_round").sort_values(order, ignore_index=True)
    assert kept.drop(columns="scheme_id").values.tolist() == [
        ["2026-03", "M", "2026-03", 1],
        ["2026-03", "Q", "2026-Q1", 2],
        ["2026-05", "M", "2026-03", 1],
    ]
    survey_round.drop(engine)
    # filling it fails (the process dies, the disk is full): no table is left, so the next run
    # fills it rather than scoring without the history
    with monkeypatch.context() as patched:
        names = ["scheme_id", "month", "survey_id", "period", "ratings"]
        broken = sa.select(*map(sa.column, names)).select_from(sa.table("no_such_table"))
        patched.setattr(warehouse, "rounds_of_ratings", lambda: broken)
        with pytest.raises(sa.exc.DBAPIError):
            create_schema(engine)
    assert not sa.inspect(engine).has_table("survey_round")
    create_schema(engine)
    engine.dispose()
    again = table(warehouse_url, "survey_round").sort_values(order, ignore_index=True)
    assert again.equals(kept)


def test_closing_a_quarter_reads_the_rounds_inside_it_wherever_they_were_delivered(
    warehouse_url,
):
    engine = engine_for(warehouse_url)
    create_schema(engine)
    scheme = load_scheme("demo")
    rows = _ratings(
        ("Y", "2025-Q4", "2026-01"),  # last year's round, delivered in January: not this quarter's
        ("F", "2026-02", "2026-02"),
        ("Q", "2026-Q1", "2026-03"),
        ("M", "2026-03", "2026-05"),  # late, with May
        ("Q", "2026-Q1", "2026-04"),  # the rest of the quarter's round, with April
        ("A", "2026-04", "2026-04"),  # April's round: the second quarter's
        scheme_id=scheme.id,
    )
    _deliver(engine, rows)
    with reading(engine) as read:
        got = score._period_inputs(read, scheme, "2026-Q1")["responses"].astype(str)
    engine.dispose()
    assert sorted(got["rater_hash"]) == ["h1", "h2", "h3", "h4"]
