"""Every point of a monthly total, traced to its indicator, measure and source rows.

Two views over the marts, so explaining costs nothing at scoring time and can never disagree with
what was scored:

- `v_score_explanation`: one line per thing that moved a person's monthly total: each indicator
  (weight × indicator score), each survey component (weight × score), each register row (its
  total), the caps on bonus points (bonus_per_month / bonus_per_year, the points cut) and the
  clamp to `score_range`. The lines of a person and month add up to `total_score`.
- `v_score_source`: for each indicator, survey and register line, the source rows it was computed
  from, with the delivered file, line and the file's SHA-256 (`loaded_file`), so a number leads to
  the archived bytes. Rater identities stay out: a survey line names the file and line only.

What a measure reads is written here once per built-in measure (MEASURE_ROWS); `scheme_item`,
written by scoring, says which measure each indicator of a scheme uses and which items feed a
survey component.
"""

from __future__ import annotations

import hashlib

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from scoring.scheme import Scheme

MONTH_OF = "substr(CAST({} AS TEXT), 1, 7)"  # YYYY-MM of an ISO date, on SQLite and PostgreSQL


def _in(column: str) -> str:
    """The row's date `column` falls in the row's own (snapshot) month."""
    return f"{MONTH_OF.format('s.' + column)} = s.month"


CLOSED, FILED, DECIDED = _in("closed_on"), _in("filed_on"), _in("appeal_decided_on")
OVERTURNED = f"s.appeal_outcome IN ('reversed', 'remanded') AND {DECIDED}"
PENDING = (
    f"{MONTH_OF.format('s.filed_on')} <= s.month "
    f"AND (s.closed_on IS NULL OR {MONTH_OF.format('s.closed_on')} > s.month)"
)
# older than the scheme's long_pending_days at the end of the month (unknown in a scheme_item row an
# earlier kaohe wrote: every pending case, until the month is scored again); AGE is the dialect's
AGE = "<the case's age rule>"
LONG_PENDING = f"(d.long_pending_days IS NULL OR {AGE})"
AGE_RULE = {
    "sqlite": "date(s.filed_on, d.long_pending_days || ' days') "
    "< date(s.month || '-01', '+1 month', '-1 day')",
    "postgresql": "s.filed_on + d.long_pending_days "
    "< CAST(s.month || '-01' AS DATE) + INTERVAL '1 month' - INTERVAL '1 day'",
}
# the months a measure reads: the source row's month s.month against the line's month e.month
WINDOW = {
    "month": "s.month = e.month",
    "year": "s.month <= e.month AND s.month >= substr(e.month, 1, 4) || '-01'",
    "12 months": (
        "s.month <= e.month AND s.month > "
        "(CAST(substr(e.month, 1, 4) AS INTEGER) - 1) || substr(e.month, 5)"
    ),
}
JUDGE = "s.judge_id = e.person_id"
PANEL = (
    "';' || replace(COALESCE(s.panel_ids, ''), ' ', '') || ';' LIKE '%;' || e.person_id || ';%' "
    "AND s.judge_id <> e.person_id AND s.fault = 1"
)
LONG_PENDING_MEASURE = "cases.long_pending_count"
# measure -> (source table, who the row belongs to, which rows count, months read)
MEASURE_ROWS: dict[str, tuple[str, str, str, str]] = {
    **{
        f"attendance.{name}": ("attendance", "s.person_id = e.person_id", where, "month")
        for name, where in {
            "workdays": "s.status <> 'holiday'",
            "attendance_rate": "s.status NOT IN ('holiday', 'leave')",
            "late_count": "s.status = 'late'",
            "early_leave_count": "s.status = 'early_leave'",
            "absent_days": "s.status = 'absent'",
            "leave_days": "s.status = 'leave'",
            "duty_filing_rate": "s.duty_filed IS NOT NULL",
            "duty_review_rate": "s.duty_filed = 1",
            "missed_filing_streaks": "s.duty_filed = 0",
        }.items()
    },
    **{
        f"cases.{name}": ("case_snapshot", JUDGE, where, window)
        for name, where, window in (
            ("closed_count", CLOSED, "month"),
            ("filed_count", FILED, "month"),
            ("clearance_rate", f"({CLOSED} OR {FILED})", "month"),
            ("avg_duration_days", CLOSED, "month"),
            ("simple_procedure_rate", CLOSED, "month"),
            ("in_court_verdict_rate", f"{CLOSED} AND s.outcome = 'judgment'", "month"),
            ("mediation_withdrawal_rate", CLOSED, "month"),
            ("pending_count", PENDING, "month"),
            ("long_pending_count", f"{PENDING} AND {LONG_PENDING}", "month"),
            ("reversal_count", f"s.appeal_outcome = 'reversed' AND {DECIDED}", "month"),
            ("remand_count", f"s.appeal_outcome = 'remanded' AND {DECIDED}", "month"),
            ("acceptance_rate", f"({CLOSED} OR {OVERTURNED})", "12 months"),
            ("closure_balance", CLOSED, "year"),
        )
    },
    "cases.panel_fault_count": ("case_snapshot", PANEL, OVERTURNED, "month"),
    "cases.dept_clearance_rate": (
        "case_snapshot",
        "s.dept_id = (SELECT r.dept_id FROM roster r WHERE r.scheme_id = e.scheme_id "
        "AND r.month = e.month AND r.person_id = e.person_id)",
        f"({CLOSED} OR {FILED})",
        "month",
    ),
}

_MONTH_KEY = (
    "{a}.scheme_id = {b}.scheme_id AND {a}.month = {b}.month AND {a}.person_id = {b}.person_id"
)
EXPLANATION = f"""
SELECT i.scheme_id, i.month, i.person_id, 'indicator' AS line, i.component_id,
       i.indicator_id AS item, d.measure, i.actual, i.target, c.weight, i.score,
       COALESCE(c.weight, 0) * i.score AS points,
       CAST(NULL AS TEXT) AS source_file, CAST(NULL AS INTEGER) AS source_line
FROM mart_indicator_score i
JOIN mart_component_score c
  ON {_MONTH_KEY.format(a="c", b="i")} AND c.component_id = i.component_id
LEFT JOIN scheme_item d ON d.scheme_id = i.scheme_id AND d.component_id = i.component_id
  AND d.item_id = i.indicator_id AND d.kind = 'indicator'
UNION ALL
SELECT c.scheme_id, c.month, c.person_id, 'survey', c.component_id, c.component_id, 'survey',
       NULL, NULL, c.weight, c.score, COALESCE(c.weight, 0) * c.score, NULL, NULL
FROM mart_component_score c
WHERE EXISTS (SELECT 1 FROM scheme_item d WHERE d.scheme_id = c.scheme_id
              AND d.component_id = c.component_id AND d.kind = 'survey_item')
UNION ALL
SELECT a.scheme_id, a.month, a.person_id, 'adjustment', NULL, a.rule, NULL, a.count, NULL, NULL,
       a.points, a.total, a.source_file, a.source_line
FROM mart_adjustment a
UNION ALL
SELECT m.scheme_id, m.month, m.person_id, 'cap', NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       m.adjustment_total - COALESCE(t.total, 0), NULL, NULL
FROM mart_monthly_score m
LEFT JOIN (SELECT scheme_id, month, person_id, SUM(total) AS total FROM mart_adjustment
           GROUP BY scheme_id, month, person_id) t ON {_MONTH_KEY.format(a="t", b="m")}
WHERE ABS(m.adjustment_total - COALESCE(t.total, 0)) > 1e-9
UNION ALL
SELECT m.scheme_id, m.month, m.person_id, 'clamp', NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       m.total_score - COALESCE(w.points, 0) - m.adjustment_total, NULL, NULL
FROM mart_monthly_score m
LEFT JOIN (SELECT scheme_id, month, person_id, SUM(COALESCE(weight, 0) * score) AS points
           FROM mart_component_score GROUP BY scheme_id, month, person_id) w
  ON {_MONTH_KEY.format(a="w", b="m")}
WHERE ABS(m.total_score - COALESCE(w.points, 0) - m.adjustment_total) > 1e-9
"""

_FILE = (
    "LEFT JOIN loaded_file f ON f.scheme_id = s.scheme_id AND f.month = s.month "
    "AND f.name = s.source_file"
)
_COLUMNS = (
    "e.scheme_id, e.month, e.person_id, {line} AS line, e.component_id, {item} AS item, "
    "{measure} AS measure, '{table}' AS source, s.month AS source_month, s.source_file, "
    "s.source_line, f.sha256"
)


def _measure_rows(measure: str, table: str, whose: str, where: str, window: str) -> str:
    cols = _COLUMNS.format(
        line="'indicator'", item="e.indicator_id", measure="d.measure", table=table
    )
    return (
        f"SELECT {cols} FROM mart_indicator_score e "
        "JOIN scheme_item d ON d.scheme_id = e.scheme_id AND d.component_id = e.component_id "
        f"AND d.item_id = e.indicator_id AND d.kind = 'indicator' AND d.measure = '{measure}' "
        f"JOIN {table} s ON s.scheme_id = e.scheme_id AND {whose} AND {WINDOW[window]} AND {where} "
        f"{_FILE}"
    )


_SURVEY_COLUMNS = _COLUMNS.format(
    line="'survey'", item="e.component_id", measure="'survey'", table="survey_response"
)
SURVEY_ROWS = (
    f"SELECT {_SURVEY_COLUMNS} FROM mart_component_score e "
    "JOIN scheme_item d ON d.scheme_id = e.scheme_id AND d.component_id = e.component_id "
    "AND d.kind = 'survey_item' "
    "JOIN survey_response s ON s.scheme_id = e.scheme_id AND s.ratee_id = e.person_id "
    f"AND s.period = e.month AND s.item = d.item_id {_FILE}"
)
ADJUSTMENT_ROWS = (
    "SELECT e.scheme_id, e.month, e.person_id, 'adjustment', NULL, e.rule, NULL, 'adjustment', "
    "e.month, e.source_file, e.source_line, f.sha256 FROM mart_adjustment e "
    "LEFT JOIN loaded_file f ON f.scheme_id = e.scheme_id AND f.month = e.month "
    "AND f.name = e.source_file"
)
SOURCE = "\nUNION ALL\n".join(
    [_measure_rows(m, *spec) for m, spec in MEASURE_ROWS.items()] + [SURVEY_ROWS, ADJUSTMENT_ROWS]
)


def views(dialect: str) -> dict[str, str]:
    """Each view's body in `dialect` (date arithmetic is the dialect's own), as SQLite keeps it:
    without the whitespace around it."""
    return {
        "v_score_explanation": EXPLANATION.strip(),
        "v_score_source": SOURCE.replace(AGE, AGE_RULE[dialect]).strip(),
    }


def _stamp(body: str) -> str:
    return "kaohe " + hashlib.sha256(body.encode()).hexdigest()[:16]


def _current(conn: sa.Connection, name: str, body: str) -> bool:
    """Whether the view `name` is there as `body` defines it: SQLite keeps the statement's text,
    PostgreSQL the stamp create_views leaves in the view's comment."""
    if conn.dialect.name == "sqlite":
        sql = conn.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'view' AND name = ?", (name,)
        ).scalar()
        return sql == f"CREATE VIEW {name} AS {body}"
    comment = conn.execute(
        sa.text("SELECT obj_description(to_regclass(:name), 'pg_class')"), {"name": name}
    ).scalar()
    return comment == _stamp(body)


def create_views(engine: Engine) -> None:
    """Create the explanation views, or replace them where an earlier kaohe made them otherwise
    (the tables they read must exist). A view is replaced only when it differs, so runs starting
    side by side do not queue behind each other's locks; when two replace it at once, one does it
    and the other finds it done."""
    for name, body in views(engine.dialect.name).items():
        with engine.connect() as conn:
            if _current(conn, name, body):
                continue
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":  # its driver would commit the DROP and CREATE apart
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:  # one replacer at a time; the others then find the view as it should be
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('kaohe views'))"))
            if not _current(conn, name, body):
                replace_view(conn, name, body)
            conn.commit()


def replace_view(conn: sa.Connection, name: str, body: str) -> None:
    create = sa.text(f"CREATE VIEW {name} AS {body}")  # text(): LIKE '%;…' is no placeholder
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(f"DROP VIEW IF EXISTS {name}")
        conn.execute(create)
        return
    try:  # in place, so views a deployment built on this one stay
        with conn.begin_nested():
            conn.execute(sa.text(f"CREATE OR REPLACE VIEW {name} AS {body}"))
    except sa.exc.DBAPIError:  # its columns changed: replaced whole (dependants must go first)
        conn.exec_driver_sql(f"DROP VIEW IF EXISTS {name}")
        conn.execute(create)
    conn.exec_driver_sql(f"COMMENT ON VIEW {name} IS '{_stamp(body)}'")


def scheme_items(scheme: Scheme) -> pd.DataFrame:
    """The scheme's indicators with their measures, and the items of its survey components."""
    days = scheme.long_pending_days
    rows = [
        (c.id, i.id, "indicator", i.measure, days if i.measure == LONG_PENDING_MEASURE else None)
        for c in scheme.components
        for i in c.indicators
    ] + [(comp, item, "survey_item", None, None) for item, comp in scheme.survey_items().items()]
    columns = ["component_id", "item_id", "kind", "measure", "long_pending_days"]
    return pd.DataFrame(rows, columns=columns).astype({"long_pending_days": "Int64"})
