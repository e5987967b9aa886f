"""PostgreSQL: the month marts partitioned by scheme and then by month, so that a month's rows
are written into a table of their own and swapped in.

Replacing a month by DELETE and INSERT in one transaction is slow on PostgreSQL: the deleted
rows stay in the primary key's index until the transaction ends, so each new row's key check
meets the row it replaces and reads it from the table (a rerun of a 200,000-people month spent
19 s waiting for its writes, against 3 s the first time). Written as a table of its own, a month
is loaded without a key (a bare COPY), keyed once (one sort), and swapped for the old month's
table (drop, attach) as the last thing before the commit, all in the scoring transaction:
readers see the old month until it commits, and no half-written month is ever visible. Readers
of the same scheme's mart wait from the swap to the commit, milliseconds; other schemes' readers
never wait.

The partitions are named after the mart, a hash of the scheme id (any text) and the month:
`mart_indicator_score_3f2a9c0b1d4e_202603`. SQLite keeps plain tables (its deletes leave no such
trace), and so does a PostgreSQL warehouse made before the marts were partitioned: its writes
take the DELETE and INSERT path (`Partitioned.of` says which).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

# the marts keyed by (scheme_id, month, ...) and replaced a month at a time
MONTH_MARTS = (
    "mart_monthly_score",
    "mart_indicator_score",
    "mart_component_score",
    "mart_adjustment",
    "mart_department_score",
)
_MONTH = re.compile(r"\d{4}-\d{2}")


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
    """The partition work of one writing transaction on PostgreSQL, done through its `execute`
    (a statement) and `scalar` (a query's one value)."""

    def __init__(self, execute: Callable[[str], None], scalar: Callable[[str], Any]) -> None:
        self._execute, self._scalar = execute, scalar
        self._kinds: dict[str, bool] = {}
        self._swaps: dict[str, tuple[str, str]] = {}  # month partitions loaded, not yet in place

    def of(self, table: sa.Table) -> bool:
        """Whether `table` is a partitioned parent here (a warehouse made before the partitions
        were introduced has plain tables)."""
        if table.name not in MONTH_MARTS:
            return False
        if table.name not in self._kinds:
            kind = self._scalar(
                f"SELECT relkind FROM pg_class WHERE oid = to_regclass('{table.name}')"
            )
            self._kinds[table.name] = kind == "p"
        return self._kinds[table.name]

    def _create_once(self, name: str, ddl: str) -> None:
        """Run `ddl` (a CREATE ... IF NOT EXISTS of `name`) unless `name` exists. Two transactions
        creating it at once take turns on an advisory lock, and the second finds it made."""
        if self._scalar(f"SELECT to_regclass({literal(name)}) IS NOT NULL"):
            return
        self._execute(f"SELECT pg_advisory_xact_lock(hashtext({literal(name)}))")
        self._execute(ddl)

    def ensure_scheme(self, table: sa.Table, scheme_id: str) -> str:
        part = scheme_part(table.name, scheme_id)
        self._create_once(
            part,
            f'CREATE TABLE IF NOT EXISTS "{part}" PARTITION OF "{table.name}" '
            f"FOR VALUES IN ({literal(scheme_id)}) PARTITION BY LIST (month)",
        )
        return part

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
        self, table: sa.Table, scheme_id: str, month: str, load: Callable[[str], None]
    ) -> None:
        """Load what `load` (given a table name) writes into a new table, bare, and key it; it
        takes the old month's place in `put_in_place`, the last thing before the commit."""
        parent = self.ensure_scheme(table, scheme_id)
        leaf = month_part(table.name, scheme_id, month)
        if leaf in self._swaps:
            raise ValueError(f"{table.name}: ({scheme_id}, {month}) is replaced twice")
        new, key = f"{leaf}_new", ", ".join(f'"{c.name}"' for c in table.primary_key.columns)
        self._execute(f'CREATE TABLE "{new}" (LIKE "{table.name}" INCLUDING DEFAULTS)')
        # the rows are checked against the month's bounds as they arrive, which also spares the
        # attach a scan of them
        self._execute(
            f'ALTER TABLE "{new}" ADD CONSTRAINT "{leaf}_bound" '
            f"CHECK (scheme_id = {literal(scheme_id)} AND month = {literal(month)})"
        )
        load(new)
        self._execute(f'ALTER TABLE "{new}" ADD CONSTRAINT "{leaf}_pkey_new" PRIMARY KEY ({key})')
        self._swaps[leaf] = (parent, month)

    def put_in_place(self) -> None:
        """Each loaded month in its old table's place: drop, attach, rename. Dropping locks the
        scheme's partition against readers until the commit, so this runs last, and takes
        milliseconds."""
        for leaf, (parent, month) in self._swaps.items():
            new = f"{leaf}_new"
            self._execute(f'DROP TABLE IF EXISTS "{leaf}"')
            self._execute(
                f'ALTER TABLE "{parent}" ATTACH PARTITION "{new}" FOR VALUES IN ({literal(month)})'
            )
            self._execute(f'ALTER TABLE "{new}" RENAME TO "{leaf}"')
            self._execute(f'ALTER INDEX "{leaf}_pkey_new" RENAME TO "{leaf}_pkey"')
            self._execute(f'ALTER TABLE "{leaf}" DROP CONSTRAINT "{leaf}_bound"')
        self._swaps.clear()
