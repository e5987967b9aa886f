"""The DAGs, run for real with dag.test(): kaohe_monthly (land -> validate -> load -> score ->
announce), kaohe_period_close and kaohe_publish."""

from __future__ import annotations

from pathlib import Path

import pendulum
import pytest
from pypdf import PdfReader

from etl.generate import generate
from tests.helpers import snapshot, table, write

pytestmark = pytest.mark.usefixtures("airflow_db")


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(Path(__file__).resolve().parent.parent / "dags"))
    assert bag.import_errors == {}
    return bag


@pytest.fixture(scope="module")
def monthly_dag(dagbag):
    return dagbag.get_dag("kaohe_monthly")


def _run(dag, month: str, day: int = 5, **conf):
    logical = pendulum.datetime(2026, 4, day, 2, tz="Asia/Shanghai")
    return dag.test(logical_date=logical, run_conf={"month": month, "scheme": "demo", **conf})


def _states(run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def test_monthly_run_loads_the_month_and_reruns_change_nothing(kaohe, monthly_dag, monkeypatch):
    counts = generate(Path(kaohe.inbox), 40, "2026-03", 1, seed=7)["2026-03"]
    run = _run(monthly_dag, "2026-03")
    assert str(run.state) == "success", _states(run)
    assert len(table(kaohe.warehouse_url, "attendance")) == counts["attendance"]
    assert len(table(kaohe.warehouse_url, "survey_response")) == counts["surveys"]
    first = snapshot(kaohe.warehouse_url)
    for day in (6, 7):
        assert str(_run(monthly_dag, "2026-03", day).state) == "success"
    assert snapshot(kaohe.warehouse_url) == first
    # scoring mapped over one batch per unit writes what one batch wrote
    monkeypatch.setenv("KAOHE_BATCH_PEOPLE", "1")
    run = _run(monthly_dag, "2026-03", 8)
    mapped = [ti for ti in run.get_task_instances() if ti.task_id == "score_units"]
    units = table(kaohe.warehouse_url, "roster").unit_id.nunique()
    assert len(mapped) == units >= 2 and {str(ti.state) for ti in mapped} == {"success"}
    assert str(run.state) == "success" and snapshot(kaohe.warehouse_url) == first
    runs = table(kaohe.warehouse_url, "mart_run")
    assert runs.status.tolist() == ["success"] * 4 and set(runs.dag_id) == {"kaohe_monthly"}


def test_month_defaults_to_the_data_interval(kaohe, monthly_dag):
    generate(Path(kaohe.inbox), 20, "2026-03", 1, seed=8)
    logical = pendulum.datetime(2026, 4, 5, 2, tz="Asia/Shanghai")  # the run of 5 April
    run = monthly_dag.test(logical_date=logical, run_conf={"scheme": "demo"})
    assert str(run.state) == "success", _states(run)
    assert table(kaohe.warehouse_url, "mart_run").month_or_period.tolist() == ["2026-03"]


def test_rejected_source_fails_validate_and_loads_nothing(kaohe, monthly_dag):
    inbox = Path(kaohe.inbox)
    generate(inbox, 20, "2026-03", 1, seed=9)
    write(inbox, "2026-03", "attendance-extra.csv", "工号,日期\n000001,2026-03-02\n")
    run = _run(monthly_dag, "2026-03")
    states = _states(run)
    assert str(run.state) == "failed"
    assert states["validate"] == "failed" and states["load"] == "upstream_failed"
    assert table(kaohe.warehouse_url, "roster").empty
    rec = table(kaohe.warehouse_url, "mart_run").iloc[0]
    assert rec.status == "rejected"
    assert "attendance-extra.csv" in rec.message and "required column missing" in rec.message


def _asset_events() -> list[dict]:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        return [e.extra for e in session.query(AssetEvent).order_by(AssetEvent.id)]


def test_quarter_end_is_scored_announced_and_closed(kaohe, monthly_dag, dagbag, monkeypatch):
    generate(Path(kaohe.inbox), 30, "2026-02", 2, seed=12)
    before = len(_asset_events())
    feb = _run(monthly_dag, "2026-02")
    assert str(feb.state) == "success" and _states(feb)["announce"] == "skipped"
    mar = _run(monthly_dag, "2026-03", day=6)
    states = _states(mar)
    assert states["score"] == "success" and states["announce"] == "success", states
    events = _asset_events()[before:]
    assert [e.get("periods") for e in events] == [["2026-Q1"]]
    monthly = table(kaohe.warehouse_url, "mart_monthly_score")
    assert sorted(monthly.month.unique()) == ["2026-02", "2026-03"]
    close = dagbag.get_dag("kaohe_period_close").test(
        run_conf={"period": "2026-Q1", "scheme": "demo"}
    )
    assert str(close.state) == "success", _states(close)
    period = table(kaohe.warehouse_url, "mart_period_score")
    assert set(period.person_id) == set(monthly.person_id) and set(period.period) == {"2026-Q1"}
    run = table(kaohe.warehouse_url, "mart_run")
    assert run[run.dag_id == "kaohe_period_close"].status.tolist() == ["success"]
    # the period's notices go out through kaohe_publish (KAOHE_MAIL=outbox); a rerun sends none
    publish = dagbag.get_dag("kaohe_publish")
    conf = {"period": "2026-Q1", "stage": "notify", "scheme": "demo"}
    monkeypatch.setenv("KAOHE_BATCH_PEOPLE", "10")  # PDFs mapped over batches of whole units
    first = publish.test(run_conf=conf)
    assert str(first.state) == "success", _states(first)
    mapped = [ti for ti in first.get_task_instances() if ti.task_id == "pdfs"]
    assert len(mapped) >= 2 and {str(ti.state) for ti in mapped} == {"success"}
    written = kaohe.output / "demo-2026" / "2026-Q1"
    assert len(list(written.glob("notice-*.pdf"))) == len(period)
    outbox = sorted((kaohe.output / "outbox").glob("*.eml"))
    roster = table(kaohe.warehouse_url, "roster").sort_values("month")
    last = roster.drop_duplicates("person_id", keep="last").set_index("person_id")
    with_email = last.loc[list(period.person_id), "email"].fillna("").str.contains("@")
    assert len(outbox) == with_email.sum() > 0
    again = publish.test(logical_date=pendulum.now("UTC").add(seconds=1), run_conf=conf)
    assert str(again.state) == "success", _states(again)
    assert sorted((kaohe.output / "outbox").glob("*.eml")) == outbox
    pubs = table(kaohe.warehouse_url, "mart_run")
    assert pubs[pubs.dag_id == "kaohe_publish"].status.tolist() == ["success", "success"]
    bulletin = PdfReader(kaohe.output / "demo-2026" / "2026-Q1" / "bulletin-court01.pdf")
    assert "公示稿" in "".join(p.extract_text() for p in bulletin.pages)
