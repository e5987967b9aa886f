"""What the DAG files share, kept light: the DAG processor imports this on every parse."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Asset, Param

from etl.config import pii_masked, redact

# updated by kaohe_monthly when periods are due for closing; extra: {"scheme", "periods"}
PERIODS_DUE = Asset(name="kaohe_periods_due", uri="kaohe://periods-due")


def mark_failed(context: Any) -> None:
    """on_failure_callback: the run's row in mart_run says failed, with the task and the error,
    any password in the error replaced by *** (the task log masks it; mart_run is ours to)."""
    from etl.pipeline import fail_run

    fail_run(context["run_id"], redact(f"{context['ti'].task_id}: {context.get('exception')}"))


def default_args(env: dict[str, str] | None = None) -> dict[str, Any]:
    """What every kaohe task is: transient errors are retried; a failure is written to mart_run.

    What a task returns stays out of its log unless KAOHE_MASK_PII is off: it may hold personal
    data (the validation's example rows quote the roster: names, e-mail addresses; a delivery
    report names recipients), and Airflow logs it in full otherwise ("Done. Returned value
    was: ..."). The values still pass on as XComs.
    """
    return {
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "on_failure_callback": mark_failed,
        "show_return_value_in_logs": not pii_masked(env),
    }


DEFAULT_ARGS = default_args()

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
