"""A month of a mart replaced whole (etl.partitions on PostgreSQL, delete and insert on SQLite):
the month's rows are exactly the new ones, nothing else moves, a failure changes nothing."""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest
import sqlalchemy as sa

from etl.bulk import bulk_read, prepare_partitions, writing
from etl.explain import create_views
from etl.partitions import MONTH_MARTS, month_part
from etl.warehouse import create_schema, engine_for, mart_adjustment, md


def _rows(scheme_id: str, month: str, points: list[float]) -> pd.DataFrame:
    n = len(points)
    return pd.DataFrame(
        {
            "scheme_id": scheme_id,
            "month": month,
            "source_file": "adjustments.csv",
            "source_line": range(2, n + 2),
            "person_id": [f"{i:04d}" for i in range(n)],
            "date": f"{month}-05",
            "rule": "commendation",
            "points": points,
            "count": 1.0,
            "total": points,
            "veto": False,
        }
    )


def _months(engine: sa.Engine) -> dict[tuple[str, str], list[float]]:
    back = bulk_read(engine, mart_adjustment).sort_values(["scheme_id", "month", "source_line"])
    return {k: g["points"].tolist() for k, g in back.groupby(["scheme_id", "month"])}


def _catalog(engine: sa.Engine) -> dict[str, list[str]]:
    """PostgreSQL: each partition of mart_adjustment under its parent, and any table or
    constraint a swap leaves behind (a new month is loaded as `{leaf}_n{token}`)."""
    with engine.connect() as conn:
        tree = conn.exec_driver_sql(
            "SELECT p.relname, c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " JOIN pg_class p ON p.oid = i.inhparent WHERE c.relkind IN ('r', 'p') ORDER BY 2"
        ).fetchall()
        left = conn.exec_driver_sql(
            "SELECT relname FROM pg_class WHERE relname ~ '_n[0-9a-f]{8}(_pkey)?$' UNION ALL "
            "SELECT conname FROM pg_constraint WHERE conname LIKE '%%\\_bound'"
        ).fetchall()
    return {"tree": [f"{p} > {c}" for p, c in tree], "left": [r[0] for r in left]}


def _all_done(threads: list[threading.Thread], seconds: float) -> None:
    """Start the threads and wait for them: none may be left waiting (a deadlock)."""
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds)
    assert not any(t.is_alive() for t in threads)


def _postgresql_warehouse(url: str, why_not_sqlite: str) -> sa.Engine:
    """A fresh PostgreSQL warehouse; on SQLite the test is skipped, saying why."""
    engine = engine_for(url)
    if engine.dialect.name != "postgresql":
        pytest.skip(why_not_sqlite)
    create_schema(engine)
    return engine


def _kinds(conn: sa.Connection) -> dict[str, str]:
    """PostgreSQL: each month mart's kind, 'p' partitioned or 'r' plain."""
    return dict(
        conn.exec_driver_sql(
            "SELECT relname, relkind FROM pg_class WHERE relname = ANY(%(n)s)",
            {"n": list(MONTH_MARTS)},
        ).fetchall()
    )


def test_a_month_is_replaced_whole_and_nothing_else_moves(warehouse_url):
    engine = engine_for(warehouse_url)
    create_schema(engine)
    odd = "县%院's"  # a scheme id that needs quoting wherever it is written
    with writing(engine) as out:
        out.replace_month(mart_adjustment, _rows("s", "2026-03", [1.0, 2.0, 3.0]), "s", "2026-03")
        out.replace_month(mart_adjustment, _rows("s", "2026-04", [4.0, 5.0]), "s", "2026-04")
        out.replace_month(mart_adjustment, _rows(odd, "2026-03", [6.0]), odd, "2026-03")
    with writing(engine) as out:  # a rerun: fewer rows, other values
        out.replace_month(mart_adjustment, _rows("s", "2026-03", [9.0, 8.0]), "s", "2026-03")
    expected = {("s", "2026-03"): [9.0, 8.0], ("s", "2026-04"): [4.0, 5.0], (odd, "2026-03"): [6.0]}
    assert _months(engine) == expected
    with pytest.raises(RuntimeError), writing(engine) as out:
        out.replace_month(mart_adjustment, _rows("s", "2026-04", [0.0]), "s", "2026-04")
        out.replace_month(mart_adjustment, _rows(odd, "2026-03", [0.0]), odd, "2026-03")
        raise RuntimeError("the scoring step failed after its writes")
    assert _months(engine) == expected
    with writing(engine) as out:  # a month left with no rows
        out.replace_month(mart_adjustment, _rows("s", "2026-04", []), "s", "2026-04")
    del expected[("s", "2026-04")]
    assert _months(engine) == expected
    if engine.dialect.name == "postgresql":
        catalog = _catalog(engine)
        assert catalog["left"] == []  # the failed swap left nothing behind
        leaves = [t.split(" > ")[1] for t in catalog["tree"]]
        for sid, month in [("s", "2026-03"), (odd, "2026-03")]:
            assert month_part("mart_adjustment", sid, month) in leaves
        assert month_part("mart_adjustment", "s", "2026-04") not in leaves  # emptied: dropped
        with engine.connect() as conn:  # loaded with autovacuum off, back on once in place
            options = conn.exec_driver_sql(
                "SELECT reloptions FROM pg_class WHERE relname = %(n)s",
                {"n": month_part("mart_adjustment", "s", "2026-03")},
            ).scalar()
        assert options is None
    engine.dispose()


def test_two_runs_writing_a_new_schemes_months_at_once_both_land(warehouse_url):
    # each needs the scheme's partition, which neither finds: one makes it, the other waits
    engine = engine_for(warehouse_url)
    create_schema(engine)
    start, errors = threading.Barrier(2), []

    def run(month: str) -> None:
        try:
            start.wait()
            with writing(engine) as out:
                out.replace_month(mart_adjustment, _rows("new", month, [1.0, 2.0]), "new", month)
        except Exception as exc:  # reported below, with the month
            errors.append(f"{month}: {exc}")

    _all_done([threading.Thread(target=run, args=(m,)) for m in ("2026-05", "2026-06")], 60)
    assert errors == []
    assert _months(engine) == {("new", "2026-05"): [1.0, 2.0], ("new", "2026-06"): [1.0, 2.0]}
    engine.dispose()


def _plain_marts(engine: sa.Engine) -> None:
    """The month marts as an earlier kaohe made them: plain tables."""
    plain = sa.MetaData()
    for name in MONTH_MARTS:
        sa.Table(name, plain, *[c._copy() for c in md.tables[name].columns])
    plain.create_all(engine)


def test_a_plain_month_mart_is_written_by_delete_and_insert(warehouse_url):
    # a writer that meets a plain mart (an earlier kaohe's warehouse, not yet moved) still works
    engine = engine_for(warehouse_url)
    _plain_marts(engine)
    for points in ([1.0, 2.0], [3.0]):
        with writing(engine) as out:
            out.replace_month(mart_adjustment, _rows("s", "2026-03", points), "s", "2026-03")
    assert _months(engine) == {("s", "2026-03"): [3.0]}
    if engine.dialect.name == "postgresql":
        assert _catalog(engine)["tree"] == []
    engine.dispose()


def test_an_earlier_warehouse_gets_partitioned_month_marts_with_every_row(warehouse_url):
    engine = engine_for(warehouse_url)
    _plain_marts(engine)
    md.create_all(engine)  # the other tables, as they were
    create_views(engine)
    odd = "县%院's"
    with writing(engine) as out:
        out.insert(mart_adjustment, _rows("s", "2026-03", [1.0, 2.0]))
        out.insert(mart_adjustment, _rows("s", "2026-04", [3.0]))
        out.insert(mart_adjustment, _rows(odd, "2026-03", [4.0]))
    postgres = engine.dialect.name == "postgresql"
    if postgres:  # a deployment's own view on one of kaohe's views
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE VIEW office_sources AS SELECT * FROM v_score_source")
    before = _months(engine)
    create_schema(engine)
    create_schema(engine)  # a second run finds it done
    assert _months(engine) == before
    with writing(engine) as out:  # and a rerun swaps a month of the moved mart
        out.replace_month(mart_adjustment, _rows("s", "2026-03", [9.0]), "s", "2026-03")
    assert _months(engine) == {**before, ("s", "2026-03"): [9.0]}
    if postgres:
        with engine.connect() as conn:
            kinds = _kinds(conn)
            explained = conn.exec_driver_sql(
                "SELECT count(*) FROM office_sources WHERE source_file = 'adjustments.csv'"
            ).scalar()
        assert kinds == dict.fromkeys(MONTH_MARTS, "p")
        assert explained == 3  # the deployment's view still reads through kaohe's (3 rows left)
        catalog = _catalog(engine)
        for sid, month in before:
            leaf = month_part("mart_adjustment", sid, month)
            assert any(t.endswith(f"> {leaf}") for t in catalog["tree"]), leaf
        assert not [t for t in catalog["tree"] if "_plain" in t]
    engine.dispose()


def test_two_runs_of_one_scheme_overlapping_both_land(warehouse_url):
    # run B has written (a month with rows, a month left empty) and is still open when run A
    # writes and commits another month of the same scheme; then B commits: neither waits for the
    # other for ever, and each month ends as its run left it
    engine = engine_for(warehouse_url)
    create_schema(engine)
    with writing(engine) as out:
        for month in ("2026-03", "2026-04", "2026-05"):
            out.replace_month(mart_adjustment, _rows("s", month, [1.0]), "s", month)
    b_wrote, errors = threading.Event(), []

    def run_b() -> None:
        try:
            with writing(engine) as out:
                out.replace_month(mart_adjustment, _rows("s", "2026-04", [4.0]), "s", "2026-04")
                out.replace_month(mart_adjustment, _rows("s", "2026-05", []), "s", "2026-05")
                out.finish()
                b_wrote.set()
                time.sleep(1.0)  # A starts meanwhile
        except Exception as exc:  # reported below
            errors.append(f"B: {exc}")
            b_wrote.set()

    def run_a() -> None:
        b_wrote.wait(30)
        try:
            with writing(engine) as out:
                out.replace_month(mart_adjustment, _rows("s", "2026-03", [3.0]), "s", "2026-03")
        except Exception as exc:  # reported below
            errors.append(f"A: {exc}")

    _all_done([threading.Thread(target=run_b), threading.Thread(target=run_a)], 120)
    assert errors == []
    assert _months(engine) == {("s", "2026-03"): [3.0], ("s", "2026-04"): [4.0]}
    engine.dispose()


def test_a_new_schemes_scoring_never_holds_up_readers_of_another(warehouse_url):
    engine = _postgresql_warehouse(warehouse_url, "SQLite readers never wait for a writer (WAL)")
    with writing(engine) as out:
        out.replace_month(mart_adjustment, _rows("old", "2026-03", [1.0]), "old", "2026-03")
    prepare_partitions(engine, "brandnew")  # as the scoring step does
    with writing(engine) as out:
        out.replace_month(
            mart_adjustment, _rows("brandnew", "2026-03", [2.0]), "brandnew", "2026-03"
        )
        out.finish()  # written, not yet committed: a reader of another scheme goes on
        with engine.connect() as conn:
            conn.exec_driver_sql("SET lock_timeout = '2s'")
            seen = conn.exec_driver_sql(
                "SELECT count(*) FROM mart_adjustment WHERE scheme_id = 'old'"
            ).scalar()
        assert seen == 1
    assert _months(engine) == {("old", "2026-03"): [1.0], ("brandnew", "2026-03"): [2.0]}
    engine.dispose()


def test_a_deployments_own_view_on_a_plain_mart_keeps_it_plain_and_its_grants_move(
    warehouse_url,
):
    engine = engine_for(warehouse_url)
    if engine.dialect.name != "postgresql":
        pytest.skip("views and grants of a PostgreSQL deployment")
    _plain_marts(engine)
    md.create_all(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE VIEW office_totals AS SELECT * FROM mart_monthly_score")
        conn.exec_driver_sql("GRANT SELECT ON mart_adjustment TO PUBLIC")
    create_schema(engine)  # no failure: the viewed mart stays plain, the others move
    with engine.connect() as conn:
        kinds = _kinds(conn)
        granted = conn.exec_driver_sql(
            "SELECT count(*) FROM information_schema.role_table_grants"
            " WHERE table_name = 'mart_adjustment' AND grantee = 'PUBLIC'"
            " AND privilege_type = 'SELECT'"
        ).scalar()
        conn.exec_driver_sql("SELECT count(*) FROM office_totals").scalar()
    assert kinds == {**dict.fromkeys(MONTH_MARTS, "p"), "mart_monthly_score": "r"}
    assert granted == 1
    engine.dispose()


def test_a_month_that_fails_to_load_changes_nothing_and_leaves_nothing(warehouse_url):
    # the new month is loaded beside the transaction on PostgreSQL: its failure (a duplicated
    # key) fails the run, and the table it was loaded into goes with it
    engine = engine_for(warehouse_url)
    create_schema(engine)
    with writing(engine) as out:
        out.replace_month(mart_adjustment, _rows("s", "2026-03", [1.0, 2.0]), "s", "2026-03")
    twice = pd.concat([_rows("s", "2026-03", [5.0])] * 2, ignore_index=True)
    with pytest.raises(Exception, match="(?i)unique|duplicate"), writing(engine) as out:
        out.replace_month(mart_adjustment, _rows("s", "2026-04", [4.0]), "s", "2026-04")
        out.replace_month(mart_adjustment, twice, "s", "2026-03")
    assert _months(engine) == {("s", "2026-03"): [1.0, 2.0]}
    if engine.dialect.name == "postgresql":
        assert _catalog(engine)["left"] == []
    engine.dispose()


def test_a_dead_writers_new_month_is_swept_and_a_live_ones_kept(warehouse_url):
    # a writer whose process died left its new month committed beside and never attached: the
    # next scoring drops it; a writer still at work holds its token's lock, and its month lands
    engine = _postgresql_warehouse(warehouse_url, "SQLite loads nothing beside its transaction")
    dead = month_part("mart_adjustment", "s", "2026-02") + "_n0badf00d"
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE TABLE "{dead}" (LIKE mart_adjustment)')
    with writing(engine) as out:
        out.replace_month(mart_adjustment, _rows("s", "2026-03", [3.0]), "s", "2026-03")
        out.finish()  # loaded beside and committed there, not yet attached
        live = _catalog(engine)["left"]
        assert dead in live and len(live) == 4  # the dead table; the live one, its key, its bound
        prepare_partitions(engine, "another")  # the next scoring, while this one is open
        assert sorted(_catalog(engine)["left"]) == sorted(n for n in live if n != dead)
    assert _months(engine) == {("s", "2026-03"): [3.0]}
    assert _catalog(engine)["left"] == []
    engine.dispose()


def test_an_insert_then_a_replace_of_the_month_ends_as_the_replace_in_program_order(
    warehouse_url,
):
    # the replace is registered among the transaction's writes in their order, wherever its
    # rows are loaded: the insert before it goes to the old month, which the replace drops
    engine = engine_for(warehouse_url)
    create_schema(engine)
    with writing(engine) as out:
        out.insert(mart_adjustment, _rows("s", "2026-03", [1.0]))
        out.replace_month(mart_adjustment, _rows("s", "2026-03", [2.0]), "s", "2026-03")
    assert _months(engine) == {("s", "2026-03"): [2.0]}
    engine.dispose()


def test_a_month_loaded_beside_never_waits_for_the_transactions_own_locks(warehouse_url):
    # an insert for a scheme without partitions makes them inside the transaction, which locks
    # the mart until the commit: the second connection must not need that lock (it would wait
    # for the transaction, and the transaction for it, where no deadlock detector sees them)
    engine = _postgresql_warehouse(warehouse_url, "SQLite loads nothing beside its transaction")
    with engine.begin() as conn:  # this test's own database: a wait fails instead of hanging
        name = conn.exec_driver_sql("SELECT current_database()").scalar()
        conn.exec_driver_sql(f"ALTER DATABASE \"{name}\" SET lock_timeout = '5s'")
    engine.dispose()
    with writing(engine) as out:
        out.insert(mart_adjustment, _rows("x", "2026-03", [1.0]))
        out.written()  # the partitions are made, and locked until the commit
        out.replace_month(mart_adjustment, _rows("x", "2026-04", [2.0]), "x", "2026-04")
    assert _months(engine) == {("x", "2026-03"): [1.0], ("x", "2026-04"): [2.0]}
    engine.dispose()


def test_a_run_that_fails_at_its_commit_leaves_no_month_loaded_beside(warehouse_url):
    # a deferred check fails only at the commit, after the new months were put in place
    engine = _postgresql_warehouse(warehouse_url, "SQLite loads nothing beside its transaction")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE p (id int PRIMARY KEY)")
        conn.exec_driver_sql("CREATE TABLE ch (id int REFERENCES p DEFERRABLE INITIALLY DEFERRED)")
    with pytest.raises(Exception, match="(?i)foreign key|commit"), writing(engine) as out:
        out.replace_month(mart_adjustment, _rows("s", "2026-03", [1.0]), "s", "2026-03")
        out.execute(sa.text("INSERT INTO ch VALUES (1)"))
    assert _months(engine) == {}
    assert _catalog(engine)["left"] == []
    engine.dispose()
