"""kaohe_period_close: period scores, grades, pacesetters and the bonus allocation of a period.

Data-aware: runs when `kaohe_monthly` announces that a quarter, half or year has ended (or that a
rerun changed a month of a closed period) through the PERIODS_DUE asset, and closes every period the
announcements name. A manual run takes `period` (and `scheme`). Each period is one transaction;
closing it again replaces it.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param, dag, get_current_context, task

from etl.dag_support import DAG_COMMON, PERIODS_DUE, scheme_param

PERIOD_PATTERN = r"^\d{4}(-(Q[1-4]|H[12]|0[1-9]|1[0-2]))?$"


@dag(
    dag_id="kaohe_period_close",
    schedule=[PERIODS_DUE],
    params={
        "period": Param(
            None,
            type=["null", "string"],
            pattern=PERIOD_PATTERN,
            description="YYYY-Qn, YYYY-H1, YYYY-H2 or YYYY; default: what kaohe_monthly announced",
        ),
        "scheme": scheme_param("with `period`; default: KAOHE_SCHEME or the demo"),
    },
    doc_md=__doc__,
    **DAG_COMMON,
)
def kaohe_period_close() -> None:
    @task
    def close() -> list[dict[str, Any]]:
        from etl.pipeline import close_step, due_periods

        ctx = get_current_context()
        params = ctx["params"]
        events = [
            e.extra for evs in (ctx.get("triggering_asset_events") or {}).values() for e in evs
        ]
        work = due_periods(params.get("period"), params.get("scheme"), events)
        return [close_step(p, ctx["run_id"], scheme_ref=s) for s, p in work]

    close()


kaohe_period_close()
