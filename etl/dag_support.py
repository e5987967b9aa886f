"""What the DAG files share, kept light: the DAG processor imports this on every parse."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import Asset

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
