"""Connectors: the folder inbox, a SQL source and a paged HTTP API each hand the intake the same
thing, so what the operator's upstream system holds for a month is what lands and what is loaded.

Nothing under test is mocked: SQL runs on a real SQLite file (and on PostgreSQL with
KAOHE_TEST_PG_URL), HTTP on a real server on the loopback interface, Airflow connections come from
`AIRFLOW_CONN_<ID>` environment variables as a deployment would set them.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pytest
import sqlalchemy as sa

from etl.connectors import Extract, FolderConnector, HttpConnector, SqlConnector
from etl.pipeline import run_month
from etl.warehouse import engine_for
from tests.helpers import table, write

MONTH, OTHER = "2026-03", "2026-02"
CATEGORIES = ("judge", "assistant", "leader", "middle", "staff")  # the demo scheme's ids
ROSTER_COLS = [
    "person_id",
    "name",
    "unit_id",
    "unit_name",
    "dept_id",
    "dept_name",
    "category",
    "post_coefficient",
    "email",
]
ATTENDANCE_COLS = ["person_id", "date", "status", "duty_filed", "duty_reviewed"]
DAYS = (2, 3, 4)


# --- the source system's data --------------------------------------------------------------------
def roster_rows(month: str) -> list[dict[str, Any]]:
    """30 people in March, 28 in February with other units, so a leaked month is visible.

    Ids carry leading zeros (`0007`), the thing a numeric round trip would silently lose."""
    n = 30 if month == MONTH else 28
    return [
        {
            "person_id": f"{i:04d}",
            "name": f"人员{i:02d}",
            "unit_id": "u01" if month == MONTH else "u99",
            "unit_name": "某县人民法院" if month == MONTH else "旧单位",
            "dept_id": f"d{i % 3}",
            "dept_name": ("立案庭", "民一庭", "综合办")[i % 3],
            "category": CATEGORIES[i % 5],
            "post_coefficient": 1.25 if i % 4 == 0 else 1.0,
            "email": f"p{i:04d}@court.example.org" if i % 3 else None,
        }
        for i in range(1, n + 1)
    ]


def attendance_rows(month: str) -> list[dict[str, Any]]:
    """Three days per person; a rest day has no duty report (NULL flags), the case that turned
    integer columns into `1.0` on the way to CSV."""
    statuses = ("present", "late", "holiday")
    out = []
    for p in roster_rows(month):
        for k, day in enumerate(DAYS):
            status = statuses[(k + int(p["person_id"])) % 3]
            rest = status == "holiday"
            out.append(
                {
                    "person_id": p["person_id"],
                    "date": dt.date.fromisoformat(f"{month}-{day:02d}"),
                    "status": status,
                    "duty_filed": None if rest else int(p["person_id"]) % 2,
                    "duty_reviewed": None if rest else 1,
                }
            )
    return out


def as_text(rows: list[dict[str, Any]], cols: list[str]) -> list[dict[str, str]]:
    """What a row must read as in the extract CSV: blanks empty, dates ISO, flags 0/1."""

    def cell(v: Any) -> str:
        if v is None:
            return ""
        return v.isoformat() if isinstance(v, dt.date) else str(v)

    return [{c: cell(r[c]) for c in cols} for r in rows]


def build_source(url: str) -> None:
    """An HR database with a roster and an attendance table holding two months."""
    md = sa.MetaData()
    hr_roster = sa.Table(
        "hr_roster",
        md,
        sa.Column("month", sa.Text),
        *[sa.Column(c, sa.Float if c == "post_coefficient" else sa.Text) for c in ROSTER_COLS],
    )
    hr_attendance = sa.Table(
        "hr_attendance",
        md,
        sa.Column("month", sa.Text),
        sa.Column("person_id", sa.Text),
        sa.Column("day", sa.Date),
        sa.Column("status", sa.Text),
        sa.Column("duty_filed", sa.Integer),
        sa.Column("duty_reviewed", sa.Integer),
    )
    eng = engine_for(url)
    try:
        md.create_all(eng)
        with eng.begin() as conn:
            for month in (OTHER, MONTH):
                conn.execute(
                    hr_roster.insert(), [{"month": month, **r} for r in roster_rows(month)]
                )
                conn.execute(
                    hr_attendance.insert(),
                    [
                        {
                            "month": month,
                            **{k: v for k, v in r.items() if k != "date"},
                            "day": r["date"],
                        }
                        for r in attendance_rows(month)
                    ],
                )
    finally:
        eng.dispose()


# The roster query lists category before name and carries the source's own `month` column; the
# attendance query answers with the Chinese aliases 工号/日期, as a DBA fond of them might write it.
QUERIES = {
    "roster": (
        "select person_id, category, name, unit_id, unit_name, dept_id, dept_name, "
        "post_coefficient, email, month from hr_roster where month = :month order by person_id"
    ),
    "attendance": (
        'select person_id as "工号", day as "日期", status, duty_filed, duty_reviewed '
        "from hr_attendance where month = :month order by person_id, day"
    ),
}


@pytest.fixture
def source_url(warehouse_url: str) -> str:
    """The source database: a SQLite file, or a fresh PostgreSQL database (the parametrised
    `warehouse_url` one, which nothing else writes to in these tests)."""
    build_source(warehouse_url)
    return warehouse_url


def read_csv(data: bytes) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of an extract exactly as text, the way validation will see them."""
    reader = csv.DictReader(io.StringIO(data.decode("utf-8")))
    rows = list(reader)
    return list(reader.fieldnames or []), rows


def by_source(extracts: list[Extract]) -> dict[str, Extract]:
    assert len({e.source for e in extracts}) == len(extracts), "one extract per source"
    return {e.source: e for e in extracts}


# --- 1. folder -----------------------------------------------------------------------------------
@pytest.mark.parametrize("form", ["path", "file-url"])
def test_folder_takes_source_files_and_names_what_it_passes_over(tmp_path: Path, form: str) -> None:
    """Operators drop notes, other systems' exports and open workbooks into the inbox; those must
    not be read as data, yet each must be named so a misnamed extract is noticed, not lost."""
    inbox = tmp_path / "inbox"
    roster = write(inbox, MONTH, "roster.csv", "工号,姓名\n0001,张三\n")
    court = write(inbox, MONTH, "attendance-court.csv", "工号,日期\n0001,2026-03-02\n")
    office = write(inbox, MONTH, "attendance-office.csv", "工号,日期\n0002,2026-03-02\n", "gb18030")
    ignored = ("readme.txt", "salary.csv", "~$roster.xlsx")
    for name in ignored:
        write(inbox, MONTH, name, "不是考核数据\n")
    write(inbox, OTHER, "roster.csv", "工号,姓名\n0009,旧人\n")

    conn = FolderConnector(str(inbox) if form == "path" else inbox.as_uri())
    extracts, notes = conn.fetch(MONTH)

    assert [(e.source, e.name) for e in extracts] == [
        ("attendance", "attendance-court.csv"),
        ("attendance", "attendance-office.csv"),
        ("roster", "roster.csv"),
    ]
    # handed on byte for byte (landing hashes these bytes), whatever their encoding
    assert [e.data for e in extracts] == [p.read_bytes() for p in (court, office, roster)]
    for name in ignored:
        assert len([n for n in notes if name in n]) == 1, (name, notes)
    assert len(notes) == len(ignored)
    assert not any(e.name in n for e in extracts for n in notes)


def test_folder_month_without_a_folder_gives_nothing_and_says_so(tmp_path: Path) -> None:
    """A month nobody delivered yet must not look like an empty month: the note says which."""
    write(tmp_path / "inbox", MONTH, "roster.csv", "工号\n0001\n")
    extracts, notes = FolderConnector(str(tmp_path / "inbox")).fetch("2026-04")
    assert extracts == []
    assert len(notes) == 1 and "2026-04" in notes[0]


# --- 2. SQL --------------------------------------------------------------------------------------
def assert_month_extracts(extracts: list[Extract], notes: list[str], suffix: str) -> None:
    """The March extracts hold exactly March's source rows, as text under canonical columns."""
    got = by_source(extracts)
    assert set(got) == {"roster", "attendance"}
    roster, attendance = got["roster"], got["attendance"]
    assert (roster.name, attendance.name) == (f"roster-{suffix}.csv", f"attendance-{suffix}.csv")

    header, rows = read_csv(roster.data)
    assert header == ROSTER_COLS  # canonical names in canonical order; source-only `month` left out
    want = as_text(roster_rows(MONTH), ROSTER_COLS)
    coef = [float(r.pop("post_coefficient")) for r in rows]
    assert coef == [float(w["post_coefficient"]) for w in want]
    assert rows == [{k: v for k, v in w.items() if k != "post_coefficient"} for w in want]
    assert roster.data.decode("utf-8").splitlines()[1].startswith("0001,")  # leading zeros kept

    header, rows = read_csv(attendance.data)
    assert header == ATTENDANCE_COLS  # 工号/日期 came back under their canonical names
    assert rows == as_text(attendance_rows(MONTH), ATTENDANCE_COLS)
    assert {r["duty_filed"] for r in rows} == {"0", "1", ""}  # flags stay 0/1, never `1.0`
    assert [n for n in notes if "month" in n and roster.name in n], notes


def test_sql_over_a_sqlalchemy_url_gives_the_months_rows(source_url: str) -> None:
    """The month is bound into each query, so a source holding a year yields just that month."""
    extracts, notes = SqlConnector(QUERIES, url=source_url).fetch(MONTH)
    assert_month_extracts(extracts, notes, "sql")
    february, _ = SqlConnector(QUERIES, url=source_url).fetch(OTHER)
    _, rows = read_csv(by_source(february)["roster"].data)
    assert len(rows) == 28 and {r["unit_id"] for r in rows} == {"u99"}


def test_sql_through_an_airflow_connection_gives_the_same_bytes(
    source_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deployment names an Airflow connection, not a URL; it must reach the same database and
    give byte-identical extracts (identical bytes are not landed twice).

    The SQLAlchemy URL itself is a valid connection URI: `sqlite:////abs/path.db` (four slashes)
    and `postgresql://user@host:port/db`."""
    from airflow.sdk import BaseHook

    monkeypatch.setenv("AIRFLOW_CONN_KAOHE_SRC", source_url)
    airflow_conn = BaseHook.get_connection("kaohe_src")
    assert airflow_conn.conn_type == ("sqlite" if source_url.startswith("sqlite") else "postgres")

    extracts, notes = SqlConnector(QUERIES, conn_id="kaohe_src").fetch(MONTH)
    assert_month_extracts(extracts, notes, "sql")
    direct, _ = SqlConnector(QUERIES, url=source_url).fetch(MONTH)
    assert extracts == direct


# --- 3. HTTP -------------------------------------------------------------------------------------
class Api(ThreadingHTTPServer):
    """The HR system's JSON API: `/api/roster` paged, `/api/attendance` a bare list; it records
    every request so the test can see what the connector asked for."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ApiHandler)
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.roster = {  # March: 7 people, more than two pages of 3; a field kaohe does not know
            MONTH: [{**r, "badge_colour": "blue"} for r in roster_rows(MONTH)[:7]],
            OTHER: roster_rows(OTHER)[:2],
        }
        self.attendance = {
            m: [{**r, "date": r["date"].isoformat()} for r in attendance_rows(m)[:6]]
            for m in (OTHER, MONTH)
        }

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class ApiHandler(BaseHTTPRequestHandler):
    server: Api

    def do_GET(self) -> None:  # the name http.server dispatches to
        url = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.server.requests.append((url.path, q))
        month = q.get("month", "")
        if url.path == "/api/roster":
            page, size = int(q["page"]), int(q["page_size"])
            rows = self.server.roster.get(month, [])
            more = page * size < len(rows)
            body: Any = {
                "rows": rows[(page - 1) * size : page * size],
                "next_page": page + 1 if more else None,
            }
        elif url.path == "/api/attendance":
            body = self.server.attendance.get(month, [])
        else:
            self.send_error(404)
            return
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass


@pytest.fixture
def api(request: pytest.FixtureRequest) -> Api:
    """A live API on 127.0.0.1, an ephemeral port, shut down however the test ends."""
    server = Api()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    request.addfinalizer(stop)
    return server


@pytest.mark.parametrize("via", ["base_url", "conn_id"])
def test_http_fetches_every_page_of_the_month_in_order(
    api: Api, via: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A roster longer than a page must arrive whole and in the API's order, only the month asked
    for is requested, and an endpoint answering with a bare list is one page."""
    endpoints = {"roster": "api/roster", "attendance": "api/attendance"}
    if via == "conn_id":
        monkeypatch.setenv("AIRFLOW_CONN_KAOHE_HTTP", api.base_url)
        conn = HttpConnector(endpoints, conn_id="kaohe_http", page_size=3)
    else:
        conn = HttpConnector(endpoints, base_url=api.base_url + "/", page_size=3)

    extracts, notes = conn.fetch(MONTH)

    roster_calls = [(q["page"], q["page_size"]) for p, q in api.requests if p == "/api/roster"]
    assert roster_calls == [("1", "3"), ("2", "3"), ("3", "3")]  # 7 rows = 3 pages, in order
    assert [p for p, _ in api.requests].count("/api/attendance") == 1
    assert {q["month"] for _, q in api.requests} == {MONTH}

    got = by_source(extracts)
    assert (got["roster"].name, got["attendance"].name) == (
        "roster-http.csv",
        "attendance-http.csv",
    )
    header, rows = read_csv(got["roster"].data)
    assert header == ROSTER_COLS
    want = as_text(api.roster[MONTH], ROSTER_COLS)
    assert [r["person_id"] for r in rows] == [f"{i:04d}" for i in range(1, 8)]
    assert [{k: v for k, v in r.items() if k != "post_coefficient"} for r in rows] == [
        {k: v for k, v in w.items() if k != "post_coefficient"} for w in want
    ]
    assert [float(r["post_coefficient"]) for r in rows] == [
        r["post_coefficient"] for r in api.roster[MONTH]
    ]
    assert any("badge_colour" in n for n in notes), notes  # the unknown field is named

    header, rows = read_csv(got["attendance"].data)
    assert header == ATTENDANCE_COLS
    assert rows == as_text(api.attendance[MONTH], ATTENDANCE_COLS)
    assert {r["duty_filed"] for r in rows} == {"0", "1", ""}  # JSON null beside ints, not `1.0`


# --- 4. end to end -------------------------------------------------------------------------------
def plain(frame: pd.DataFrame, cols: list[str]) -> list[dict[str, Any]]:
    """Warehouse rows as plain values whatever the database's types: dates as ISO text, NULL as
    None, integers as int."""

    def cell(v: Any) -> Any:
        if v is None or (not isinstance(v, str) and pd.isna(v)):
            return None
        if isinstance(v, dt.date):
            return v.isoformat()[:10]
        return v

    rows = [{c: cell(r[c]) for c in cols} for r in frame.to_dict("records")]
    return sorted(rows, key=lambda r: (r["person_id"], str(r.get("date"))))


def test_sql_source_end_to_end_loads_exactly_the_months_source_rows(
    kaohe: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deployment config alone switches the intake to a database: the warehouse then holds
    March's source rows, no more, no fewer, none quarantined, traceable to the landed CSV."""
    source = f"sqlite:///{tmp_path / 'hr.db'}"
    build_source(source)
    monkeypatch.setenv(
        "KAOHE_CONNECTOR", json.dumps({"kind": "sql", "url": source, "queries": QUERIES})
    )

    result = run_month(MONTH, "run-1", "demo")

    url = kaohe.warehouse_url
    assert result["loaded"]["roster"] == 30 and result["loaded"]["attendance"] == 90
    roster = table(url, "roster")
    assert set(roster["month"]) == {MONTH}  # February never reached the warehouse
    want = [{**r, "post_coefficient": float(r["post_coefficient"])} for r in roster_rows(MONTH)]
    assert plain(roster, ROSTER_COLS) == want
    attendance = table(url, "attendance")
    assert set(attendance["month"]) == {MONTH}
    want_att = [{**r, "date": r["date"].isoformat()} for r in attendance_rows(MONTH)]
    got_att = plain(attendance, ATTENDANCE_COLS)
    for r in got_att:
        for flag in ("duty_filed", "duty_reviewed"):
            r[flag] = None if r[flag] is None else int(r[flag])
    assert got_att == want_att
    assert table(url, "mart_quarantine").empty
    assert set(roster["source_file"]) == {"roster-sql.csv"}
    assert set(table(url, "landing_log")["name"]) == {"roster-sql.csv", "attendance-sql.csv"}
