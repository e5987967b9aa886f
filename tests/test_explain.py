"""Every point explained: the lines of `v_score_explanation` rebuild each monthly total, and
`v_score_source` leads each line to the delivered rows (file, line, SHA-256), on SQLite and
PostgreSQL."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from etl.explain import MEASURE_ROWS, views
from etl.generate import generate
from etl.pipeline import run_month, score_step
from etl.warehouse import create_schema, engine_for
from scoring.measures import ATTENDANCE_MEASURES, CASE_MEASURES, DEPARTMENT_MEASURES
from scoring.scheme import SCHEME_DIR, load_scheme
from tests.helpers import table, write

# measures that count rows: their value is the number of source rows the view names
COUNTED = [
    "attendance.late_count",
    "attendance.early_leave_count",
    "attendance.absent_days",
    "attendance.leave_days",
    "attendance.workdays",
    "cases.closed_count",
    "cases.filed_count",
    "cases.pending_count",
    "cases.reversal_count",
    "cases.remand_count",
    "cases.panel_fault_count",
]


@pytest.fixture
def scored(kaohe):
    """Two generated months of the demo scheme (a court and offices), March with register rows
    that the monthly bonus cap cuts and a deduction the score range clamps."""
    generate(Path(kaohe.inbox), 60, "2026-02", 2, seed=21)
    roster = pd.read_csv(
        Path(kaohe.inbox) / "2026-03" / "roster.csv", dtype=str, encoding="utf-8-sig"
    )
    first, second = roster["工号"].iloc[0], roster["工号"].iloc[2]
    write(
        Path(kaohe.inbox),
        "2026-03",
        "adjustments-extra.csv",
        "person_id,date,rule,points,count,note\n"
        f"{first},2026-03-10,praise_province,,4,四次省级表扬\n"  # 8 points, cut to the cap of 5
        f"{second},2026-03-11,media_exposure,,80,媒体曝光\n",  # −160: the total clamps at 0
    )
    for m in ("2026-02", "2026-03"):
        score_step(run_month(m, f"run-{m}", "demo"))
    return kaohe.warehouse_url, first, second


def test_the_lines_of_each_person_and_month_add_up_to_the_total(scored):
    url, capped, clamped = scored
    lines = table(url, "v_score_explanation")
    monthly = table(url, "mart_monthly_score").set_index(["month", "person_id"])
    rebuilt = lines.groupby(["month", "person_id"])["points"].sum()
    assert rebuilt.index.sort_values().equals(monthly.index.sort_values())  # everybody explained
    gap = (rebuilt - monthly["total_score"]).abs()
    assert gap.max() < 1e-9

    march = lines[lines["month"] == "2026-03"].set_index("person_id")
    cap = march[march["line"] == "cap"]
    rows = table(url, "mart_adjustment", "where month = '2026-03'")
    awarded = rows.loc[(rows["person_id"] == capped) & (rows["total"] > 0), "total"].sum()
    assert awarded >= 8  # the four provincial praises and whatever the register had
    assert cap.loc[capped, "points"] == pytest.approx(5 - awarded)  # 5 kept a month (demo.yaml)
    clamp = march[march["line"] == "clamp"]
    assert clamp.index.tolist() == [clamped]
    assert monthly.loc[("2026-03", clamped), "total_score"] == 0.0
    kinds = set(lines["line"])
    assert {"indicator", "adjustment", "cap", "clamp"} <= kinds  # demo surveys feed periods only
    indicators = lines[lines["line"] == "indicator"]
    assert indicators["measure"].notna().all()  # every indicator names its measure


def test_every_line_leads_to_the_delivered_rows_and_counts_match(scored, kaohe):
    url, capped, _ = scored
    lines = table(url, "v_score_explanation")
    rows = table(url, "v_score_source")
    assert rows["sha256"].notna().all() and rows["source_line"].notna().all()
    landed = table(url, "landed_file").set_index("sha256")["archive_path"]
    assert set(rows["sha256"]) <= set(landed.index)  # each names archived bytes

    counted = lines[lines["measure"].isin(COUNTED)]
    assert len(counted) > 0 and counted["actual"].gt(0).any()
    n = rows.groupby(["month", "person_id", "component_id", "item"]).size()
    key = pd.MultiIndex.from_frame(counted[["month", "person_id", "component_id", "item"]])
    assert (n.reindex(key).fillna(0).to_numpy() == counted["actual"].to_numpy()).all()

    # one source row, followed to its bytes: the archived file's line holds the person's row
    att = rows[(rows["source"] == "attendance") & (rows["person_id"] == capped)].iloc[0]
    archived = Path(landed[att["sha256"]])
    data = archived.read_bytes()
    assert hashlib.sha256(data).hexdigest() == att["sha256"]
    text = data.decode("gb18030" if att["source_file"].startswith("attendance-court") else "utf-8")
    line = text.lstrip("\ufeff").splitlines()[int(att["source_line"]) - 1]
    assert line.split(",")[0].strip() == capped

    register = rows[(rows["source"] == "adjustment") & (rows["person_id"] == capped)]
    assert "adjustments-extra.csv" in set(register["source_file"])
    assert "rater_hash" not in rows.columns  # raters stay unnamed


def test_a_monthly_survey_component_is_a_line_with_its_ratings_as_rows(kaohe):
    scheme = load_scheme("district")  # its 三评 survey weighs 0.7 in every month
    generate(Path(kaohe.inbox), 40, "2026-01", 1, seed=8, scheme=scheme)
    score_step(run_month("2026-01", "run-1", "district"))
    url = kaohe.warehouse_url
    lines = table(url, "v_score_explanation")
    monthly = table(url, "mart_monthly_score").set_index("person_id")["total_score"]
    rebuilt = lines.groupby("person_id")["points"].sum()
    assert (rebuilt.reindex(monthly.index) - monthly).abs().max() < 1e-9
    survey = lines[lines["line"] == "survey"]
    assert len(survey) == len(monthly)  # everybody is rated on it
    assert (survey["points"] == 0.7 * survey["score"]).all()
    rows = table(url, "v_score_source")
    got = rows[rows["source"] == "survey_response"].groupby("person_id").size()
    ratings = table(url, "survey_response", "where period = '2026-01'")
    items = set(scheme.survey_items())
    want = ratings[ratings["item"].isin(items)].groupby("ratee_id").size()
    assert got.sort_index().to_dict() == want.sort_index().to_dict() and len(want) > 0


def test_every_built_in_measure_says_which_rows_it_reads():
    assert set(MEASURE_ROWS) == set(ATTENDANCE_MEASURES + CASE_MEASURES + DEPARTMENT_MEASURES)


def test_a_long_pending_line_lists_exactly_the_cases_past_the_age_rule(kaohe, tmp_path):
    text = (SCHEME_DIR / "demo.yaml").read_text(encoding="utf-8")
    text = text.replace("long_pending_days: 365", "long_pending_days: 40")
    rule = "{id: long_pending, name: 长期未结案件, measure: cases.long_pending_count, per_unit: -1}"
    text = text.replace("      - {id: panel_fault,", f"      - {rule}\n      - {{id: panel_fault,")
    ref = tmp_path / "aged.yaml"
    ref.write_text(text, encoding="utf-8")
    generate(Path(kaohe.inbox), 60, "2026-03", 1, seed=21)
    score_step(run_month("2026-03", "run-1", str(ref)))
    url = kaohe.warehouse_url

    # independently: each judge's cases pending at 31 March, and those filed over 40 days before
    cases = table(url, "case_snapshot", "where month = '2026-03'")
    filed, closed = pd.to_datetime(cases["filed_on"]), pd.to_datetime(cases["closed_on"])
    end = pd.Timestamp("2026-03-31")
    pending = (filed <= end) & ~(closed <= end)
    aged = pending & ((end - filed).dt.days > 40)
    assert aged.any() and (pending & ~aged).any()  # the rule leaves some pending cases out

    lines = table(url, "v_score_explanation")
    lines = lines[lines["measure"] == "cases.long_pending_count"].set_index("person_id")
    want = cases[aged].groupby("judge_id").size()
    assert lines["actual"].reindex(want.index).tolist() == want.tolist()
    assert lines["actual"].drop(want.index).eq(0).all()
    rows = table(url, "v_score_source")
    listed = rows[rows["item"] == "long_pending"]
    assert listed.groupby("person_id").size().sort_index().to_dict() == want.to_dict()
    assert set(zip(listed["source_file"], listed["source_line"], strict=True)) == set(
        zip(cases.loc[aged, "source_file"], cases.loc[aged, "source_line"], strict=True)
    )


def test_an_earlier_warehouse_gets_the_new_column_and_views(warehouse_url):
    engine = engine_for(warehouse_url)
    create_schema(engine)
    with engine.begin() as conn:  # as an earlier kaohe left it
        for name in views(engine.dialect.name):
            conn.exec_driver_sql(f"DROP VIEW {name}")
        conn.exec_driver_sql("ALTER TABLE scheme_item DROP COLUMN long_pending_days")
        conn.exec_driver_sql("CREATE VIEW v_score_source AS SELECT 1 AS earlier")
    # runs starting side by side: one replaces the view, the others find it done
    with ThreadPoolExecutor(4) as pool:
        for done in [pool.submit(create_schema, engine) for _ in range(4)]:
            done.result()
    columns = {c["name"] for c in sa.inspect(engine).get_columns("scheme_item")}
    assert "long_pending_days" in columns
    with engine.connect() as conn:
        got = conn.exec_driver_sql("SELECT * FROM v_score_source").keys()
        assert "sha256" in got and "earlier" not in got
        assert set(views(engine.dialect.name)) <= set(sa.inspect(engine).get_view_names())
        before = _identities(conn)
    create_schema(engine)  # a view as this kaohe defines it is left alone
    with engine.connect() as conn:
        assert _identities(conn) == before
    engine.dispose()


def _identities(conn: sa.Connection) -> list[int]:
    """Each view's catalogue identity: a dropped and recreated view gets a new one."""
    if conn.dialect.name == "sqlite":
        sql = "SELECT rowid FROM sqlite_master WHERE type = 'view' AND name = :name"
    else:
        sql = "SELECT CAST(to_regclass(:name) AS oid)"
    found = [conn.execute(sa.text(sql), {"name": n}).scalar() for n in sorted(views("sqlite"))]
    assert all(found)
    return found
