"""Warehouse schema (SQLAlchemy Core) and the bulk write path, for SQLite and PostgreSQL alike.

Source tables carry natural keys and no surrogate ids or load timestamps, so reloading the same
month leaves them byte-for-byte as they were; only `landing_log` and `mart_run` are logs that grow.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from etl.partitions import MONTH_MARTS, Partitioned, partition_by
from scoring.measures import ATTENDANCE_COUNTS, LOOK_BACK_COUNTS

log = logging.getLogger(__name__)
md = sa.MetaData()
T, N, D, INT, B = sa.Text, sa.Float, sa.Date, sa.Integer, sa.Boolean


def _src(*cols: sa.Column) -> list[sa.Column]:
    return [
        *cols,
        sa.Column("source_file", T, nullable=False),
        sa.Column("source_line", INT, nullable=False),
    ]


def _key(name: str, t: Any = T) -> sa.Column:
    return sa.Column(name, t, primary_key=True)


def _row_key() -> list[sa.Column]:
    """Register rows have no natural key: the delivered file and line are their identity."""
    return [_key("scheme_id"), _key("month"), _key("source_file"), _key("source_line", INT)]


landed_file = sa.Table(
    "landed_file",
    md,
    _key("sha256"),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("archive_path", T, nullable=False),
    sa.Column("first_name", T, nullable=False),
    sa.Column("first_landed_at", sa.DateTime(timezone=True), nullable=False),
)
landing_log = sa.Table(
    "landing_log",
    md,
    _key("run_id"),
    _key("scheme_id"),
    _key("month"),
    _key("name"),
    sa.Column("source", T, nullable=False),
    sa.Column("sha256", T, nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("logged_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("newly_landed", B, nullable=False),
)
loaded_file = sa.Table(  # which exact bytes the current load of a month came from
    "loaded_file",
    md,
    _key("scheme_id"),
    _key("month"),
    _key("name"),
    sa.Column("source", T, nullable=False),
    sa.Column("sha256", T, nullable=False),
    sa.Column("rows_in", INT, nullable=False),
    sa.Column("rows_quarantined", INT, nullable=False),
)
# On SQLite, tables are kept in their key's b-tree alone (no rowid table beside it) where they are
# filled whole in key order (scoring's marts, the load's counts: half the pages to write) or read
# a month at a time by the million (case snapshots, survey ratings: a month is one contiguous
# range of the b-tree, not an index range plus a lookup per row, which made such reads twice as
# slow)
CLUSTERED: dict[str, Any] = {"sqlite_with_rowid": False}
roster = sa.Table(
    "roster",
    md,
    *_src(
        _key("scheme_id"),
        _key("month"),
        _key("person_id"),
        sa.Column("name", T, nullable=False),
        sa.Column("unit_id", T, nullable=False),
        sa.Column("unit_name", T, nullable=False),
        sa.Column("dept_id", T, nullable=False),
        sa.Column("dept_name", T, nullable=False),
        sa.Column("category", T, nullable=False),
        sa.Column("post_coefficient", N, nullable=False),
        sa.Column("email", T),
        sa.Column("active_from", D),
        sa.Column("active_to", D),
    ),
)
attendance = sa.Table(
    "attendance",
    md,
    *_src(
        _key("scheme_id"),
        _key("month"),
        _key("person_id"),
        _key("date", D),
        sa.Column("status", T, nullable=False),
        sa.Column("duty_filed", INT),
        sa.Column("duty_reviewed", INT),
    ),
)
attendance_month = sa.Table(  # what scoring needs of a month's days, kept by the load beside them
    "attendance_month",
    md,
    _key("scheme_id"),
    _key("month"),
    _key("person_id"),
    *[sa.Column(name, INT, nullable=False) for name in ATTENDANCE_COUNTS],
    **CLUSTERED,
)
_CASE_COLS = (
    sa.Column("dept_id", T, nullable=False),
    sa.Column("judge_id", T, nullable=False),
    sa.Column("panel_ids", T),
    sa.Column("filed_on", D, nullable=False),
    sa.Column("closed_on", D),
    sa.Column("procedure", T, nullable=False),
    sa.Column("outcome", T),
    sa.Column("verdict_in_court", INT),
    sa.Column("appeal_outcome", T),
    sa.Column("appeal_decided_on", D),
    sa.Column("fault", INT),
)
case_snapshot = sa.Table(  # each month's extract as delivered
    "case_snapshot",
    md,
    *_src(_key("scheme_id"), _key("month"), _key("case_id"), *[c.copy() for c in _CASE_COLS]),
    **CLUSTERED,
)
cases = sa.Table(  # current state: per case, the latest month's snapshot (upserted by case_id)
    "cases",
    md,
    *_src(
        _key("scheme_id"),
        _key("case_id"),
        sa.Column("as_of_month", T, nullable=False),
        *[c.copy() for c in _CASE_COLS],
    ),
)
survey_response = sa.Table(
    "survey_response",
    md,
    *_src(
        _key("scheme_id"),
        _key("month"),
        _key("survey_id"),
        _key("rater_hash"),
        _key("ratee_id"),
        _key("item"),
        sa.Column("period", T, nullable=False),
        sa.Column("relation", T, nullable=False),
        sa.Column("score", N, nullable=False),
        sa.Column("level", T),
    ),
    **CLUSTERED,
)
survey_round = sa.Table(  # which months delivered ratings of which rounds, kept by the load
    "survey_round",
    md,
    _key("scheme_id"),
    _key("month"),  # the month whose extract delivered them
    _key("survey_id"),
    _key("period"),  # the round's period: a month, quarter, half or year
    sa.Column("ratings", INT, nullable=False),
    **CLUSTERED,
)
adjustment = sa.Table(
    "adjustment",
    md,
    *_row_key(),
    sa.Column("person_id", T, nullable=False),
    sa.Column("date", D, nullable=False),
    sa.Column("rule", T, nullable=False),
    sa.Column("points", N),
    sa.Column("count", INT, nullable=False),
    sa.Column("note", T),
    sa.Column("evidence", T),
)
nomination = sa.Table(
    "nomination",
    md,
    *_row_key(),
    sa.Column("person_id", T, nullable=False),
    sa.Column("period", T, nullable=False),
    sa.Column("reason", T, nullable=False),
    sa.Column("approved_by", T, nullable=False),
)
mart_quarantine = sa.Table(
    "mart_quarantine",
    md,
    _key("scheme_id"),
    _key("month"),
    _key("file"),
    _key("line", INT),
    sa.Column("source", T, nullable=False),
    sa.Column("reason", T, nullable=False),
    sa.Column("raw", sa.JSON, nullable=False),
)
mart_run = sa.Table(
    "mart_run",
    md,
    _key("run_id"),
    sa.Column("dag_id", T, nullable=False),
    sa.Column("scheme_id", T, nullable=False),
    sa.Column("month_or_period", T, nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("status", T, nullable=False),
    sa.Column("rows_in", INT),
    sa.Column("rows_quarantined", INT),
    sa.Column("source_checksums", sa.JSON),
    sa.Column("message", T),
)
scheme_item = sa.Table(  # what each indicator measures, which items feed a survey component
    "scheme_item",
    md,
    _key("scheme_id"),
    _key("component_id"),
    _key("item_id"),
    sa.Column("kind", T, nullable=False),  # indicator | survey_item
    sa.Column("measure", T),
    sa.Column("long_pending_days", INT),  # the age rule, on a cases.long_pending_count indicator
)
run_lock = sa.Table(  # which run holds a month or period of a scheme (etl/lock.py)
    "run_lock",
    md,
    _key("scheme_id"),
    _key("subject"),  # YYYY-MM, or a period: YYYY-Qn, YYYY-H1/H2, YYYY
    sa.Column("run_id", T, nullable=False),
    sa.Column("dag_id", T, nullable=False),
    sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("renewed_at", sa.DateTime(timezone=True), nullable=False),
)
sa.Index("ix_attendance_person", attendance.c.scheme_id, attendance.c.person_id, attendance.c.month)
sa.Index(
    "ix_case_snapshot_case",
    case_snapshot.c.scheme_id,
    case_snapshot.c.case_id,
    case_snapshot.c.month,
)
case_month = sa.Table(  # what later months' case look-back needs of a snapshot, kept by the load
    "case_month",
    md,
    _key("scheme_id"),
    _key("month"),
    _key("person_id"),
    *[sa.Column(name, INT, nullable=False) for name in LOOK_BACK_COUNTS],
    **CLUSTERED,
)
sa.Index("ix_cases_judge", cases.c.scheme_id, cases.c.judge_id)


# --- marts: scores, stable names for reporting tools and finance (interfaces.md) -------------
def _month_key(*names: str) -> list[sa.Column]:
    return [_key("scheme_id"), _key("month"), *[_key(n) for n in names]]


def _period_key(*names: str) -> list[sa.Column]:
    return [_key("scheme_id"), _key("period"), *[_key(n) for n in names]]


REVISION = sa.Column("revision", INT, nullable=False, server_default="1")
mart_monthly_score = sa.Table(
    "mart_monthly_score",
    md,
    *_month_key("person_id"),
    sa.Column("name", T, nullable=False),
    sa.Column("unit_id", T, nullable=False),
    sa.Column("unit_name", T),
    sa.Column("dept_id", T, nullable=False),
    sa.Column("dept_name", T),
    sa.Column("category", T, nullable=False),
    sa.Column("post_coefficient", N, nullable=False),
    sa.Column("total_score", N, nullable=False),
    sa.Column("adjustment_total", N, nullable=False),
    sa.Column("rank_in_scope", INT),
    sa.Column("red_flag", B, nullable=False),
    sa.Column("veto", B, nullable=False),
    REVISION.copy(),
    **CLUSTERED,
    **partition_by("mart_monthly_score"),
)
mart_indicator_score = sa.Table(
    "mart_indicator_score",
    md,
    *_month_key("person_id", "component_id", "indicator_id"),
    sa.Column("actual", N),
    sa.Column("target", N),
    sa.Column("points", N),
    sa.Column("score", N, nullable=False),
    sa.Column("no_basis", B, nullable=False),
    **CLUSTERED,
    **partition_by("mart_indicator_score"),
)
mart_component_score = sa.Table(
    "mart_component_score",
    md,
    *_month_key("person_id", "component_id"),
    sa.Column("weight", N, nullable=False),
    sa.Column("score", N, nullable=False),
    sa.Column("no_basis", B, nullable=False),
    **CLUSTERED,
    **partition_by("mart_component_score"),
)
mart_adjustment = sa.Table(
    "mart_adjustment",
    md,
    *_month_key("source_file"),
    _key("source_line", INT),
    sa.Column("person_id", T, nullable=False),
    sa.Column("date", D),
    sa.Column("rule", T, nullable=False),
    sa.Column("points", N),
    sa.Column("count", N, nullable=False),
    sa.Column("total", N, nullable=False),
    sa.Column("veto", B, nullable=False),
    sa.Column("note", T),
    sa.Column("evidence", T),
    **CLUSTERED,
    **partition_by("mart_adjustment"),
)
mart_department_score = sa.Table(
    "mart_department_score",
    md,
    *_month_key("dept_id"),
    sa.Column("people", INT, nullable=False),
    sa.Column("mean_total", N, nullable=False),
    sa.Column("red_flag", B, nullable=False),
    **CLUSTERED,
    **partition_by("mart_department_score"),
)
mart_survey_result = sa.Table(  # relation results only: no rater-level row ever reaches a mart
    "mart_survey_result",
    md,
    _key("scheme_id"),
    _key("survey_id"),
    _key("survey_period"),
    _key("person_id"),
    _key("component_id"),
    _key("relation"),
    sa.Column("month", T, nullable=False),  # the month whose extract delivered the round
    sa.Column("raters", INT, nullable=False),
    sa.Column("score", N),
    sa.Column("score_raw", N),
    sa.Column("suppressed", B, nullable=False),
    **CLUSTERED,
)
mart_period_score = sa.Table(
    "mart_period_score",
    md,
    *_period_key("person_id"),
    sa.Column("name", T, nullable=False),
    sa.Column("unit_id", T, nullable=False),
    sa.Column("dept_id", T, nullable=False),
    sa.Column("category", T, nullable=False),
    sa.Column("post_coefficient", N, nullable=False),
    sa.Column("months", INT, nullable=False),
    sa.Column("mean_monthly", N, nullable=False),
    sa.Column("period_score", N, nullable=False),
    sa.Column("rank_in_scope", INT),
    sa.Column("grade", T),
    sa.Column("graded", B, nullable=False),
    sa.Column("veto", B, nullable=False),
    sa.Column("pacesetter", B, nullable=False),
    sa.Column("pacesetter_route", T),
    sa.Column("placed_by_tiebreak", B, nullable=False),
    REVISION.copy(),
    **CLUSTERED,
)
mart_bonus_allocation = sa.Table(
    "mart_bonus_allocation",
    md,
    *_period_key("unit_id", "person_id"),
    sa.Column("grade", T),
    sa.Column("weight", N, nullable=False),
    sa.Column("amount_cents", sa.BigInteger, nullable=False),
    REVISION.copy(),
    **CLUSTERED,
)
mart_nomination_refused = sa.Table(  # nominations not taken, never silently dropped
    "mart_nomination_refused",
    md,
    *_period_key("source_file"),
    _key("source_line", INT),
    sa.Column("person_id", T, nullable=False),
    sa.Column("unit_id", T),
    sa.Column("month", T),
    sa.Column("reason_refused", T, nullable=False),
    **CLUSTERED,
)

# --- publication: what went out, at which revision, to whom (reports/) -----------------------
TS = sa.DateTime(timezone=True)
publication = sa.Table(  # one row per stage and revision of a month or period being published
    "publication",
    md,
    _key("scheme_id"),
    _key("what"),  # the month (YYYY-MM) or period
    _key("stage"),  # notify | final
    _key("revision", INT),
    # fixed by the first run that planned it, so a rerun renders the same dates
    sa.Column("published_on", D, nullable=False),
    sa.Column("appeal_deadline", D),  # notify: the last day of the appeal window (公示期)
    sa.Column("run_id", T, nullable=False),  # the run that planned it
    sa.Column("planned_at", TS, nullable=False),
    sa.Column("recorded_at", TS),  # set once delivered and its published_result written
)
published_result = sa.Table(  # each person's result as a stage published it; revisions stay
    "published_result",
    md,
    _key("scheme_id"),
    _key("what"),
    _key("stage"),
    _key("revision", INT),
    _key("person_id"),
    sa.Column("name", T, nullable=False),
    sa.Column("unit_id", T, nullable=False),
    sa.Column("category", T, nullable=False),
    sa.Column("score", N, nullable=False),
    sa.Column("rank_in_scope", INT),
    sa.Column("grade", T),
    sa.Column("veto", B, nullable=False),
    sa.Column("pacesetter", B, nullable=False),
    sa.Column("red_flag", B, nullable=False),
    sa.Column("amount_cents", sa.BigInteger),
)
delivery_log = sa.Table(  # a message that went out; retries and reruns send nothing logged here
    "delivery_log",
    md,
    _key("document"),  # "<scheme_id>/<month or period>/<stage>/<file stem>"
    _key("revision", INT),
    _key("recipient"),
    sa.Column("stage", T, nullable=False),
    sa.Column("message_id", T, nullable=False),
    sa.Column("transport", T, nullable=False),  # outbox | smtp
    sa.Column("sent_at", TS, nullable=False),
)


# what each source's staged table is written to; cases also refresh `cases`
SOURCE_TABLE = {
    "roster": roster,
    "attendance": attendance,
    "cases": case_snapshot,
    "surveys": survey_response,
    "adjustments": adjustment,
    "nominations": nomination,
}


def engine_for(url: str) -> Engine:
    """An engine for any SQLAlchemy URL; plain `postgresql://` means psycopg 3 here."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("sqlite:"):
        # no idle connection stays open: the bulk path (etl.bulk) reads and writes the file with
        # ADBC's own copy of SQLite, which must never have it open beside this one (see there)
        in_memory = sa.engine.make_url(url).database in (None, "", ":memory:")
        pool = {} if in_memory else {"poolclass": NullPool}
        eng = sa.create_engine(url, connect_args={"timeout": 60}, **pool)

        @sa.event.listens_for(eng, "connect")
        def _pragmas(dbapi_conn: Any, _rec: Any) -> None:
            dbapi_conn.execute("PRAGMA journal_mode=WAL")
            dbapi_conn.execute("PRAGMA synchronous=NORMAL")

        return eng
    return sa.create_engine(url, pool_pre_ping=True)


def create_schema(engine: Engine) -> None:
    from etl.explain import create_views  # the views read these tables

    if sa.inspect(engine).has_table(survey_round.name):
        md.create_all(engine)
    else:
        md.create_all(engine, tables=[t for t in md.sorted_tables if t is not survey_round])
        _add_survey_round(engine)
    _add_column(engine, scheme_item.c.long_pending_days)
    _partition_month_marts(engine)
    create_views(engine)


def _add_column(engine: Engine, column: sa.Column) -> None:
    """A column a later kaohe added to a table, added to a warehouse an earlier one made (empty
    until the next run writes it). When two runs do it at once, one does it and the other finds
    it done."""
    table = column.table

    def have() -> bool:
        return column.name in {c["name"] for c in sa.inspect(engine).get_columns(table.name)}

    if have():
        return
    kind = column.type.compile(dialect=engine.dialect)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}')
    except sa.exc.DBAPIError:
        if not have():
            raise


def _partition_month_marts(engine: Engine) -> None:
    """The month marts of a PostgreSQL warehouse an earlier kaohe made, plain tables, turned into
    partitioned ones (etl.partitions), each with its rows in one transaction: should it fail,
    the plain table is still there, whole, and the next run tries again. When two runs do it at
    once, one does it and the other finds it done."""
    if engine.dialect.name != "postgresql":
        return
    kind = "SELECT relkind FROM pg_class WHERE oid = to_regclass('{}')"
    for name in MONTH_MARTS:
        with engine.connect() as conn:
            if conn.exec_driver_sql(kind.format(name)).scalar() != "r":
                continue
        with engine.begin() as conn:
            raw = conn.connection.dbapi_connection  # SQL as it is: ids may hold % and :
            raw.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"kaohe partition {name}",))
            if raw.execute(kind.format(name)).fetchone()[0] != "r":
                continue
            try:
                with conn.begin_nested():
                    _partition(conn, raw, md.tables[name])
            except psycopg.errors.DependentObjectsStillExist as exc:
                # a view of the deployment's own reads the plain mart: it stays plain, and is
                # written as before (delete, then insert), until the view is moved off it
                log.warning("%s stays a plain table: %s", name, str(exc).replace("\n", " "))


def _partition(conn: sa.Connection, raw: Any, table: sa.Table) -> None:
    """Rename the plain mart aside, create the partitioned one with the plain one's owner and
    grants, move every row, move the explanation views onto it (views a deployment built on them
    stay), drop the plain one. A view of the deployment's own on the plain mart stops the drop,
    and the caller keeps the plain mart."""
    from etl.explain import replace_view, views

    name, plain = table.name, f"{table.name}_plain"
    owner, grants = raw.execute(
        "SELECT pg_get_userbyid(relowner), relacl::text[] FROM pg_class"
        f" WHERE oid = '{name}'::regclass"
    ).fetchone()
    key = raw.execute(
        f"SELECT conname FROM pg_constraint WHERE conrelid = '{name}'::regclass AND contype = 'p'"
    ).fetchone()[0]
    raw.execute(f'ALTER TABLE "{name}" RENAME TO "{plain}"')
    raw.execute(f'ALTER TABLE "{plain}" RENAME CONSTRAINT "{key}" TO "{plain}_pkey"')
    table.create(conn)
    raw.execute(f'ALTER TABLE "{name}" OWNER TO "{owner}"')
    acl = (
        "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee))"
        " END, a.privilege_type FROM aclexplode(%s::aclitem[]) a WHERE a.grantee <> a.grantor"
    )
    for grantee, privilege in raw.execute(acl, (grants,)).fetchall() if grants else []:
        raw.execute(f'GRANT {privilege} ON "{name}" TO {grantee}')  # the deployment's grants
    parts = Partitioned.on(raw)
    for sid, month in raw.execute(f'SELECT DISTINCT scheme_id, month FROM "{plain}"').fetchall():
        parts.ensure_month(table, sid, month)
    cols = ", ".join(f'"{c.name}"' for c in table.columns)
    raw.execute(f'INSERT INTO "{name}" ({cols}) SELECT {cols} FROM "{plain}"')
    for view, body in views("postgresql").items():
        if raw.execute(f"SELECT to_regclass('{view}') IS NOT NULL").fetchone()[0]:
            replace_view(conn, view, body)
    raw.execute(f'DROP TABLE "{plain}"')


def rounds_of_ratings() -> sa.Select:
    """`survey_round` as the ratings already there give it."""
    v = survey_response.c
    key = [v.scheme_id, v.month, v.survey_id, v.period]
    return sa.select(*key, sa.func.count().label("ratings")).group_by(*key)


def _add_survey_round(engine: Engine) -> None:
    """`survey_round` created and filled from the ratings in one transaction: a warehouse an
    earlier kaohe loaded gets its history (scoring finds ratings through the table), and should
    that fail, no table is left, so the next run tries again rather than scoring without the
    history. When two runs do it at once, one does it and the other finds it done."""
    r = survey_round.c
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":  # its driver would commit the CREATE at once
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            survey_round.create(conn)
            names = [r.scheme_id, r.month, r.survey_id, r.period, r.ratings]
            conn.execute(survey_round.insert().from_select(names, rounds_of_ratings()))
            conn.commit()
    except sa.exc.DBAPIError:
        if not sa.inspect(engine).has_table(survey_round.name):
            raise
