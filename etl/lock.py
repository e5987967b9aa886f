"""One run at a time per scheme and month (or period).

A month's intake spans several tasks, possibly on several Celery workers: land, validate, load,
the scoring batches and the step that writes the marts. Two runs of the same month interleaving
there would score one run's rows in some batches and the other's in the rest. Airflow's
`max_active_runs` only keeps one DAG's runs apart on one deployment; `airflow dags test`, a second
DAG or a second deployment on the same warehouse would pass it. So the hold lives in the
warehouse itself (`run_lock`), taken by the first step and renewed by each later one. Scoring a
month also rescores the later months of its year, so from the load to the end of scoring a run
holds those months too (`take_rest_of_year`).

A hold ends when its run ends: the last step frees it, and a failed task frees it through the
DAG's failure callback (`fail_run`). A run that died without either is recognised by the run log
(its row says failed or rejected) or, failing that, by a hold not renewed for LEASE.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from etl.warehouse import mart_run, run_lock
from scoring.timeline import months_of

LEASE = dt.timedelta(hours=6)  # far longer than any one step of a province month
ENDED = ("failed", "rejected")  # run-log states after which a run takes no further step


class MonthBusy(RuntimeError):
    """Another run holds the month: a task raising it is retried by Airflow (the run waits) and
    fails with this message when the other run still holds it."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)  # SQLite gives naive UTC back


def take(engine: Engine, scheme_id: str, subject: str, run_id: str, dag_id: str) -> None:
    """Take or renew the hold of `run_id` on the scheme's month or period, else raise MonthBusy.
    The schema must exist (the first step of a run creates it)."""
    key = (run_lock.c.scheme_id == scheme_id, run_lock.c.subject == subject)
    for _ in range(3):  # another run may take or free the hold between our statements
        now = _now()
        with engine.begin() as conn:
            holder = conn.execute(sa.select(run_lock).where(*key)).mappings().first()
            if holder is not None:
                if holder["run_id"] != run_id and not _abandoned(conn, holder, now):
                    raise MonthBusy(_busy(scheme_id, subject, holder))
                fresh = holder["run_id"] != run_id
                done = conn.execute(  # only if the holder is still the one we read
                    run_lock.update()
                    .where(*key, run_lock.c.run_id == holder["run_id"])
                    .values(
                        run_id=run_id,
                        dag_id=dag_id if fresh else holder["dag_id"],
                        taken_at=now if fresh else holder["taken_at"],
                        renewed_at=now,
                    )
                )
                if done.rowcount == 1:
                    return
                continue
        try:
            with engine.begin() as conn:
                conn.execute(
                    run_lock.insert().values(
                        scheme_id=scheme_id,
                        subject=subject,
                        run_id=run_id,
                        dag_id=dag_id,
                        taken_at=now,
                        renewed_at=now,
                    )
                )
            return
        except sa.exc.IntegrityError:
            continue  # taken meanwhile: look again
    raise MonthBusy(f"{subject} of scheme {scheme_id}: the hold changed hands three times; retry")


def _abandoned(conn: sa.Connection, holder: sa.RowMapping, now: dt.datetime) -> bool:
    """The holder's run has failed (its run-log row says so) or it has not renewed for LEASE.
    (`success` is no sign of an end: the intake records it at the load, before the scoring.)"""
    status = conn.scalar(sa.select(mart_run.c.status).where(mart_run.c.run_id == holder["run_id"]))
    return status in ENDED or now - _aware(holder["renewed_at"]) > LEASE


def _busy(scheme_id: str, subject: str, holder: sa.RowMapping) -> str:
    since = _aware(holder["taken_at"]).astimezone(dt.timezone(dt.timedelta(hours=8)))
    lapse = _aware(holder["renewed_at"]) + LEASE
    return (
        f"{subject} of scheme {scheme_id} is being processed by run {holder['run_id']} "
        f"({holder['dag_id']}) since {since:%Y-%m-%d %H:%M} Beijing time; two runs of one month "
        f"must not interleave, so this run waits (its task is retried) and fails if that run "
        f"still holds it. If that run has died, mark it failed in Airflow, which frees "
        f"{subject}; an abandoned hold lapses at {lapse.astimezone(since.tzinfo):%Y-%m-%d %H:%M}."
    )


def free(engine: Engine, scheme_id: str, subject: str, run_id: str) -> None:
    """Free the hold if `run_id` has it (a no-op otherwise: it was freed or taken over)."""
    with engine.begin() as conn:
        conn.execute(
            run_lock.delete().where(
                run_lock.c.scheme_id == scheme_id,
                run_lock.c.subject == subject,
                run_lock.c.run_id == run_id,
            )
        )


def rest_of_year(month: str) -> list[str]:
    """`month` and the later months of its year, in calendar order."""
    return [m for m in months_of(month[:4]) if m >= month]


def take_rest_of_year(engine: Engine, scheme_id: str, month: str, run_id: str, dag_id: str) -> None:
    """Take the holds of `month` and of every later month of its year, from the load to the end
    of scoring: scoring a month rescores the later months of its year already scored (their
    look-back measures and yearly caps depend on what it loads), and a run of one of those months
    interleaving there would have its scores overwritten by ones computed from what it had not
    yet loaded, or months it scores missed. Holds are taken in calendar order, so two runs never
    wait on each other in a circle; when one is busy, the later months the run holds are given
    back before MonthBusy is raised (its own month it keeps, as before the call)."""
    subjects = rest_of_year(month)
    for k, subject in enumerate(subjects):
        try:
            take(engine, scheme_id, subject, run_id, dag_id)
        except MonthBusy:
            for taken in subjects[1:k]:
                free(engine, scheme_id, taken, run_id)
            raise


def free_rest_of_year(engine: Engine, scheme_id: str, month: str, run_id: str) -> None:
    """The run's own month too: scoring is the last step that needs any of them."""
    for subject in rest_of_year(month):
        free(engine, scheme_id, subject, run_id)


def free_run(conn: sa.Connection, run_id: str) -> None:
    """Free every hold of a run that failed."""
    conn.execute(run_lock.delete().where(run_lock.c.run_id == run_id))
