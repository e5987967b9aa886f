"""What the DAG files share, kept light: the DAG processor imports this on every parse."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Asset, Param

# updated by kaohe_monthly when periods are due for closing; extra: {"scheme", "periods"}
PERIODS_DUE = Asset(name="kaohe_periods_due", uri="kaohe://periods-due")


def mark_failed(context: Any) -> None:
    """on_failure_callback: the run's row in mart_run says failed, with the task and the error."""
    from etl.pipeline import fail_run

    fail_run(context["run_id"], f"{context['ti'].task_id}: {context.get('exception')}")


# every kaohe task: transient errors are retried; a failure is written to mart_run
DEFAULT_ARGS = {
    "retries": 2,
    "retry_delay": timedelta(minutes=1),
    "on_failure_callback": mark_failed,
}

# what every kaohe DAG is: one run at a time, no backfill of missed intervals, Beijing time
DAG_COMMON: dict[str, Any] = {
    "start_date": pendulum.datetime(2026, 1, 1, tz="Asia/Shanghai"),
    "catchup": False,
    "max_active_runs": 1,
    "tags": ["kaohe"],
    "default_args": DEFAULT_ARGS,
}


def scheme_param(default: str) -> Param:
    """The `scheme` param every kaohe DAG takes: a scheme id or a path to its file."""
    return Param(None, type=["null", "string"], description=f"scheme id or path; {default}")
