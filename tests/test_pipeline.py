"""The intake on a real warehouse (SQLite, and PostgreSQL with KAOHE_TEST_PG_URL): exact row counts,
reruns that change nothing, rejections that keep the previous load, and landed bytes that win over
a changed inbox."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from etl.generate import generate
from etl.pipeline import SourceRejected, run_month
from tests.helpers import snapshot, table, write

TABLE_OF = {
    "roster": "roster",
    "attendance": "attendance",
    "cases": "case_snapshot",
    "surveys": "survey_response",
    "adjustments": "adjustment",
    "nominations": "nomination",
}


def test_generated_month_loads_exactly_the_generated_rows(kaohe):
    counts = generate(Path(kaohe.inbox), 80, "2026-03", 1, seed=3)["2026-03"]
    result = run_month("2026-03", "run-1", "demo")
    for source, n in counts.items():
        got = table(kaohe.warehouse_url, TABLE_OF[source], "where month = '2026-03'")
        assert len(got) == n, source
        assert result["loaded"][source] == n
    assert table(kaohe.warehouse_url, "mart_quarantine").empty
    run = table(kaohe.warehouse_url, "mart_run")
    assert run[["run_id", "status", "rows_in", "rows_quarantined"]].values.tolist() == [
        ["run-1", "success", sum(counts.values()), 0]
    ]
    report = Path(result["report"]).read_text(encoding="utf-8")
    assert all(source in report for source in counts)  # a validation result per source


def test_three_more_runs_leave_every_table_identical(kaohe):
    generate(Path(kaohe.inbox), 40, "2026-03", 1, seed=4)
    run_month("2026-03", "run-1", "demo")
    first = snapshot(kaohe.warehouse_url)
    files = len(table(kaohe.warehouse_url, "landing_log"))
    for i in range(2, 5):
        run_month("2026-03", f"run-{i}", "demo")
    assert snapshot(kaohe.warehouse_url) == first
    assert len(table(kaohe.warehouse_url, "mart_run")) == 4
    assert len(table(kaohe.warehouse_url, "landing_log")) == 4 * files
    assert len(table(kaohe.warehouse_url, "landed_file")) == files  # never landed twice


def _small_month(inbox: Path, month: str = "2026-03", extra_att: str = "") -> None:
    people = [f"{i:03d}" for i in range(1, 31)]
    write(
        inbox,
        month,
        "roster.csv",
        "工号,姓名,单位编码,单位,部门编码,部门,人员类别\n"
        + "".join(f"{p},人员{p},u1,某局,d1,综合科,staff\n" for p in people),
    )
    write(
        inbox,
        month,
        "attendance.csv",
        "工号,日期,考勤结果,履职填报\n"
        + "".join(f"{p},{month}-0{d},正常,1\n" for p in people for d in (2, 3))
        + extra_att,
        "gb18030",
    )


@pytest.mark.parametrize(
    "bad_name,bad_text,why",
    [
        ("attendance-late.csv", "工号,日期\n001,2026-03-04\n", "required column missing: status"),
        ("attendance-late.xlsx", "not a workbook", "cannot be read"),
    ],
)
def test_rejected_source_leaves_the_loaded_month_untouched(kaohe, bad_name, bad_text, why):
    inbox = Path(kaohe.inbox)
    _small_month(inbox)
    run_month("2026-03", "run-1", "demo")
    before = snapshot(kaohe.warehouse_url, skip=("landed_file",))  # the bad file stays landed
    write(inbox, "2026-03", bad_name, bad_text)
    with pytest.raises(SourceRejected) as err:
        run_month("2026-03", "run-2", "demo")
    assert bad_name in str(err.value) and why in str(err.value)
    assert snapshot(kaohe.warehouse_url, skip=("landed_file",)) == before
    runs = table(kaohe.warehouse_url, "mart_run").set_index("run_id")
    assert runs.loc["run-2", "status"] == "rejected" and why in runs.loc["run-2", "message"]


def test_too_many_bad_rows_reject_the_month(kaohe):
    inbox = Path(kaohe.inbox)
    _small_month(inbox, extra_att="".join(f"{i:03d},2026-03-09,摸鱼,1\n" for i in range(1, 5)))
    with pytest.raises(SourceRejected, match="bad status"):
        run_month("2026-03", "run-1", "demo")
    assert table(kaohe.warehouse_url, "attendance").empty


def test_a_few_bad_rows_are_quarantined_and_the_rest_loaded(kaohe):
    inbox = Path(kaohe.inbox)
    _small_month(inbox, extra_att="999,2026-03-04,正常,1\n001,2026-03-02,迟到,1\n")
    result = run_month("2026-03", "run-1", "demo")
    verdicts = json.loads((Path(result["report"]).parent / "summary.json").read_text("utf-8"))
    assert verdicts["attendance"]["gx_success"] is False  # GX's report agrees with the quarantine
    assert verdicts["roster"]["gx_success"] is True
    q = table(kaohe.warehouse_url, "mart_quarantine").sort_values("line")
    assert q[["source", "file", "line"]].values.tolist() == [
        ["attendance", "attendance.csv", 62],
        ["attendance", "attendance.csv", 63],
    ]
    assert "unknown person" in q.reason.iloc[0] and "duplicate" in q.reason.iloc[1]
    assert len(table(kaohe.warehouse_url, "attendance")) == 60


def test_a_landed_file_changed_in_the_inbox_does_not_change_a_rerun(kaohe):
    inbox = Path(kaohe.inbox)
    _small_month(inbox)
    run_month("2026-03", "run-1", "demo")
    before = snapshot(kaohe.warehouse_url)
    roster = inbox / "2026-03" / "roster.csv"
    roster.write_text(roster.read_text(encoding="utf-8").replace("人员001", "改名"), "utf-8")
    result = run_month("2026-03", "run-2", "demo")
    assert snapshot(kaohe.warehouse_url) == before
    assert any("roster.csv: changed in the inbox" in n for n in result["notes"])
    run_month("2026-03", "run-3", "demo", reland=True)  # the explicit correction
    names = table(kaohe.warehouse_url, "roster")["name"].tolist()
    assert "改名" in names and "人员001" not in names


CASES_HEAD = "case_id,dept_id,judge_id,panel_ids,filed_on,closed_on,procedure,outcome\n"


def test_cases_keep_their_latest_state_when_an_earlier_month_is_reloaded(kaohe):
    inbox = Path(kaohe.inbox)
    for m in ("2026-01", "2026-02"):
        _small_month(inbox, m)
    write(inbox, "2026-01", "cases.csv", CASES_HEAD + "A1,d1,001,,2025-12-01,,simple,\n")
    write(
        inbox,
        "2026-02",
        "cases.csv",
        CASES_HEAD + "A1,d1,001,,2025-12-01,2026-02-10,simple,judgment\n",
    )
    run_month("2026-01", "r1", "demo")
    run_month("2026-02", "r2", "demo")
    run_month("2026-01", "r3", "demo")  # an operator reruns January
    cases = table(kaohe.warehouse_url, "cases")
    assert cases[["case_id", "as_of_month", "outcome"]].values.tolist() == [
        ["A1", "2026-02", "judgment"]
    ]
    assert str(cases.closed_on.iloc[0])[:10] == "2026-02-10"
