"""kaohe_monthly: on the 5th of each month (Asia/Shanghai), take in the previous month's extracts.

land -> validate -> load -> plan_scoring -> score_units (mapped over unit batches of
KAOHE_BATCH_PEOPLE people, which Celery workers share) -> score (what needs the whole scheme:
surveys, ranks, red flags; every mart in one transaction) -> periods_due -> announce. Each task
calls one function of `etl.pipeline`; nothing else lives here. When a scored month ends a
quarter, half or year (or a rerun touches a closed period), `announce` updates the PERIODS_DUE
asset, which starts `kaohe_period_close`. Heavy imports stay inside the tasks: the DAG processor
parses this file often.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import (
    CronDataIntervalTimetable,
    Metadata,
    Param,
    dag,
    get_current_context,
    task,
)
from airflow.sdk.exceptions import AirflowFailException

from etl.dag_support import DAG_COMMON, PERIODS_DUE, scheme_param

MONTH_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"


@dag(
    dag_id="kaohe_monthly",
    schedule=CronDataIntervalTimetable("0 2 5 * *", timezone="Asia/Shanghai"),
    params={
        "month": Param(
            None,
            type=["null", "string"],
            pattern=MONTH_PATTERN,
            description="YYYY-MM; default: the month of the data interval",
        ),
        "scheme": scheme_param("default: KAOHE_SCHEME or the demo"),
        "reland": Param(
            False,
            type="boolean",
            description="take changed inbox files even for an already loaded month",
        ),
    },
    doc_md=__doc__,
    **DAG_COMMON,
)
def kaohe_monthly() -> None:
    @task
    def land() -> dict[str, Any]:
        from etl.pipeline import land_step, month_of

        ctx = get_current_context()
        params = ctx["params"]
        month = month_of(params.get("month"), ctx.get("data_interval_start"))
        return land_step(
            month, ctx["run_id"], scheme_ref=params.get("scheme"), reland=bool(params.get("reland"))
        )

    @task
    def validate(manifest: dict[str, Any]) -> dict[str, Any]:
        from etl.pipeline import SourceRejected, validate_step

        try:
            return validate_step(manifest)
        except SourceRejected as exc:  # bad data does not get better by retrying
            raise AirflowFailException(str(exc)) from None

    @task
    def load(validation: dict[str, Any]) -> dict[str, Any]:
        from etl.pipeline import load_step

        return load_step(validation)

    @task
    def plan_scoring(loaded: dict[str, Any]) -> list[dict[str, Any]]:
        from etl.pipeline import score_plan_step

        return score_plan_step(loaded)

    @task(map_index_template="{{ batch_label }}")
    def score_units(batch: dict[str, Any]) -> dict[str, Any]:
        from etl.pipeline import score_batch_step

        units = batch["units"]
        get_current_context()["batch_label"] = f"{units[0]}…{units[-1]}" if units else "-"
        return score_batch_step(batch)

    @task
    def score(loaded: dict[str, Any], batches: list[dict[str, Any]]) -> dict[str, Any]:
        from etl.pipeline import score_finish_step

        return score_finish_step(loaded, list(batches))

    @task.short_circuit
    def periods_due(scored: dict[str, Any]) -> bool:
        return bool(scored["periods"])

    @task(outlets=[PERIODS_DUE])
    def announce(scored: dict[str, Any]):  # noqa: ANN201 - a generator of asset metadata
        extra = {"scheme": scored["scheme_ref"], "periods": scored["periods"]}
        yield Metadata(PERIODS_DUE, extra)

    loaded = load(validate(land()))
    scored = score(loaded, score_units.expand(batch=plan_scoring(loaded)))
    periods_due(scored) >> announce(scored)


kaohe_monthly()
