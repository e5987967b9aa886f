"""Loading a validated month: all of it in one transaction, or nothing.

A month's rows are replaced, never appended, so a rerun leaves exactly what one run leaves. Cases
span months: each month's extract is kept as `case_snapshot`, and `cases` (the current state) is
upserted by case_id from the latest snapshot that holds the case, so reloading an earlier month
never overwrites a later state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from etl.bulk import bulk_insert
from etl.warehouse import (
    SOURCE_TABLE,
    attendance_month,
    case_month,
    case_snapshot,
    cases,
    loaded_file,
    mart_quarantine,
    survey_round,
)
from scoring.measures import attendance_counts, look_back_counts
from scoring.survey import delivered_round_counts


def _replace_month(
    conn: Connection, table: sa.Table, scheme_id: str, month: str, rows: pd.DataFrame | None
) -> int:
    conn.execute(table.delete().where(table.c.scheme_id == scheme_id, table.c.month == month))
    if rows is None:
        return 0
    return bulk_insert(conn, table, rows.assign(scheme_id=scheme_id, month=month))


def _drop_current(conn: Connection, scheme_id: str, month: str) -> None:
    """Drop from `cases` every case the month's snapshot holds; `_restore_current` rebuilds them."""
    conn.execute(
        cases.delete().where(
            cases.c.scheme_id == scheme_id,
            cases.c.case_id.in_(
                sa.select(case_snapshot.c.case_id).where(
                    case_snapshot.c.scheme_id == scheme_id, case_snapshot.c.month == month
                )
            ),
        )
    )


# what scoring needs of a source's rows, kept beside them
SUMMARY: dict[str, tuple[sa.Table, Callable[[pd.DataFrame], pd.DataFrame]]] = {
    "attendance": (attendance_month, attendance_counts),
    "cases": (case_month, look_back_counts),
    "surveys": (survey_round, delivered_round_counts),
}


def load_month(
    engine: Engine,
    scheme_id: str,
    month: str,
    accepted: Mapping[str, pd.DataFrame],
    quarantine: pd.DataFrame,
    files: pd.DataFrame,
) -> dict[str, int]:
    """Replace the month in every source table, the quarantine and the loaded-file record.

    Each source is taken from `accepted` once and let go once written, so a lazy mapping (the
    staged files) keeps only one source in memory: a province month is millions of rows a source.
    """
    counts: dict[str, int] = {}
    with engine.begin() as conn:
        _drop_current(conn, scheme_id, month)  # cases the month held before this load
        for source, table in SOURCE_TABLE.items():
            rows = accepted.get(source)
            counts[source] = _replace_month(conn, table, scheme_id, month, rows)
            if source in SUMMARY:
                summary, count = SUMMARY[source]
                kept = None if rows is None or rows.empty else count(rows.assign(month=month))
                _replace_month(conn, summary, scheme_id, month, kept)
            del rows
        _drop_current(conn, scheme_id, month)  # and those it holds now
        _restore_current(conn, scheme_id)
        counts["quarantine"] = _replace_month(conn, mart_quarantine, scheme_id, month, quarantine)
        _replace_month(conn, loaded_file, scheme_id, month, files)
    return counts


def _restore_current(conn: Connection, scheme_id: str) -> None:
    """Every snapshot case missing from `cases` comes back in the state of its latest snapshot."""
    cols = [c.name for c in cases.columns if c.name != "as_of_month"]
    s, s2 = case_snapshot.alias("s"), case_snapshot.alias("s2")
    latest = (
        sa.select(sa.func.max(s2.c.month))
        .where(s2.c.scheme_id == s.c.scheme_id, s2.c.case_id == s.c.case_id)
        .scalar_subquery()
    )
    present = sa.select(cases.c.case_id).where(cases.c.scheme_id == scheme_id)
    pick = sa.select(*[s.c[c] for c in cols], s.c.month).where(
        s.c.scheme_id == scheme_id, s.c.month == latest, s.c.case_id.not_in(present)
    )
    conn.execute(cases.insert().from_select(cols + ["as_of_month"], pick))
