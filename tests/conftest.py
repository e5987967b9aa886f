"""Shared fixtures: a private Airflow home, and a warehouse on SQLite and (with KAOHE_TEST_PG_URL)
on a fresh PostgreSQL database per test."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="kaohe-airflow-")
os.environ.update(
    {
        "AIRFLOW_HOME": _AIRFLOW_HOME,
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "GX_ANALYTICS_ENABLED": "false",
        "KAOHE_RATER_SECRET": "test-secret-not-for-production",
    }
)

import sqlalchemy as sa  # noqa: E402

from etl.config import settings  # noqa: E402

PG_URL = os.environ.get("KAOHE_TEST_PG_URL")


def _pg_database() -> tuple[str, str]:
    name = f"kaohe_t_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(
        PG_URL.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    base = PG_URL.rsplit("/", 1)[0]
    return name, f"{base}/{name}"


def _drop_pg(name: str) -> None:
    admin = sa.create_engine(
        PG_URL.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as c:
        c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def warehouse_url(request, tmp_path):
    """Every warehouse test runs on both databases; PostgreSQL when KAOHE_TEST_PG_URL is set."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'warehouse.db'}"
        return
    if not PG_URL:
        pytest.skip("KAOHE_TEST_PG_URL not set")
    name, url = _pg_database()
    try:
        yield url
    finally:
        _drop_pg(name)


@pytest.fixture
def kaohe(tmp_path, warehouse_url, monkeypatch):
    """Settings for a private deployment in tmp_path, with the warehouse of this test's database."""
    monkeypatch.setenv("KAOHE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KAOHE_WAREHOUSE_URL", warehouse_url)
    for var in ("KAOHE_INBOX", "KAOHE_OUTPUT", "KAOHE_SCHEME", "KAOHE_CONNECTOR"):
        monkeypatch.delenv(var, raising=False)
    return settings()


@pytest.fixture(scope="session")
def airflow_db():
    """Airflow metadata (SQLite) for dag.test(), migrated once per session."""
    out = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return _AIRFLOW_HOME


# --- no network: listeners that record every connection made to them ---------------------------


class Listener:
    """A TCP listener that records every connection made to it."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.seen: list[tuple[str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, addr = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.seen.append(addr)
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def listeners():
    opened = [Listener()]
    try:
        opened.append(Listener(9))  # the discard port, where a default URL might point
    except OSError:
        pass
    yield opened
    for listener in opened:
        listener.close()
