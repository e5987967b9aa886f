"""The bulk path between DataFrames and the warehouse: column-wise reads, and writes that commit
together or not at all, on the fastest route each database offers.

Scoring a city month reads and writes millions of rows; building them row by row through the DBAPI
and SQLAlchemy costs several times the database's own work. Where an ADBC driver can reach the
database (a SQLite file, a PostgreSQL server) rows travel as Arrow columns instead: results are
fetched whole, inserts go through the driver's bulk ingest (binary COPY on PostgreSQL, statements
bound in C on SQLite). Without one (an in-memory SQLite) the engine's own connection is used.

ADBC's SQLite driver carries its own copy of the SQLite library. Two copies in one process must
never have the same file open at once: POSIX locks are per process, so closing the file in one
copy drops the locks of the other, and a copy that believes it is the last user checkpoints and
deletes the write-ahead log under the other (sqlite.org, "How to corrupt", 2.2.1). So the engine
keeps no idle connection (etl.warehouse.engine_for), and a Reader or Writer on ADBC holds no
engine connection while it works: callers finish with the engine before and start after.
"""

from __future__ import annotations

import contextlib
import functools
import json
import secrets
import threading
from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Any, TypeVar

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from etl.partitions import Partitioned, loader_lock, month_part

T = TypeVar("T")
BUSY_MS = 60_000  # wait for another writer as long as the engine does
CHUNK_ROWS = 200_000  # rows per slice of a bulk insert: large enough to keep the C loops busy


def _column(values: pd.Series, kind: sa.types.TypeEngine) -> list[Any]:
    """One column as plain Python values, None for blanks, converted column-wise (never per cell
    in Python, but for JSON documents, which only the quarantine carries)."""
    if isinstance(kind, sa.Integer) and values.dtype.kind == "f":  # whole numbers with NaN
        values = values.astype("Int64")
    if isinstance(kind, sa.JSON):
        return [
            v if v is None or isinstance(v, str) else json.dumps(v, ensure_ascii=False)
            for v in values
        ]
    return values.astype(object).where(values.notna(), None).tolist()


def _arrow_column(values: pd.Series, kind: sa.types.TypeEngine, dialect: str = "") -> object:
    """A column as an Arrow array of the warehouse type, converted whole (NaN and None: null).

    PostgreSQL's binary COPY needs the column's own type (int4, date); SQLite stores a date as the
    ISO text the frames carry, and so does COPY CSV (dialect "").
    """
    import pyarrow as pa

    if isinstance(kind, sa.JSON):
        return pa.array(_column(values, kind), type=pa.string())
    if isinstance(kind, sa.Boolean):
        return pa.array(values, type=pa.bool_(), from_pandas=True)
    if isinstance(kind, sa.Integer):
        whole = values.astype("Int64") if values.dtype.kind in "fO" else values
        small = dialect == "postgresql" and not isinstance(kind, sa.BigInteger)
        return pa.array(whole, type=pa.int32() if small else pa.int64(), from_pandas=True)
    if isinstance(kind, sa.Float):
        return pa.array(values.astype(float), type=pa.float64(), from_pandas=True)
    text = pa.array(values.astype("str"), type=pa.string(), from_pandas=True)
    if isinstance(kind, sa.Date) and dialect == "postgresql":
        return text.cast(pa.date32())
    return text


def _arrow_table(df: pd.DataFrame, table: sa.Table, dialect: str = "") -> object:
    import pyarrow as pa

    return pa.table({c: _arrow_column(df[c], table.c[c].type, dialect) for c in df.columns})


def _csv(df: pd.DataFrame, table: sa.Table) -> memoryview:
    """The frame as COPY CSV, written by Arrow in C++: a null is an empty field, every text value
    is quoted (so an empty text stays empty text), numbers are written to round-trip exactly."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    out = pa.BufferOutputStream()
    options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
    pacsv.write_csv(_arrow_table(df, table), out, options)
    return memoryview(out.getvalue())


def _rows(df: pd.DataFrame, table: sa.Table) -> Iterable[tuple]:
    return zip(*(_column(df[c], table.c[c].type) for c in df.columns), strict=True)


def _columns(table: sa.Table, df: pd.DataFrame) -> list[str]:
    return [c.name for c in table.columns if c.name in df.columns]


def bulk_insert(conn: Connection, table: sa.Table, df: pd.DataFrame) -> int:
    """Insert a frame on an engine connection, inside the caller's transaction.

    PostgreSQL: COPY (psycopg 3). SQLite: executemany on the raw connection. Either way the rows
    go in slices of CHUNK_ROWS, so the text or Python values of only one slice exist at a time
    beside the frame. A failure rolls back with everything else the transaction holds.
    """
    if df.empty:
        return 0
    cols = _columns(table, df)
    df = df[cols]
    raw = conn.connection.dbapi_connection
    collist = ", ".join(f'"{c}"' for c in cols)
    slices = (df.iloc[i : i + CHUNK_ROWS] for i in range(0, len(df), CHUNK_ROWS))
    if conn.dialect.name not in ("postgresql", "sqlite"):
        conn.execute(table.insert(), [dict(zip(cols, r, strict=True)) for r in _rows(df, table)])
        return len(df)
    try:
        if conn.dialect.name == "postgresql":
            copy = f'COPY "{table.name}" ({collist}) FROM STDIN (FORMAT csv)'
            with raw.cursor() as cur, cur.copy(copy) as cp:
                for part in slices:
                    cp.write(_csv(part, table))
        else:
            marks = ", ".join("?" for _ in cols)
            insert = f'INSERT INTO "{table.name}" ({collist}) VALUES ({marks})'
            cur = raw.cursor()
            for part in slices:
                cur.executemany(insert, _rows(part, table))
    except Exception as exc:
        # SQLAlchemy does not see what fails on the raw connection: when the server dropped it
        # (a killed backend, a restart), it is marked invalid here, so that the caller's rollback
        # does not replace this error, which says why, by "the connection is lost"
        if conn.dialect.is_disconnect(exc, raw, None):
            conn.invalidate(exc)
        raise
    return len(df)


# --- ADBC ----------------------------------------------------------------------------------------


def _adbc_target(engine: Engine) -> tuple[Any, str] | None:
    """The ADBC driver module and what it connects to, or None where ADBC cannot follow."""
    url = engine.url
    if engine.dialect.name == "sqlite" and url.database not in (None, "", ":memory:"):
        import adbc_driver_sqlite.dbapi as adbc

        return adbc, url.database
    if engine.dialect.name == "postgresql":
        import adbc_driver_postgresql.dbapi as adbc

        return adbc, url.set(drivername="postgresql").render_as_string(hide_password=False)
    return None


def _adbc_connect(engine: Engine, target: tuple[Any, str], transaction: bool = False) -> Any:
    """An ADBC connection; with `transaction`, its statements wait for commit() or rollback()
    on `.adbc_connection` (SQLite's pragmas must be set before a transaction begins)."""
    adbc, where = target
    db = adbc.connect(where, autocommit=True)
    try:
        if engine.dialect.name == "sqlite":
            with db.cursor() as cur:
                cur.execute(f"PRAGMA busy_timeout = {BUSY_MS}")
                cur.execute("PRAGMA synchronous = NORMAL")
        if transaction:
            db.adbc_connection.set_autocommit(False)
    except BaseException:
        db.close()  # never leave an ADBC handle on the file (module docstring)
        raise
    return db


def _run(db: Any, sql: str) -> None:
    """One statement on an ADBC connection."""
    with db.cursor() as cur:
        cur.execute(sql)


def _sql(stmt: sa.Executable, dialect: sa.Dialect) -> str:
    """The statement as SQL text with its values inline, for an ADBC driver. Compiled for a
    dialect of "named" placeholders: psycopg's own doubles every % in a literal (its placeholders
    are %s), which ADBC would send as it is, and 'a%b' would match 'a%%b' instead."""
    plain = dialect.__class__(paramstyle="named")
    return str(stmt.compile(dialect=plain, compile_kwargs={"literal_binds": True}))


# --- reading -------------------------------------------------------------------------------------


def _encoded(table: Any, categories: Collection[str]) -> Any:
    """The Arrow table with the text columns named in `categories` dictionary-encoded, which
    to_pandas turns into Categoricals: millions of survey ratings then carry their few rounds,
    items and relations (and their raters and ratees) as integer codes instead of a string per
    cell, a quarter of the memory, and grouping on them needs no hashing of text."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for name in categories:
        at = table.schema.get_field_index(name)
        if at >= 0 and pa.types.is_string(table.schema.field(at).type):
            table = table.set_column(at, name, pc.dictionary_encode(table[name]))
    return table


class Reader:
    """Reads the warehouse as DataFrames: dates as ISO text, flags as bool.

    On ADBC each read has a connection of its own while it runs, so reads may run in parallel
    threads, and sees what is committed: callers read before they write. On PostgreSQL a
    connection that served a read serves the next one (`reading` closes them): opening one costs
    the server a process and the driver its catalogue lookups, and a scoring run reads some
    twenty times. A SQLite file's connections are closed after each read (module docstring).
    """

    def __init__(self, engine: Engine, conn: Connection | None) -> None:
        self._engine, self._conn = engine, conn
        self._target = None if conn is not None else _adbc_target(engine)
        self._idle: list[Any] = []  # ADBC connections between reads
        self._lock = threading.Lock()
        self._closed = False

    def _fetch(self, sql: str) -> Any:
        """The result as an Arrow table, on an idle connection if there is one (back among the
        idle ones afterwards, unless the read failed or the Reader is closed). A read that fails
        on an idle connection is read once more on a new one: the server may have closed it
        meanwhile (idle_session_timeout, a restart)."""
        with self._lock:
            db = self._idle.pop() if self._idle else None
        if db is not None:
            with contextlib.suppress(Exception):  # the new connection below says what is wrong
                return self._fetch_on(db, sql)
        return self._fetch_on(_adbc_connect(self._engine, self._target), sql)

    def _fetch_on(self, db: Any, sql: str) -> Any:
        try:
            with db.cursor() as cur:
                if self._engine.dialect.name == "sqlite":
                    # infer column types from the whole result, not the first 1,024 rows: a
                    # column NULL there and text later would otherwise fail
                    cur.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(2**30)})
                cur.execute(sql)
                table = cur.fetch_arrow_table()
        except BaseException:
            db.close()  # its state is not known
            raise
        with self._lock:
            keep = self._engine.dialect.name == "postgresql" and not self._closed
            if keep:
                self._idle.append(db)
        if not keep:
            db.close()
        return table

    def close(self) -> None:
        with self._lock:
            idle, self._idle, self._closed = self._idle, [], True
        for db in idle:
            db.close()

    def query(self, stmt: sa.Select, categories: Collection[str] = ()) -> pd.DataFrame:
        """Any SELECT, its columns named by their labels; the text columns named in
        `categories` as pandas Categoricals (each distinct value held once, its rows as codes)."""
        sql = _sql(stmt, self._engine.dialect)
        if self._conn is not None:
            cur = self._conn.connection.dbapi_connection.cursor()
            cur.execute(sql)
            frame = pd.DataFrame(cur.fetchall(), columns=[c.name for c in stmt.selected_columns])
            return frame.astype(dict.fromkeys([c for c in categories if c in frame], "category"))
        return _encoded(self._fetch(sql), categories).to_pandas()

    def frame(
        self,
        table: sa.Table,
        *where: Any,
        columns: list[str] | None = None,
        categories: Collection[str] = (),
    ) -> pd.DataFrame:
        """Rows of a table, the columns typed as the table declares them (`categories`: see
        query)."""
        names = columns or [c.name for c in table.columns]
        picked = [
            sa.cast(table.c[n], sa.Text).label(n)
            if isinstance(table.c[n].type, sa.Date)
            else table.c[n]
            for n in names
        ]
        frame = self.query(sa.select(*picked).where(*where), categories)
        for n in names:
            kind = table.c[n].type
            if isinstance(kind, sa.String | sa.Date) and frame[n].dtype.kind in "fiu":
                frame[n] = pd.Series([None] * len(frame), index=frame.index, dtype=object)  # NULLs
            elif isinstance(kind, sa.Boolean):
                frame[n] = frame[n].astype(bool)
            elif isinstance(kind, sa.Float) and frame[n].dtype == object:
                frame[n] = frame[n].astype(float)
        return frame

    def all(self, jobs: dict[str, Callable[[], T]], workers: int) -> dict[str, T]:
        """Every job's result, read side by side (each ADBC read has its own connection, and
        the drivers release the interpreter lock while they fetch), or one after the other on
        the engine's connection."""
        if self._conn is not None or workers < 2:
            return {name: job() for name, job in jobs.items()}
        with ThreadPoolExecutor(workers, thread_name_prefix="kaohe-read") as pool:
            futures = {name: pool.submit(job) for name, job in jobs.items()}
            return {name: f.result() for name, f in futures.items()}

    def values(self, column: sa.Column, *where: Any) -> list[Any]:
        """The distinct values of one column, sorted."""
        frame = self.query(sa.select(column).distinct().where(*where))
        return sorted(frame.iloc[:, 0].tolist())


def concurrent_reads(engine: Engine) -> bool:
    """Whether reads may run on other threads while the engine is used (ADBC: each read has its
    own connection)."""
    return _adbc_target(engine) is not None


@contextmanager
def reading(engine: Engine) -> Iterator[Reader]:
    if concurrent_reads(engine):
        read = Reader(engine, None)
        try:
            yield read
        finally:
            read.close()
        return
    with engine.connect() as conn:
        yield Reader(engine, conn)


def bulk_read(
    engine: Engine, table: sa.Table, *where: Any, columns: list[str] | None = None
) -> pd.DataFrame:
    """One table read through a Reader (see there)."""
    with reading(engine) as read:
        return read.frame(table, *where, columns=columns)


# --- writing -------------------------------------------------------------------------------------


class Writer:
    """Deletes and bulk inserts of one transaction, done in order.

    On ADBC the work runs on one background thread, so the database (or the driver, in C)
    writes one table while the caller computes the next: `replace` and `insert` return at once,
    and the block that opened the writer waits for everything before it commits. The caller must
    not change a frame after handing it over. Rows should arrive in primary-key order: an index
    filled in order is several times cheaper to build than one filled at random.

    A frame handed over waits only behind the one being written (`FRAMES_AHEAD`): when the
    database writes slower than the caller computes (PostgreSQL at a province's size), the caller
    waits rather than the queue holding every mart of the run in memory at once.

    With a second connection (`beside`, PostgreSQL) a partitioned mart's new months are loaded
    there, on a thread of their own, while the transaction writes the other marts
    (etl.partitions): the server writes with two processes.
    """

    FRAMES_AHEAD = 1

    def __init__(
        self,
        conn: Connection | None,
        db: Any | None,
        dialect: sa.Dialect,
        beside: tuple[Any, str] | None = None,
    ) -> None:
        """`beside`: the second ADBC connection and the token whose advisory lock it holds."""
        self._conn, self._db, self._dialect = conn, db, dialect
        self._pool = None if db is None else ThreadPoolExecutor(1, thread_name_prefix="kaohe-write")
        self._pending: list[Future[None]] = []
        self._frames: list[Future[None]] = []  # inserts not yet written
        self._loads: list[Future[None]] = []  # every new month handed to the second connection
        self._loaded_beside: list[str] = []  # the tables they are loaded into
        self._beside = None if beside is None else beside[0]
        self._beside_pool = None
        self._parts = None
        if dialect.name == "postgresql":
            token, execute = "", None
            if beside is not None:
                token, execute = beside[1], functools.partial(_run, beside[0])
                self._beside_pool = ThreadPoolExecutor(1, thread_name_prefix="kaohe-write-beside")
            self._parts = Partitioned(self._execute_sql, self._scalar, token, execute)
            self._parts.learn_kinds()  # before other threads may ask (a query on `db`)

    def _do(self, fn: Callable[..., None], *args: Any) -> Future[None] | None:
        if self._pool is None:
            fn(*args)
            return None
        for done in [f for f in [*self._pending, *self._loads] if f.done()]:
            done.result()  # a failed write stops the caller at its next step
        self._pending.append(self._pool.submit(self._after_pending, fn, *args))
        return self._pending[-1]

    def _after_pending(self, fn: Callable[..., None], *args: Any) -> None:
        if any(f.done() and f.exception() for f in self._pending):
            return  # an earlier write failed: nothing after it runs; finish() raises it
        fn(*args)

    def written(self) -> None:
        """Wait for every write handed over so far; raise the first failure."""
        for f in [*self._pending, *self._loads]:
            f.result()

    def finish(self) -> None:
        """Wait for every write; raise the first failure. Nothing more can be written."""
        try:
            self.written()
        finally:
            for pool in (self._pool, self._beside_pool):
                if pool is not None:
                    pool.shutdown(wait=True, cancel_futures=True)

    def discard(self) -> None:
        """After a rollback: drop the new months loaded beside (committed there; the rollback
        undid their attaching, if it was done). What cannot be dropped now is left to the next
        scoring's sweep (etl.partitions)."""
        for name in self._loaded_beside:
            with contextlib.suppress(Exception):
                _run(self._beside, f'DROP TABLE IF EXISTS "{name}"')

    def put_in_place(self) -> None:
        """What must come last before the commit: the months loaded beside their partitions
        take their places (etl.partitions)."""
        if self._parts is not None:
            self._parts.put_in_place()

    def _execute(self, stmt: sa.Executable) -> None:
        if self._db is None:
            self._conn.execute(stmt)
            return
        self._execute_sql(_sql(stmt, self._dialect))

    def _execute_sql(self, sql: str) -> None:
        if self._db is None:
            self._conn.exec_driver_sql(sql)
            return
        _run(self._db, sql)

    def _scalar(self, sql: str) -> Any:
        if self._db is None:
            return self._conn.exec_driver_sql(sql).scalar()
        with self._db.cursor() as cur:
            cur.execute(sql)
            return cur.fetchone()[0]

    def _insert(
        self, table: sa.Table, df: pd.DataFrame, into: str | None = None, db: Any | None = None
    ) -> None:
        """Insert `df` into `table`, or into the table named `into` that has its columns (on
        the ADBC connection `db`, the transaction's unless given)."""
        if into is None and self._parts is not None and self._parts.of(table):
            for sid, month in df[["scheme_id", "month"]].drop_duplicates().itertuples(index=False):
                self._parts.ensure_month(table, sid, month)
        if self._db is None:
            bulk_insert(
                self._conn,
                table if into is None else table.to_metadata(sa.MetaData(), name=into),
                df,
            )
            return
        data = _arrow_table(df[_columns(table, df)], table, self._dialect.name)
        with (db or self._db).cursor() as cur:
            cur.adbc_ingest(into or table.name, data, mode="append")

    def _load(self, table: sa.Table, df: pd.DataFrame) -> Callable[[str, bool], None] | None:
        """How a new month of `table` is loaded with `df` (etl.partitions.swap_month)."""
        if df.empty:
            return None
        return lambda name, beside: self._insert(
            table, df, into=name, db=self._beside if beside else None
        )

    def _replace_month(self, table: sa.Table, df: pd.DataFrame, scheme_id: str, month: str) -> None:
        if self._parts is not None and self._parts.of(table):
            self._parts.swap_month(table, scheme_id, month, self._load(table, df))
            return
        self._execute(table.delete().where(table.c.scheme_id == scheme_id, table.c.month == month))
        self._insert(table, df)

    def _queue_frame(self, fn: Callable[..., None], *args: Any) -> None:
        """Hand a frame's write over, waiting while FRAMES_AHEAD others wait to be written."""
        self._frames = _room(self._frames, self.FRAMES_AHEAD)
        if (queued := self._do(fn, *args)) is not None:
            self._frames.append(queued)

    def execute(self, stmt: sa.Executable) -> None:
        self._do(self._execute, stmt)

    def insert(self, table: sa.Table, df: pd.DataFrame) -> int:
        if df.empty:
            return 0
        self._queue_frame(self._insert, table, df)
        return len(df)

    def replace(self, table: sa.Table, df: pd.DataFrame, *where: Any) -> int:
        """Delete the rows matching `where`, then insert `df`."""
        self.execute(table.delete().where(*where))
        return self.insert(table, df)

    def replace_month(self, table: sa.Table, df: pd.DataFrame, scheme_id: str, month: str) -> int:
        """Make `df` the rows of (scheme_id, month) in a mart keyed by them: on a partitioned
        PostgreSQL mart, a new table swapped for the month's (etl.partitions), loaded on the
        second connection where there is one; else a delete and an insert. `df` carries the key
        columns."""
        if self._beside_pool is None or self._parts is None or not self._parts.of(table):
            self._queue_frame(self._replace_month, table, df, scheme_id, month)
            return len(df)
        # the month's replacing takes its place among the transaction's writes; its loading
        # starts on the second connection now
        new = self._parts.loaded_as(month_part(table.name, scheme_id, month))
        if new in self._loaded_beside:
            raise ValueError(f"{table.name}: ({scheme_id}, {month}) is replaced twice")
        self._do(self._parts.register, table, scheme_id, month, not df.empty)
        if (load := self._load(table, df)) is None:
            return 0
        _room(self._loads, self.FRAMES_AHEAD)
        self._loaded_beside.append(new)
        self._loads.append(
            self._beside_pool.submit(self._load_beside, table, scheme_id, month, load)
        )
        return len(df)

    def _load_beside(
        self, table: sa.Table, scheme_id: str, month: str, load: Callable[[str, bool], None]
    ) -> None:
        if any(f.done() and f.exception() for f in self._loads):
            return  # an earlier month failed: the run fails, nothing more is loaded for it
        self._parts.load(table, scheme_id, month, load, beside=True)


def _room(frames: list[Future[None]], ahead: int) -> list[Future[None]]:
    """The frames still to write, once no more than `ahead` of them wait behind the one being
    written. A write that failed stops the caller here."""
    while True:
        for f in frames:
            if f.done():
                f.result()
        frames = [f for f in frames if not f.done()]
        if len(frames) <= ahead:
            return frames
        wait(frames[:1])


def prepare_partitions(engine: Engine, scheme_id: str) -> None:
    """PostgreSQL: the scheme's partitions of the partitioned month marts, made and committed
    before a writer's transaction needs them (etl.partitions: made inside it, they would lock
    every reader of the mart out until it commits)."""
    if engine.dialect.name != "postgresql":
        return
    with engine.begin() as conn:
        parts = Partitioned.on(conn.connection.dbapi_connection)
        parts.sweep_leftovers()
        parts.prepare_scheme(scheme_id)


@contextmanager
def writing(engine: Engine) -> Iterator[Writer]:
    """A Writer whose work commits when the block ends and rolls back if it raises."""
    target = _adbc_target(engine)
    if target is None:
        with engine.begin() as conn:
            out = Writer(conn, None, engine.dialect)
            yield out
            out.put_in_place()
        return
    db = _adbc_connect(engine, target, transaction=True)
    beside = None
    try:
        beside = _beside(engine, target)
        out = Writer(None, db, engine.dialect, beside)
    except BaseException:
        db.close()
        if beside is not None:
            beside[0].close()
        raise
    try:
        try:
            yield out
        finally:
            out.finish()
        out.put_in_place()
        db.adbc_connection.commit()
    except BaseException:
        try:
            db.adbc_connection.rollback()
        finally:
            out.discard()
        raise
    finally:
        db.close()
        if beside is not None:
            beside[0].close()


def _beside(engine: Engine, target: tuple[Any, str]) -> tuple[Any, str] | None:
    """PostgreSQL: a second connection for the new months of the partitioned marts, and the
    token of the advisory lock it holds while it lives (etl.partitions.sweep_leftovers)."""
    if engine.dialect.name != "postgresql":
        return None
    db, token = _adbc_connect(engine, target), secrets.token_hex(4)
    try:
        with db.cursor() as cur:
            cur.execute(f"SELECT pg_advisory_lock({loader_lock(token)})")
            cur.fetchall()
    except BaseException:
        db.close()
        raise
    return db, token
