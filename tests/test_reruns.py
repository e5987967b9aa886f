"""Ten reruns of a month and of a period leave every table as one run left it, to the last digit
(the run log and the landing log, which record each run, aside), on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from etl.generate import generate
from etl.pipeline import close_step, run_month, score_step
from tests.helpers import snapshot, table

RERUNS = 10


def test_ten_reruns_of_a_month_and_of_its_quarter_change_nothing(kaohe):
    url = kaohe.warehouse_url
    generate(Path(kaohe.inbox), 24, "2026-01", 3, seed=17)
    for m in ("2026-01", "2026-02", "2026-03"):
        score_step(run_month(m, f"run-{m}", "demo"))
    close_step("2026-Q1", "close-1", "demo")
    once = snapshot(url)
    assert len(once["mart_monthly_score"]) > 0 and len(once["mart_period_score"]) > 0

    for i in range(RERUNS):  # February again: it recomputes February, March and the quarter
        scored = score_step(run_month("2026-02", f"rerun-{i}", "demo"))
        assert scored["months"] == ["2026-02", "2026-03"] and scored["periods"] == ["2026-Q1"]
        close_step("2026-Q1", f"reclose-{i}", "demo")
        assert snapshot(url) == once, f"rerun {i + 1} changed a table"
    for i in range(RERUNS):
        close_step("2026-Q1", f"close-again-{i}", "demo")
    assert snapshot(url) == once
    runs = table(url, "mart_run")
    assert len(runs) == 3 + 1 + 2 * RERUNS + RERUNS  # every run logged once, none lost
    assert set(runs["status"]) == {"success"}
