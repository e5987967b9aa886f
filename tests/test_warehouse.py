"""The bulk paths in and out of the warehouse, on SQLite and PostgreSQL: what goes in comes back."""

from __future__ import annotations

import math
import time

import pandas as pd
import pytest
import sqlalchemy as sa

from etl.bulk import bulk_insert, bulk_read, reading, writing
from etl.warehouse import (
    create_schema,
    engine_for,
    mart_adjustment,
    mart_period_score,
    mart_quarantine,
    roster,
)


def test_values_survive_the_round_trip(warehouse_url):
    engine = engine_for(warehouse_url)
    create_schema(engine)
    people = pd.DataFrame(
        {
            "scheme_id": "s",
            "month": "2026-03",
            "person_id": ["0001", "0002"],
            "name": ["张三", "䶮 O'Brien"],  # a GB18030-only character and a quote
            "unit_id": "u1",
            "unit_name": "单位",
            "dept_id": "d1",
            "dept_name": "科室",
            "category": "staff",
            "post_coefficient": [1.0, 1.25],
            "email": [None, "a@example.gov.cn"],
            "active_from": ["2020-01-05", None],
            "active_to": [None, "2026-03-15"],
            "source_file": "roster.csv",
            "source_line": [2, 3],
        }
    )
    # ranks are whole numbers even when pandas holds them as floats beside a missing one
    period = pd.DataFrame(
        {
            "scheme_id": "s",
            "period": "2026",
            "person_id": ["0001", "0002"],
            "name": "x",
            "unit_id": "u1",
            "dept_id": "d1",
            "category": "staff",
            "post_coefficient": 1.0,
            "months": [12, 3],
            "mean_monthly": [80.5, 70.0],
            "period_score": [80.5, 70.0],
            "rank_in_scope": [287.0, math.nan],
            "grade": ["good", None],
            "graded": [True, False],
            "veto": False,
            "pacesetter": False,
            "pacesetter_route": None,
            "placed_by_tiebreak": False,
        }
    )
    quarantine = pd.DataFrame(
        {
            "scheme_id": "s",
            "month": "2026-03",
            "file": "a.csv",
            "line": [7],
            "source": "roster",
            "reason": "bad",
            "raw": ['{"姓名": "李四"}'],
        }
    )
    with engine.begin() as conn:
        bulk_insert(conn, roster, people)
        bulk_insert(conn, mart_period_score, period)
        bulk_insert(conn, mart_quarantine, quarantine)
    back = bulk_read(engine, roster, roster.c.month == "2026-03").sort_values("person_id")
    ranks = bulk_read(engine, mart_period_score, columns=["person_id", "rank_in_scope", "graded"])
    engine.dispose()
    assert back["name"].tolist() == ["张三", "䶮 O'Brien"]
    assert back["active_from"].tolist()[0] == "2020-01-05" and pd.isna(back["active_from"].iloc[1])
    assert back["active_to"].tolist()[1] == "2026-03-15"
    assert back["post_coefficient"].tolist() == [1.0, 1.25]
    assert back["source_line"].tolist() == [2, 3]
    r = ranks.sort_values("person_id")
    assert r["rank_in_scope"].iloc[0] == 287 and pd.isna(r["rank_in_scope"].iloc[1])
    assert r["graded"].tolist() == [True, False]


def _roster(n: int, **columns: object) -> pd.DataFrame:
    """n roster rows of one unit, e-mail and dates empty unless `columns` say otherwise."""
    base = {
        "scheme_id": "s",
        "month": "2026-03",
        "person_id": [f"{i:05d}" for i in range(n)],
        "name": "某",
        "unit_id": "u1",
        "unit_name": "单位",
        "dept_id": "d1",
        "dept_name": "科室",
        "category": "staff",
        "post_coefficient": 1.0,
        "email": None,
        "active_from": None,
        "active_to": None,
        "source_file": "roster.csv",
        "source_line": range(2, n + 2),
    }
    return pd.DataFrame(base | columns)


def test_a_column_empty_for_thousands_of_rows_reads_back_as_text(warehouse_url):
    engine = engine_for(warehouse_url)
    create_schema(engine)
    n = 3000
    rows = _roster(n, active_to=[None] * (n - 1) + ["2026-03-20"])  # empty but for the last row
    with engine.begin() as conn:
        bulk_insert(conn, roster, rows)
    back = bulk_read(engine, roster, columns=["person_id", "email", "active_to"])
    engine.dispose()
    back = back.sort_values("person_id")
    assert back["email"].isna().all() and back["active_to"].iloc[-1] == "2026-03-20"
    assert (back["active_to"].fillna("") >= "").all()  # comparable as text


def test_a_frame_of_several_slices_arrives_whole_and_a_bad_last_slice_leaves_nothing(
    warehouse_url, monkeypatch
):
    monkeypatch.setattr("etl.bulk.CHUNK_ROWS", 1000)
    engine = engine_for(warehouse_url)
    create_schema(engine)
    n = 2500  # three slices, the last one partial
    rows = _roster(n, post_coefficient=[0.5 + i / 10_000 for i in range(n)])
    with engine.begin() as conn:
        assert bulk_insert(conn, roster, rows) == n
    back = bulk_read(engine, roster, columns=["person_id", "post_coefficient", "source_line"])
    back = back.sort_values("person_id", ignore_index=True)
    assert back["person_id"].tolist() == rows["person_id"].tolist()
    assert back["post_coefficient"].tolist() == rows["post_coefficient"].tolist()
    assert back["source_line"].tolist() == list(range(2, n + 2))

    again = rows.assign(month="2026-04")
    again.loc[n - 1, "person_id"] = again.loc[0, "person_id"]  # a duplicate key, in slice three
    with pytest.raises(Exception, match="(?i)unique|duplicate"):
        with engine.begin() as conn:
            bulk_insert(conn, roster, again)
    months = bulk_read(engine, roster, columns=["month"])["month"].unique().tolist()
    engine.dispose()
    assert months == ["2026-03"]  # nothing of April's first two slices stayed


def _adjustments(points: list[float]) -> pd.DataFrame:
    n = len(points)
    return pd.DataFrame(
        {
            "scheme_id": "s",
            "month": "2026-03",
            "source_file": "adjustments.csv",
            "source_line": range(2, n + 2),
            "person_id": [f"{i:04d}" for i in range(n)],
            "date": ["2026-03-05"] * (n - 1) + [None],
            "rule": "commendation",
            "points": points,
            "count": 1.0,
            "total": points,
            "veto": [False] * (n - 1) + [True],
        }
    )


def test_a_writer_replaces_rows_in_one_transaction_and_a_failure_keeps_the_old_ones(
    warehouse_url,
):
    engine = engine_for(warehouse_url)
    create_schema(engine)
    where = (mart_adjustment.c.scheme_id == "s", mart_adjustment.c.month == "2026-03")
    with writing(engine) as out:
        assert out.replace(mart_adjustment, _adjustments([1.0, 2.5, -3.0]), *where) == 3
    with pytest.raises(RuntimeError), writing(engine) as out:
        out.replace(mart_adjustment, _adjustments([9.0]), *where)
        raise RuntimeError("the scoring step failed after its first write")
    back = bulk_read(engine, mart_adjustment).sort_values("source_line")
    assert back["points"].tolist() == [1.0, 2.5, -3.0]
    assert back["date"].tolist()[:2] == ["2026-03-05", "2026-03-05"]
    assert pd.isna(back["date"].iloc[2])
    assert back["veto"].tolist() == [False, False, True]
    # the engine's own driver reads the same rows, and a SQLite file is intact after the writer
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.sum(mart_adjustment.c.points))).scalar() == 0.5
        if engine.dialect.name == "sqlite":
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
    engine.dispose()


def test_reads_in_parallel_threads_return_each_job_its_own_rows(warehouse_url):
    engine = engine_for(warehouse_url)
    create_schema(engine)
    with writing(engine) as out:
        out.insert(mart_adjustment, _adjustments([1.0, 2.0, 3.0, 4.0]))
    c = mart_adjustment.c
    with reading(engine) as read:
        got = read.all(
            {
                "small": lambda: read.frame(mart_adjustment, c.points < 2.5),
                "large": lambda: read.frame(mart_adjustment, c.points > 2.5),
                "months": lambda: pd.DataFrame({"m": read.values(c.month)}),
            },
            workers=2,
        )
    engine.dispose()
    assert sorted(got["small"]["points"]) == [1.0, 2.0]
    assert sorted(got["large"]["points"]) == [3.0, 4.0]
    assert got["months"]["m"].tolist() == ["2026-03"]


def test_postgresql_reads_share_their_connections_and_close_them_when_reading_ends(
    warehouse_url,
):
    # a scoring run reads some twenty times: each read must not cost the server a new process
    engine = engine_for(warehouse_url)
    if engine.dialect.name != "postgresql":
        pytest.skip("a SQLite file's read connections are closed after each read")
    backend = sa.select(sa.func.pg_backend_pid().label("pid"))

    def on_server(sql: str, pids: set[int]) -> int:
        with engine.connect() as conn:
            return conn.execute(sa.text(sql), {"p": sorted(pids)}).scalar()

    def alive(pids: set[int]) -> int:
        return on_server("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(:p)", pids)

    with reading(engine) as read:
        pids = {int(read.query(backend)["pid"].iloc[0]) for _ in range(5)}
        parallel = read.all({k: lambda: read.query(backend) for k in "ab"}, workers=2)
        pids |= {int(f["pid"].iloc[0]) for f in parallel.values()}
        assert 1 <= len(pids) <= 2  # one connection, a second only for the read beside it
        # the server ends the idle ones (as idle_session_timeout would): the next read still reads
        on_server("SELECT count(pg_terminate_backend(p)) FROM unnest(:p) p", pids)
        again = int(read.query(backend)["pid"].iloc[0])
        assert again not in pids
        pids.add(again)
    for _ in range(50):  # a connection closed by the Reader ends within moments
        if alive(pids) == 0:
            break
        time.sleep(0.1)
    assert alive(pids) == 0
    engine.dispose()


def test_ids_with_percent_signs_and_quotes_are_read_and_replaced_as_they_are(warehouse_url):
    engine = engine_for(warehouse_url)
    create_schema(engine)
    odd = _adjustments([1.0, 2.0]).assign(scheme_id="县%院's", rule="50%_rule")
    where = (mart_adjustment.c.scheme_id == "县%院's",)
    for _ in range(2):  # the second replace must find and delete the first one's rows
        with writing(engine) as out:
            assert out.replace(mart_adjustment, odd, *where) == 2
    back = bulk_read(engine, mart_adjustment, *where)
    engine.dispose()
    assert back["rule"].tolist() == ["50%_rule", "50%_rule"]
    assert back["scheme_id"].tolist() == ["县%院's", "县%院's"]


def test_text_read_as_categories_holds_the_same_values(warehouse_url):
    _categories_read_back(engine_for(warehouse_url))


def test_text_read_as_categories_on_the_engine_connection():
    _categories_read_back(engine_for("sqlite://"))  # in memory: no ADBC driver can follow


def _categories_read_back(engine: sa.Engine) -> None:
    create_schema(engine)
    rows = _roster(5, unit_id=["u2", "u1", "u2", "u10", "u1"], email=[None, "a@x.cn"] + [None] * 3)
    with engine.begin() as conn:
        bulk_insert(conn, roster, rows)
    with reading(engine) as read:
        plain = read.frame(roster, columns=["person_id", "unit_id", "email"])
        coded = read.frame(
            roster, columns=["person_id", "unit_id", "email"], categories=["unit_id", "email"]
        )
    engine.dispose()
    assert isinstance(coded["unit_id"].dtype, pd.CategoricalDtype)
    assert sorted(coded["unit_id"].cat.categories) == ["u1", "u10", "u2"]  # each value once
    coded, plain = coded.sort_values("person_id"), plain.sort_values("person_id")
    assert coded["unit_id"].astype(str).tolist() == plain["unit_id"].tolist()
    assert coded["email"].isna().tolist() == [True, False, True, True, True]
    assert coded["email"].dropna().astype(str).tolist() == ["a@x.cn"]
