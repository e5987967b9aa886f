"""Helpers the tests share: small extracts written by hand, and a warehouse snapshot."""

from __future__ import annotations

import datetime as dt
import socket
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from etl.warehouse import adjustment, engine_for, md

LOGS = {"mart_run", "landing_log"}


def write(inbox: Path, month: str, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = inbox / month / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def snapshot(url: str, skip: tuple[str, ...] = ()) -> dict[str, list[tuple]]:
    """Every table but the two logs, rows sorted, for comparing one run with another."""
    eng = engine_for(url)
    out = {}
    with eng.connect() as conn:
        for t in md.sorted_tables:
            if t.name in LOGS or t.name in skip:
                continue
            rows = conn.execute(sa.select(t)).fetchall()
            out[t.name] = sorted(tuple(map(str, r)) for r in rows)
    eng.dispose()
    return out


def table(url: str, name: str, where: str = "") -> pd.DataFrame:
    eng = engine_for(url)
    with eng.connect() as conn:
        frame = pd.read_sql(sa.text(f"select * from {name} {where}"), conn)
    eng.dispose()
    return frame


def free_port() -> int:
    """A loopback port nobody listens on (for a server the test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def late_praise(conn: sa.Connection, scheme_id: str, person_id: str, day: dt.date) -> None:
    """A register row (a city-level praise) delivered late, as a correction file: the change a
    rerun after publication has to carry."""
    conn.execute(
        adjustment.insert().values(
            scheme_id=scheme_id,
            month=day.isoformat()[:7],
            source_file="late.csv",
            source_line=2,
            person_id=person_id,
            date=day,
            rule="praise_city",
            points=None,
            count=1,
            note="补录：市级表扬",
            evidence=f"市府函〔{day.year}〕{day.month}号",
        )
    )
