"""kaohe_publish: the documents of a month or period, delivered (manual).

plan -> render (HTML, letters) -> plan_pdfs -> pdfs (mapped over unit batches of
KAOHE_BATCH_PEOPLE documents, which Celery workers share) -> deliver -> record, each a function of
`reports.publish`. `stage=notify` sends
each person their result notice and opens the appeal window (bulletins are written as 公示稿);
`stage=final` sends the bulletins to unit leaders and the bonus tables to finance, and locks the
results: a later rerun that changes them makes a new revision, published as a correction (更正)
to the people and units it changed. The delivery log makes a retry or a rerun send nothing twice.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param, dag, get_current_context, task

from etl.dag_support import DAG_COMMON, scheme_param

PERIOD_PATTERN = r"^\d{4}(-(Q[1-4]|H[12]))?$"
MONTH_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"


@dag(
    dag_id="kaohe_publish",
    schedule=None,
    params={
        "period": Param(
            None,
            type=["null", "string"],
            pattern=PERIOD_PATTERN,
            description="YYYY-Qn, YYYY-Hn or YYYY",
        ),
        "month": Param(None, type=["null", "string"], pattern=MONTH_PATTERN, description="YYYY-MM"),
        "stage": Param(
            "notify",
            enum=["notify", "final"],
            description="notify: notices, appeal window opens; final: bulletins, bonus tables",
        ),
        "scheme": scheme_param("default: KAOHE_SCHEME or the demo"),
    },
    doc_md=__doc__,
    **DAG_COMMON,
)
def kaohe_publish() -> None:
    @task
    def plan() -> dict[str, Any]:
        from reports.publish import plan_step, what_of

        ctx = get_current_context()
        p = ctx["params"]
        what = what_of(p.get("period"), p.get("month"))
        return plan_step(what, p["stage"], ctx["run_id"], scheme_ref=p.get("scheme"))

    @task
    def render(plan_: dict[str, Any]) -> str:
        from reports.publish import render_step

        return render_step(plan_, pdfs=False)

    @task
    def plan_pdfs(manifest_file: str) -> list[dict[str, Any]]:
        from reports.publish import pdf_plan_step

        return pdf_plan_step(manifest_file)

    @task(map_index_template="{{ batch_label }}")
    def pdfs(batch: dict[str, Any]) -> int:
        from reports.publish import pdf_step

        get_current_context()["batch_label"] = f"{batch['documents']} documents"
        return pdf_step(batch)

    @task
    def deliver(manifest_file: str) -> dict[str, Any]:
        from reports.publish import deliver_step

        return deliver_step(manifest_file)

    @task
    def record(plan_: dict[str, Any], manifest_file: str, delivered: dict[str, Any]) -> dict:
        from reports.publish import record_step

        return record_step(plan_, manifest_file, delivered, get_current_context()["run_id"])

    planned = plan()
    manifest_file = render(planned)
    delivered = deliver(manifest_file)
    pdfs.expand(batch=plan_pdfs(manifest_file)) >> delivered
    record(planned, manifest_file, delivered)


kaohe_publish()
