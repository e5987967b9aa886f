"""PostgreSQL: the month marts partitioned by scheme and then by month, so that a month's rows
are written into a table of their own and swapped in.

Replacing a month by DELETE and INSERT in one transaction is slow on PostgreSQL: the deleted
rows stay in the primary key's index until the transaction ends, so each new row's key check
meets the row it replaces and reads it from the table (a rerun of a 200,000-people month spent
19 s waiting for its writes, against 3 s the first time). Written as a table of its own, a month
is loaded without a key (a bare COPY), keyed once (one sort), and swapped for the old month's
table (drop, attach) as the last thing before the commit, all in the scoring transaction:
readers see the old month until it commits, and no half-written month is ever visible. Readers
of the same scheme's mart wait from the swap to the commit, milliseconds, once the readers the
swap found have finished; other schemes' readers never wait. A reader in a REPEATABLE READ or
SERIALIZABLE transaction begun before the commit, which first touches the month after it,
finds the month empty rather than as it was (DELETE and INSERT would have shown it the old rows);
kaohe's own reads are single statements.

A writer with a second connection (etl.bulk.writing) loads and keys its new months there, beside
the scoring transaction, which meanwhile writes the other marts: two server processes instead of
one, which a city month's writes wait for. Such a table is committed before the swap, under a name
no reader looks at (`..._202603_n` and the writer's token); it is attached or dropped when the
transaction ends, and one whose writer died is dropped by the next scoring (`sweep_leftovers`),
once the advisory lock its writer's connection held is free.

The partitions are named after the mart, a hash of the scheme id (any text) and the month:
`mart_indicator_score_3f2a9c0b1d4e_202603`. SQLite keeps plain tables (its deletes leave no such
trace), and so does a PostgreSQL warehouse made before the marts were partitioned: its writes
take the DELETE and INSERT path (`Partitioned.of` says which).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateTable

# the marts keyed by (scheme_id, month, ...) and replaced a month at a time
MONTH_MARTS = (
    "mart_monthly_score",
    "mart_indicator_score",
    "mart_component_score",
    "mart_adjustment",
    "mart_department_score",
)
_MONTH = re.compile(r"[0-9]{4}-[0-9]{2}")
# a new month loaded beside the transaction: `{leaf}_n{token}`
_LOADED_BESIDE = re.compile(r"(mart_[a-z_]+_[0-9a-f]{12}_[0-9]{6})_n([0-9a-f]{8})")
_LOADER_LOCKS = 0x6B616F  # advisory lock class of writers' tokens ("kao")
Execute = Callable[[str], None]
_PG = postgresql.dialect()


def loader_lock(token: str) -> str:
    """The advisory lock key (two ints, as SQL) that a writer's second connection holds while it
    lives, and that the sweep tries to find a dead writer's tables."""
    return f"{_LOADER_LOCKS}, hashtext({literal(token)})"


def partition_by(table: str) -> dict[str, Any]:
    """The table options that make `table` a partitioned parent on PostgreSQL (none elsewhere)."""
    return {"postgresql_partition_by": "LIST (scheme_id)"} if table in MONTH_MARTS else {}


def literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def scheme_part(table: str, scheme_id: str) -> str:
    return f"{table}_{hashlib.sha256(scheme_id.encode()).hexdigest()[:12]}"


def month_part(table: str, scheme_id: str, month: str) -> str:
    if not _MONTH.fullmatch(month):
        raise ValueError(f"{table}: month {month!r} is not YYYY-MM")
    return f"{scheme_part(table, scheme_id)}_{month.replace('-', '')}"


class Partitioned:
    """The partition work of one transaction on PostgreSQL, done through its `execute` (a
    statement) and `scalar` (a query's one value).

    Creating a partition locks its parent against every reader until that transaction ends: so
    the scoring step makes its scheme's partitions in a short transaction of their own before it
    writes (`prepare_scheme`), and the scoring transaction takes its exclusive locks only in
    `put_in_place`, the last thing before its commit, all at once and in name order, so that two
    runs of one scheme take turns there rather than deadlock.
    """

    def __init__(
        self,
        execute: Execute,
        scalar: Callable[[str], Any],
        token: str = "",
        beside: Execute | None = None,
    ) -> None:
        """`beside`: the `execute` of the second connection new months may be loaded on (with
        the advisory lock of `token` held by it)."""
        self._execute, self._scalar, self._beside = execute, scalar, beside
        self.token = token or secrets.token_hex(4)
        self._kinds: dict[str, bool] = {}
        # month partitions to put in place: (mart, scheme, month, whether rows were loaded)
        self._swaps: dict[str, tuple[str, str, str, bool]] = {}

    @classmethod
    def on(cls, raw: Any) -> Partitioned:
        """The partition work of a psycopg connection's transaction (SQL sent as it is: ids
        may hold % and :)."""
        return cls(raw.execute, lambda sql: raw.execute(sql).fetchone()[0])

    def learn_kinds(self) -> None:
        """Which month marts are partitioned, asked now (later answers need no query)."""
        for name in MONTH_MARTS:
            self._partitioned(name)

    def of(self, table: sa.Table) -> bool:
        """Whether `table` is a partitioned parent here (a warehouse made before the partitions
        were introduced has plain tables)."""
        return self._partitioned(table.name)

    def _partitioned(self, name: str) -> bool:
        if name not in MONTH_MARTS:
            return False
        if name not in self._kinds:
            kind = self._scalar(f"SELECT relkind FROM pg_class WHERE oid = to_regclass('{name}')")
            self._kinds[name] = kind == "p"
        return self._kinds[name]

    def _create_once(self, name: str, ddl: str) -> None:
        """Run `ddl` (a CREATE ... IF NOT EXISTS of `name`) unless `name` exists. Two runs
        creating it at once take turns on an advisory lock, and the second finds it made."""
        if self._scalar(f"SELECT to_regclass({literal(name)}) IS NOT NULL"):
            return
        self._execute(f"SELECT pg_advisory_xact_lock(hashtext({literal(name)}))")
        self._execute(ddl)

    def ensure_scheme(self, table: sa.Table, scheme_id: str) -> str:
        return self._scheme(table.name, scheme_id)

    def _scheme(self, name: str, scheme_id: str) -> str:
        part = scheme_part(name, scheme_id)
        self._create_once(
            part,
            f'CREATE TABLE IF NOT EXISTS "{part}" PARTITION OF "{name}" '
            f"FOR VALUES IN ({literal(scheme_id)}) PARTITION BY LIST (month)",
        )
        return part

    def prepare_scheme(self, scheme_id: str) -> None:
        """The scheme's partition of each partitioned month mart, made if missing."""
        for name in MONTH_MARTS:
            if self._partitioned(name):
                self._scheme(name, scheme_id)

    def ensure_month(self, table: sa.Table, scheme_id: str, month: str) -> None:
        """The partition a row of (scheme_id, month) goes to, made empty (with its key) if it is
        not there: what a plain insert into the mart needs."""
        parent = self.ensure_scheme(table, scheme_id)
        leaf = month_part(table.name, scheme_id, month)
        if leaf in self._swaps:  # its rows would go to the table the swap drops
            raise ValueError(f"{table.name}: ({scheme_id}, {month}) is both replaced and added to")
        self._create_once(
            leaf,
            f'CREATE TABLE IF NOT EXISTS "{leaf}" PARTITION OF "{parent}" '
            f"FOR VALUES IN ({literal(month)})",
        )

    def swap_month(
        self,
        table: sa.Table,
        scheme_id: str,
        month: str,
        load: Callable[[str, bool], None] | None,
    ) -> None:
        """Load what `load` writes (given a table name, and whether it is loaded beside) into a
        new table, bare, and key it, here in the transaction; it takes the old month's place in
        `put_in_place`. Without `load` the month is left empty."""
        self.register(table, scheme_id, month, loaded=load is not None)
        if load is not None:
            self.load(table, scheme_id, month, load, beside=False)

    def register(self, table: sa.Table, scheme_id: str, month: str, loaded: bool) -> None:
        """The month of `table` is replaced by the table `load` makes for it (or emptied): on
        the transaction's thread, in the order of the transaction's writes."""
        leaf = month_part(table.name, scheme_id, month)
        if leaf in self._swaps:
            raise ValueError(f"{table.name}: ({scheme_id}, {month}) is replaced twice")
        self._swaps[leaf] = (table.name, scheme_id, month, loaded)

    def load(
        self,
        table: sa.Table,
        scheme_id: str,
        month: str,
        load: Callable[[str, bool], None],
        beside: bool,
    ) -> None:
        """The new month of `table` made, filled by `load`, keyed and analysed: in the
        transaction, or (`beside`) on the second connection. It is made from the warehouse's
        own columns, not LIKE the mart, which would wait for any lock the transaction holds on
        the mart, and the transaction for it; and with autovacuum off until it is in place (a
        committed table of a million fresh rows is what autovacuum picks first, and would hold
        up the attach)."""
        execute = self._beside if beside and self._beside is not None else self._execute
        leaf = month_part(table.name, scheme_id, month)
        new = self.loaded_as(leaf)
        columns = [c._copy() for c in table.columns]
        for c in columns:
            c.primary_key = False
        ddl = str(CreateTable(sa.Table(new, sa.MetaData(), *columns)).compile(dialect=_PG))
        execute(ddl.rstrip() + " WITH (autovacuum_enabled = false)")
        # the rows are checked against the month's bounds as they arrive, which also spares the
        # attach a scan of them
        execute(
            f'ALTER TABLE "{new}" ADD CONSTRAINT "{leaf}_bound" '
            f"CHECK (scheme_id = {literal(scheme_id)} AND month = {literal(month)})"
        )
        load(new, beside)
        key = ", ".join(f'"{c.name}"' for c in table.primary_key.columns)
        execute(f'ALTER TABLE "{new}" ADD CONSTRAINT "{new}_pkey" PRIMARY KEY ({key})')
        execute(f'ANALYZE "{new}"')  # the first reads after the commit plan with its figures

    def loaded_as(self, leaf: str) -> str:
        """The name a new month of `leaf` is loaded under until it takes the leaf's place."""
        return f"{leaf}_n{self.token}"

    def put_in_place(self) -> None:
        """Each loaded month in its old table's place: drop, attach, rename. The scheme
        partitions involved are locked first, together and in name order."""
        if not self._swaps:
            return
        parents = {leaf: self._scheme(t, sid) for leaf, (t, sid, _, _) in self._swaps.items()}
        self._execute(
            "LOCK TABLE "
            + ", ".join(f'"{p}"' for p in sorted(set(parents.values())))
            + " IN ACCESS EXCLUSIVE MODE"
        )
        for leaf, (_, _, month, loaded) in self._swaps.items():
            new = self.loaded_as(leaf)
            self._execute(f'DROP TABLE IF EXISTS "{leaf}"')
            if not loaded:
                continue
            self._execute(
                f'ALTER TABLE "{parents[leaf]}" ATTACH PARTITION "{new}" '
                f"FOR VALUES IN ({literal(month)})"
            )
            self._execute(f'ALTER TABLE "{new}" RENAME TO "{leaf}"')
            self._execute(f'ALTER INDEX "{new}_pkey" RENAME TO "{leaf}_pkey"')
            self._execute(f'ALTER TABLE "{leaf}" DROP CONSTRAINT "{leaf}_bound"')
            self._execute(f'ALTER TABLE "{leaf}" RESET (autovacuum_enabled)')
        self._swaps.clear()

    def sweep_leftovers(self) -> list[str]:
        """Drop the new months a writer loaded beside and neither attached nor dropped because
        its process died: those whose writer's advisory lock is free. Each is dropped under a
        savepoint: one that cannot be (another owner, say) is left, and scoring goes on.
        Returns the names dropped."""
        names = self._scalar(
            "SELECT coalesce(array_agg(relname::text ORDER BY relname), '{}') FROM pg_class "
            "WHERE relkind = 'r' AND pg_table_is_visible(oid) "
            "AND relname ~ '^mart_[a-z_]+_[0-9a-f]{12}_[0-9]{6}_n[0-9a-f]{8}$'"
        )
        dropped = []
        for name in names:
            match = _LOADED_BESIDE.fullmatch(name)
            if not match or not self._scalar(
                f"SELECT pg_try_advisory_xact_lock({loader_lock(match.group(2))})"
            ):
                continue
            self._execute("SAVEPOINT kaohe_sweep")
            try:
                self._execute(f'DROP TABLE IF EXISTS "{name}"')
            except Exception:  # left for a later sweep, or for the DBA
                self._execute("ROLLBACK TO SAVEPOINT kaohe_sweep")
                continue
            self._execute("RELEASE SAVEPOINT kaohe_sweep")
            dropped.append(name)
        return dropped
