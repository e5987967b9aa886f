"""Scoring against the warehouse: read what a month or period needs, write its marts.

The arithmetic lives in `scoring/` as pure functions; this module only selects their inputs and
replaces their outputs, each month or period in one transaction, so a rerun leaves exactly what
one run leaves and a failure leaves the previous result whole.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from etl.warehouse import adjustment as adjustment_table
from etl.warehouse import (
    attendance,
    bulk_insert,
    bulk_read,
    case_snapshot,
    mart_adjustment,
    mart_bonus_allocation,
    mart_component_score,
    mart_department_score,
    mart_indicator_score,
    mart_monthly_score,
    mart_nomination_refused,
    mart_period_score,
    mart_survey_result,
    nomination,
    roster,
    survey_response,
)
from scoring.measures import attendance_measures, case_measures
from scoring.monthly import month_scores
from scoring.periods import close_period
from scoring.scheme import Scheme
from scoring.survey import survey_scores
from scoring.timeline import months_of, parse_period, periods_inside, presence, shift_month

LOOK_BACK_MONTHS = 12  # acceptance_rate sums the 12 months ending with the month


def _replace(conn: Connection, table: sa.Table, key: dict[str, Any], rows: pd.DataFrame) -> int:
    """Delete the rows under `key` (values may be lists) and insert `rows` with the key filled."""
    conds = [table.c[k].in_(v) if isinstance(v, list) else table.c[k] == v for k, v in key.items()]
    conn.execute(table.delete().where(*conds))
    fixed = {k: v for k, v in key.items() if not isinstance(v, list)}
    return bulk_insert(conn, table, rows.assign(**fixed))


def _present(conn: Connection, column: sa.Column, scheme_id: str) -> list[str]:
    """The distinct months or periods a mart holds for a scheme."""
    q = sa.select(column).distinct().where(column.table.c.scheme_id == scheme_id)
    return sorted(conn.scalars(q))


def scored_months(conn: Connection, scheme_id: str) -> list[str]:
    return _present(conn, mart_monthly_score.c.month, scheme_id)


def months_to_score(conn: Connection, scheme_id: str, month: str) -> list[str]:
    """The month and every later month of its year already scored: their look-back measures and
    yearly bonus caps depend on it (scheme.md, "rerunning a month")."""
    later = [m for m in scored_months(conn, scheme_id) if m > month and m[:4] == month[:4]]
    return [month, *later]


PEOPLE = ["month", "person_id", "name", "unit_id", "unit_name", "dept_id", "dept_name"]
PEOPLE += ["category", "post_coefficient", "active_from", "active_to"]
ACTIVE = ["month", "person_id", "active_from", "active_to"]
DAYS = ["month", "person_id", "date", "status", "duty_filed", "duty_reviewed"]
CASES = ["month", "case_id", "judge_id", "panel_ids", "filed_on", "closed_on", "procedure"]
CASES += ["outcome", "verdict_in_court", "appeal_outcome", "appeal_decided_on", "fault"]
RATINGS = ["month", "survey_id", "period", "rater_hash", "relation", "ratee_id", "item", "score"]


def case_history(conn: Connection, scheme_id: str, first: str, last: str) -> pd.DataFrame:
    """Per snapshot month and judge, the counts the look-back measures sum (closed, reversed,
    remanded in that month), aggregated by the database: a year of a city's case extracts is
    millions of rows, of which the look-back needs three numbers a judge and month."""
    s = case_snapshot

    def in_month(col: sa.Column) -> sa.ColumnElement:
        return sa.func.substr(sa.cast(col, sa.Text), 1, 7) == s.c.month

    def count(cond: sa.ColumnElement) -> sa.ColumnElement:
        return sa.func.sum(sa.case((cond, 1), else_=0))

    decided = in_month(s.c.appeal_decided_on)
    stmt = (
        sa.select(
            s.c.month,
            s.c.judge_id.label("person_id"),
            count(in_month(s.c.closed_on)).label("closed"),
            count(decided & (s.c.appeal_outcome == "reversed")).label("reversed"),
            count(decided & (s.c.appeal_outcome == "remanded")).label("remanded"),
        )
        .where(s.c.scheme_id == scheme_id, s.c.month.between(first, last))
        .group_by(s.c.month, s.c.judge_id)
    )
    rows = conn.execute(stmt).fetchall()
    frame = pd.DataFrame(rows, columns=["month", "person_id", "closed", "reversed", "remanded"])
    return frame.astype({"closed": float, "reversed": float, "remanded": float})


def _inputs(conn: Connection, scheme: Scheme, months: list[str]) -> dict[str, pd.DataFrame]:
    """What scoring `months` reads: the months' own rows, the year's roster presence (closure
    balance) and adjustments (yearly cap), and the case counts of the 12-month look-back."""
    sid, first, last = scheme.id, months[0], months[-1]
    year_start = f"{first[:4]}-01"
    r, a, c, v, j = roster, attendance, case_snapshot, survey_response, adjustment_table
    people = bulk_read(conn, r, r.c.scheme_id == sid, r.c.month.in_(months), columns=PEOPLE)
    earlier = bulk_read(
        conn,
        r,
        r.c.scheme_id == sid,
        r.c.month.between(year_start, last),
        ~r.c.month.in_(months),
        columns=ACTIVE,
    )
    return {
        "people": presence(people),
        "presence": presence(pd.concat([earlier, people[ACTIVE]], ignore_index=True)),
        "attendance": bulk_read(conn, a, a.c.scheme_id == sid, a.c.month.in_(months), columns=DAYS),
        "cases": bulk_read(conn, c, c.c.scheme_id == sid, c.c.month.in_(months), columns=CASES),
        "history": case_history(conn, sid, shift_month(first, 1 - LOOK_BACK_MONTHS), last),
        "surveys": bulk_read(
            conn,
            v,
            v.c.scheme_id == sid,
            v.c.month.in_(months) | v.c.period.in_(months),
            columns=RATINGS,
        ),
        "adjustments": bulk_read(
            conn, j, j.c.scheme_id == sid, j.c.month.between(year_start, last)
        ),
    }


def score_months(engine: Engine, scheme: Scheme, month: str) -> dict[str, Any]:
    """Score `month` and the later scored months of its year; replace their marts in one
    transaction. Returns what was scored and the closed periods that must be closed again."""
    with engine.begin() as conn:
        months = months_to_score(conn, scheme.id, month)
        data = _inputs(conn, scheme, months)
        in_months = data["people"]
        keys = in_months[["month", "person_id"]]
        cases = case_measures(
            data["cases"],
            data["presence"][["month", "person_id"]],
            scheme.long_pending_days,
            history=data["history"],
        )
        measures = attendance_measures(data["attendance"], keys).merge(
            cases, on=["month", "person_id"], how="left"
        )
        rated, relations = survey_scores(data["surveys"], scheme)
        summary: dict[str, Any] = {"months": months, "people": {}}
        for m in months:
            result = month_scores(
                m,
                in_months[in_months["month"] == m],
                measures[measures["month"] == m],
                rated[rated["period"] == m],
                data["adjustments"],
                scheme,
            )
            key = {"scheme_id": scheme.id, "month": m}
            _replace(conn, mart_monthly_score, key, result.monthly)
            _replace(conn, mart_indicator_score, key, result.indicators)
            _replace(conn, mart_component_score, key, result.components)
            _replace(conn, mart_adjustment, key, result.adjustments)
            _replace(conn, mart_department_score, key, result.departments)
            summary["people"][m] = len(result.monthly)
        surveys = data["surveys"]
        delivered = (  # each round is reported in the (first) month whose extract delivered it
            surveys[surveys["month"].isin(months)]
            .groupby(["survey_id", "period"], as_index=False)["month"]
            .min()
        )
        results = relations.merge(delivered, on=["survey_id", "period"]).rename(
            columns={"period": "survey_period"}
        )
        conn.execute(
            mart_survey_result.delete().where(
                mart_survey_result.c.scheme_id == scheme.id,
                mart_survey_result.c.month.in_(months)
                | mart_survey_result.c.survey_id.in_(delivered["survey_id"].unique().tolist()),
            )
        )
        bulk_insert(conn, mart_survey_result, results.assign(scheme_id=scheme.id))
        summary["periods_to_redo"] = sorted(
            p for p in closed_periods(conn, scheme.id) if set(months_of(p)) & set(months)
        )
    return summary


def closed_periods(conn: Connection, scheme_id: str) -> list[str]:
    return _present(conn, mart_period_score.c.period, scheme_id)


def close_period_in_warehouse(engine: Engine, scheme: Scheme, period: str) -> dict[str, Any]:
    """Period scores, grades, pacesetters and bonus of one period, replaced in one transaction."""
    kind, months = parse_period(period)
    sid = scheme.id
    with engine.begin() as conn:
        monthly = bulk_read(
            conn,
            mart_monthly_score,
            mart_monthly_score.c.scheme_id == sid,
            mart_monthly_score.c.month.in_(months),
        )
        missing = sorted(set(months) - set(monthly["month"]))
        if monthly.empty:
            raise ValueError(f"{period}: no month of it has been scored")
        components = bulk_read(
            conn,
            mart_component_score,
            mart_component_score.c.scheme_id == sid,
            mart_component_score.c.month.in_(months),
        )
        responses = bulk_read(
            conn,
            survey_response,
            survey_response.c.scheme_id == sid,
            survey_response.c.period.in_(periods_inside(period)),
            columns=RATINGS,
        )
        rated, _ = survey_scores(responses, scheme)
        noms = bulk_read(
            conn, nomination, nomination.c.scheme_id == sid, nomination.c.period == period
        )
        last = bulk_read(conn, roster, roster.c.scheme_id == sid, roster.c.month == months[-1])
        result = close_period(period, monthly, components, rated, noms, last, scheme)
        key = {"scheme_id": sid, "period": period}
        _replace(conn, mart_period_score, key, result.scores)
        bonus = result.bonus if result.bonus is not None else pd.DataFrame()
        _replace(conn, mart_bonus_allocation, key, bonus)
        refused = result.refused_nominations
        _replace(
            conn, mart_nomination_refused, key, refused if refused is not None else pd.DataFrame()
        )
    return {
        "period": period,
        "kind": kind,
        "people": len(result.scores),
        "graded": int(result.scores["graded"].sum()),
        "months_missing": missing,
        "bonus_rows": 0 if result.bonus is None else len(result.bonus),
        "nominations_refused": 0 if refused is None else len(refused),
        "messages": result.messages,
    }
