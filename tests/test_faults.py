"""Faults in the middle of the work, on the real components: the warehouse connection killed during
a load, a scoring worker killed half way through a batch and during the transaction that puts the
batches together, the disk filling up while PDFs are written, the mail server down while a stage
is published. After the fault and a rerun the warehouse is exactly what a run without the fault
leaves, no month is ever half replaced, and no message goes out twice.

Each fault is injected at one point and nowhere else: a backend terminated with
pg_terminate_backend, a process stopped (SIGSTOP, so the test knows where it is) and then killed
with SIGKILL, a tmpfs too small for the PDFs (or, where the machine does not let the test mount one,
ENOSPC raised by the write that runs out of room), an SMTP port nobody listens on.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import errno
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from pypdf import PdfReader

from etl.config import settings
from etl.generate import generate
from etl.pipeline import (
    land_step,
    load_step,
    run_month,
    score_batch_step,
    score_finish_step,
    score_plan_step,
    score_step,
    validate_step,
)
from etl.warehouse import adjustment, engine_for, md
from reports.mail import DeliveryIncomplete
from reports.publish import (
    deliver_step,
    pdf_plan_step,
    pdf_step,
    plan_step,
    record_step,
    render_step,
)
from reports.render import RenderError
from tests.helpers import free_port, late_praise, snapshot, table

JAN, FEB = "2026-01", "2026-02"
SCHEME_ID = "demo-2026"  # the demo scheme's id
TODAY = dt.date(2026, 2, 8)  # the publication date of every run
SENDER = "kaohe@kaohe.example.gov.cn"
BASE_URL = "https://kaohe.example.gov.cn/files"  # the same links in every run's documents
ROOT = Path(__file__).resolve().parent.parent
# Run bookkeeping beside the run log: which run holds a month while it is in flight. A faulted
# run keeps its hold until its retry ends the run (or the DAG's failure callback frees it), so
# while the fault is being looked at the hold is left out; once the run has ended, it is not.
IN_FLIGHT = ("run_lock",)


def _state(url: str) -> dict[str, list[tuple]]:
    """The warehouse as `snapshot` sees it (every table but the run log and the landing log, which
    grow by a row per run), with the wall clock taken out: when a row was written (a file first
    landed, a stage planned or recorded, a message sent) differs between two runs, what the row
    says does not. A time that is set stays distinguishable from one that is not."""
    snap = snapshot(url)
    out = {}
    for t in md.sorted_tables:
        if t.name not in snap:
            continue
        clock = {i for i, c in enumerate(t.columns) if isinstance(c.type, sa.DateTime)}
        out[t.name] = sorted(
            tuple("<set>" if i in clock and v != "None" else v for i, v in enumerate(row))
            for row in snap[t.name]
        )
    return out


# --- 1. the warehouse connection killed in the middle of a load ---------------------------------


def _inbox_month(inbox: Path, source: Path, month: str = FEB) -> None:
    """The month's extracts in the inbox replaced by those of `source` (a corrected delivery)."""
    shutil.rmtree(inbox / month, ignore_errors=True)
    shutil.copytree(source / month, inbox / month)


@pytest.mark.parametrize("warehouse_url", ["postgresql"], indirect=True)
def test_a_load_whose_connection_is_killed_mid_copy_leaves_the_month_as_it_was(kaohe, tmp_path):
    """February is loaded, then a corrected February replaces it; the second load's connection is
    terminated while its COPY is half way through the attendance. The month stays exactly as the
    first load left it; the retried load leaves exactly what a load without the fault leaves."""
    import psycopg

    url, inbox = kaohe.warehouse_url, Path(kaohe.inbox)
    generate(inbox, 60, JAN, 2, seed=31)
    generate(tmp_path / "v2", 60, JAN, 2, seed=32)  # February as corrected
    shutil.copytree(inbox / FEB, tmp_path / "v1" / FEB)
    score_step(run_month(JAN, "jan", "demo"))
    score_step(run_month(FEB, "feb", "demo"))
    # the fault-free run: the corrected February taken over the first, and scored
    _inbox_month(inbox, tmp_path / "v2")
    score_step(run_month(FEB, "feb-corrected", "demo", reland=True))
    reference = snapshot(url)
    # back to the first February, the state the faulted run starts from
    _inbox_month(inbox, tmp_path / "v1")
    score_step(run_month(FEB, "feb-again", "demo", reland=True))
    before = snapshot(url, skip=IN_FLIGHT)
    assert before["attendance"] != reference["attendance"]

    _inbox_month(inbox, tmp_path / "v2")
    manifest = land_step(FEB, "feb-killed", scheme_ref="demo", reland=True)
    validation = validate_step(json.loads(json.dumps(manifest)))
    # Another transaction inserts, and holds uncommitted, the key of a row in the middle of the
    # staged attendance (one the month does not hold yet): the load's COPY waits there, with
    # every earlier table and half the attendance written in its transaction, until the test
    # kills its connection.
    staged = pd.read_feather(Path(validation["staging"]) / "attendance.arrow")
    now = table(url, "attendance", f"where month = '{FEB}'")
    held = set(zip(now.person_id.astype(str), now.date.astype(str).str[:10], strict=True))
    keys = zip(staged.person_id.astype(str), staged.date.astype(str).str[:10], strict=True)
    fresh = [k for k in keys if k not in held]
    person_id, day = fresh[len(fresh) // 2]
    errors: list[BaseException] = []

    def load() -> None:
        try:
            load_step(validation)
        except BaseException as exc:  # handed to the test's thread
            errors.append(exc)

    with psycopg.connect(url) as holder, psycopg.connect(url, autocommit=True) as admin:
        holder.execute(
            "insert into attendance (scheme_id, month, person_id, date, status, source_file,"
            " source_line) values (%s, %s, %s, %s, %s, 'held.csv', 2)",
            [SCHEME_ID, FEB, person_id, day, "normal"],
        )
        loader = threading.Thread(target=load)
        loader.start()
        copying = None
        while copying is None and loader.is_alive():
            copying = admin.execute(
                "select pid from pg_stat_activity where datname = current_database()"
                " and query like 'COPY \"attendance\"%' and wait_event_type = 'Lock'"
            ).fetchone()
            time.sleep(0.05)
        assert copying is not None, f"the load never waited inside its COPY: {errors}"
        admin.execute("select pg_terminate_backend(%s)", [copying[0]])
        loader.join()
        holder.rollback()

    assert len(errors) == 1, errors
    assert "terminating connection due to administrator command" in str(errors[0])
    assert snapshot(url, skip=IN_FLIGHT) == before  # nothing of the killed load

    loaded = load_step(validation)  # Airflow's retry, from the same staged rows
    assert not Path(validation["staging"]).exists()
    score_step(loaded)  # and the rest of the run
    assert snapshot(url) == reference


# --- 2. a scoring worker killed ----------------------------------------------------------------

# Run in a separate Python process: one scoring step, stopped (SIGSTOP) at the point the test
# chose, so the test can look at the warehouse and the stage and then kill it (SIGKILL).
#   batch:  score_batch_step, stopped half way through writing its second Arrow file
#   finish: score_finish_step, stopped after its third bulk ingest, inside its one transaction
CHILD = r"""
import json, os, signal, sys

mode, arg = sys.argv[1], json.loads(sys.argv[2])


def stop() -> None:
    os.kill(os.getpid(), signal.SIGSTOP)  # the whole process; the test kills it from here


if mode == "batch":
    import pyarrow as pa
    import pyarrow.feather as feather

    real, calls = feather.write_feather, []

    def half_written(df, dest, *args, **kwargs):
        calls.append(dest)
        if len(calls) < 2:
            return real(df, dest, *args, **kwargs)
        sink = pa.BufferOutputStream()
        real(df, sink, *args, **kwargs)
        data = sink.getvalue().to_pybytes()
        out = open(dest, "wb") if isinstance(dest, str) else dest
        out.write(data[: len(data) // 2])
        out.flush()
        stop()

    feather.write_feather = half_written
    from etl.pipeline import score_batch_step

    score_batch_step(arg)
elif mode == "finish":
    import adbc_driver_manager.dbapi as dbapi

    real, calls = dbapi.Cursor.adbc_ingest, []

    def ingest(self, *args, **kwargs):
        out = real(self, *args, **kwargs)
        calls.append(args[0] if args else kwargs.get("table_name"))
        if len(calls) == 3:
            stop()
        return out

    dbapi.Cursor.adbc_ingest = ingest
    from etl.pipeline import score_finish_step

    score_finish_step(arg["loaded"], arg["parts"])
sys.exit(3)  # never reached: the stop point was not
"""


def _stopped_child(mode: str, arg: Any, log: Path) -> subprocess.Popen:
    """A scoring step in a fresh Python process, once it has stopped where CHILD stops it. Its
    output goes to `log`, a file: a pipe nobody reads could fill and hold it before the stop."""
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    with open(log, "wb") as out:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, mode, json.dumps(arg)],
            env=os.environ | {"PYTHONPATH": path},
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    _, status = os.waitpid(child.pid, os.WUNTRACED)
    if not os.WIFSTOPPED(status):
        child.returncode = os.waitstatus_to_exitcode(status)
        pytest.fail(f"{mode} ended before its stop point: {log.read_text()[-3000:]}")
    return child


def _kill(child: subprocess.Popen) -> None:
    child.kill()  # SIGKILL: no handler, no cleanup, as when a worker's machine goes away
    assert child.wait() == -signal.SIGKILL


def _readable(path: Path) -> bool:
    try:
        pd.read_feather(path)
    except Exception:  # whatever Arrow says of half a file
        return False
    return True


def _late_praise(url: str, person_id: str, *, delivered: bool) -> None:
    """A register row for January delivered late (or withdrawn again)."""
    engine = engine_for(url)
    with engine.begin() as conn:
        row = (adjustment.c.source_file == "late.csv", adjustment.c.month == JAN)
        conn.execute(adjustment.delete().where(*row))
        if delivered:
            late_praise(conn, SCHEME_ID, person_id, dt.date(2026, 1, 20))
    engine.dispose()


def test_a_scoring_worker_killed_mid_batch_or_mid_transaction_changes_nothing_until_rerun(
    kaohe, tmp_path, monkeypatch
):
    """January and February are scored; a late register row for January makes January (and with
    it February, already scored) be scored again, by unit batches. A batch's worker is killed
    half way through writing its files, and the worker of the step that puts the batches together
    is killed inside its transaction. Until the retries succeed the marts are exactly the old
    ones; after them, exactly what the same scoring leaves without a fault."""
    url = kaohe.warehouse_url
    generate(Path(kaohe.inbox), 60, JAN, 2, seed=41)
    for m in (JAN, FEB):
        score_step(run_month(m, f"load-{m}", "demo"))
    person = table(url, "roster", f"where month = '{JAN}'").person_id.min()
    _late_praise(url, person, delivered=True)
    before = snapshot(url)
    monkeypatch.setenv("KAOHE_BATCH_PEOPLE", "20")

    # the fault-free run
    fault_free = {"month": JAN, "scheme_ref": "demo", "run_id": "fault-free"}
    parts = [score_batch_step(b) for b in score_plan_step(fault_free)]
    assert score_finish_step(fault_free, parts)["months"] == [JAN, FEB]
    reference = snapshot(url)
    assert reference["mart_adjustment"] != before["mart_adjustment"]
    # back to where the faulted run starts: the row withdrawn and scored, then delivered again
    _late_praise(url, person, delivered=False)
    score_step({"month": JAN, "scheme_ref": "demo", "run_id": "withdrawn"})
    _late_praise(url, person, delivered=True)
    assert snapshot(url) == before
    before = snapshot(url, skip=IN_FLIGHT)

    run = {"month": JAN, "scheme_ref": "demo", "run_id": "faulted"}
    batches = score_plan_step(run)
    assert len(batches) >= 2
    parts = [score_batch_step(batches[0])]
    child = _stopped_child("batch", batches[1], tmp_path / "batch.log")
    folder = Path(batches[1]["stage"]) / "batch-00001"
    half = sorted(folder.with_suffix(".part").iterdir())
    _kill(child)
    # what the killed worker wrote is only under the temporary name, the last file cut short
    assert not folder.exists() and len(half) == 2
    assert sum(map(_readable, half)) == 1
    assert snapshot(url, skip=IN_FLIGHT) == before
    parts += [score_batch_step(b) for b in batches[1:]]  # Airflow retries the killed task
    assert not list(Path(batches[1]["stage"]).glob("*.part"))

    child = _stopped_child("finish", {"loaded": run, "parts": parts}, tmp_path / "finish.log")
    assert snapshot(url, skip=IN_FLIGHT) == before  # mid-transaction: the old marts, whole
    _kill(child)
    assert snapshot(url, skip=IN_FLIGHT) == before  # and so they stay: no month half replaced
    assert score_finish_step(run, parts)["months"] == [JAN, FEB]  # the retry
    assert snapshot(url) == reference
    assert not Path(batches[0]["stage"]).exists()


# --- publishing: a month's notify stage, with and without faults ---------------------------------


class Mailbox:
    """An SMTP server's handler that keeps what it accepts; after `refuse_after` messages it says
    421 (service shutting down) to every further one, as a server going down does."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str, str, tuple[tuple[str, str], ...]]] = []
        self.refuse_after: int | None = None
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        with self.lock:
            if self.refuse_after is not None and len(self.messages) >= self.refuse_after:
                return "421 4.3.2 Service shutting down"
            msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
            files = tuple(
                (p.get_filename(), hashlib.sha256(p.get_content()).hexdigest())
                for p in msg.iter_attachments()
            )
            for rcpt in envelope.rcpt_tos:
                self.messages.append((rcpt, str(msg["Message-ID"]), str(msg["Subject"]), files))
        return "250 OK"

    def received(self) -> list[tuple]:
        with self.lock:
            return sorted(self.messages)


@contextmanager
def smtp_server(port: int, handler: Mailbox) -> Iterator[Mailbox]:
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler
    finally:
        controller.stop()


def _copy_sqlite(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite warehouse (its write-ahead log included)."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    src.close()
    dst.close()


def _logged(url: str) -> list[tuple[str, str]]:
    """(recipient, Message-ID) of every message the delivery log holds."""
    log = table(url, "delivery_log")
    return sorted(zip(log.recipient, log.message_id, strict=True))


@dataclass(frozen=True)
class Published:
    scored: Path  # the warehouse of the scored month, before any publishing
    state: dict[str, list[tuple]]  # the warehouse after the fault-free publication
    pdfs: dict[str, bytes]  # file name -> bytes of every PDF it wrote
    messages: list[tuple]  # what its mail server accepted
    names: dict[str, str]  # person id -> name


def _publish_env(monkeypatch: pytest.MonkeyPatch, scored: Path, home: Path, output: Path) -> str:
    """Point this process at a copy of the scored warehouse and the given folders; its URL."""
    db = home / "warehouse.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    _copy_sqlite(scored, db)
    url = f"sqlite:///{db}"
    for var, value in {
        "KAOHE_HOME": home,
        "KAOHE_WAREHOUSE_URL": url,
        "KAOHE_OUTPUT": output,
        "KAOHE_BASE_URL": BASE_URL,
        "KAOHE_BATCH_PEOPLE": 5,
        "KAOHE_MAIL": "smtp",
        "KAOHE_MAIL_FROM": SENDER,
    }.items():
        monkeypatch.setenv(var, str(value))
    for var in ("KAOHE_INBOX", "KAOHE_SCHEME", "KAOHE_CONNECTOR"):
        monkeypatch.delenv(var, raising=False)
    return url


def _connection(monkeypatch: pytest.MonkeyPatch, port: int) -> None:
    """The Airflow connection `kaohe_smtp`: a plain relay on loopback."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_KAOHE_SMTP",
        f"smtp://127.0.0.1:{port}?disable_ssl=true&disable_tls=true&timeout=5",
    )


def _rendered(run_id: str) -> tuple[dict[str, Any], str]:
    """January's notify stage planned and rendered the way the DAG does it, the PDFs by unit
    batches; -> (plan, manifest file)."""
    plan_ = plan_step(JAN, "notify", run_id, "demo", today=TODAY)
    manifest = render_step(plan_, pdfs=False)
    for task in pdf_plan_step(manifest):
        pdf_step(task)
    return plan_, manifest


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Iterator[Published]:
    """January of 20 people scored, and its notify stage published without a fault, the way the
    DAG runs it (plan, render, the PDFs by unit batches, deliver, record)."""
    root = tmp_path_factory.mktemp("published")
    with pytest.MonkeyPatch.context() as mp:
        url = f"sqlite:///{root / 'load.db'}"
        mp.setenv("KAOHE_HOME", str(root / "load"))
        mp.setenv("KAOHE_WAREHOUSE_URL", url)
        for var in ("KAOHE_INBOX", "KAOHE_OUTPUT", "KAOHE_SCHEME", "KAOHE_CONNECTOR"):
            mp.delenv(var, raising=False)
        generate(Path(settings().inbox), 20, JAN, 1, seed=51)
        score_step(run_month(JAN, "load", "demo"))
        scored = root / "scored.db"
        _copy_sqlite(root / "load.db", scored)
        names = table(url, "mart_monthly_score").set_index("person_id")["name"].to_dict()

        output = root / "out"
        url = _publish_env(mp, scored, root / "home", output)
        port = free_port()
        _connection(mp, port)
        with smtp_server(port, Mailbox()) as mailbox:
            plan_, manifest = _rendered("pub-1")
            delivered = deliver_step(manifest)
            record_step(plan_, manifest, delivered, "pub-1")
        assert delivered["sent"] == len(mailbox.received()) > 10
        pdfs = {p.name: p.read_bytes() for p in (output / SCHEME_ID / JAN).glob("*.pdf")}
        yield Published(scored, _state(url), pdfs, mailbox.received(), names)


def _assert_published_as_without_fault(url: str, output: Path, published: Published) -> None:
    """Every PDF there and byte for byte the fault-free run's, and readable as the person's own
    notice; every message accepted once, and the delivery log saying so; the warehouse the same."""
    folder = output / SCHEME_ID / JAN
    pdfs = {p.name: p.read_bytes() for p in folder.glob("*.pdf")}
    assert pdfs == published.pdfs
    for pid, name in published.names.items():
        pages = PdfReader(folder / f"notice-{pid}.pdf").pages
        text = "".join(page.extract_text() or "" for page in pages)
        assert name in text and "反馈单" in text
    assert _logged(url) == sorted((r, mid) for r, mid, _, _ in published.messages)
    assert _state(url) == published.state


# --- 3. the disk full while writing PDFs -------------------------------------------------------


class SmallDisk:
    """The output folder on a disk that fills up: a tmpfs of its own where the machine lets the
    test mount one (root with CAP_SYS_ADMIN), else ENOSPC injected where kaohe writes a file
    (`reports.files.write_atomic`'s `os.fdopen`), after the bytes that still fit, as a full disk
    answers a write; the PDFs are then rendered in this process so that the injection reaches
    them. KAOHE_TEST_NO_MOUNT=1 takes the injected path on a machine that could mount."""

    PAGE = os.sysconf("SC_PAGE_SIZE")

    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.folder, self.monkeypatch = folder, monkeypatch
        self.mounted = False
        self.room: int | None = None  # injected: bytes that may still be written

    def __enter__(self) -> SmallDisk:
        self.folder.mkdir(parents=True, exist_ok=True)
        if not os.environ.get("KAOHE_TEST_NO_MOUNT") and shutil.which("mount"):
            out = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=8m", "kaohe-faults", str(self.folder)],
                capture_output=True,
            )
            self.mounted = out.returncode == 0
        if not self.mounted:
            self._inject()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.mounted:
            out = subprocess.run(["umount", str(self.folder)], capture_output=True)
            if out.returncode:
                subprocess.run(["umount", "-l", str(self.folder)], check=True)

    def cost(self, size: int) -> int:
        """What a file of `size` bytes takes of the disk."""
        return -(-size // self.PAGE) * self.PAGE if self.mounted else size

    def leave(self, room: int) -> None:
        """Fill the disk (another program's file) until only `room` bytes are free."""
        if not self.mounted:
            self.room = room
            return
        stat = os.statvfs(self.folder)
        fill = stat.f_bavail * stat.f_frsize - room
        assert fill > 0
        with open(self.folder / "filler", "wb") as f:
            for _ in range(fill // (1 << 20)):
                f.write(bytes(1 << 20))
            f.write(bytes(fill % (1 << 20)))

    def free(self) -> None:
        if self.mounted:
            (self.folder / "filler").unlink()
        self.room = None

    def _inject(self) -> None:
        import reports.files
        import reports.render

        disk = self

        class Full:
            """A file on the small disk: writes what fits, then fails as the kernel does."""

            def __init__(self, raw: Any) -> None:
                self.raw = raw

            def write(self, data: bytes) -> int:
                if disk.room is not None and len(data) > disk.room:
                    self.raw.write(data[: disk.room])
                    disk.room = 0
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                if disk.room is not None:
                    disk.room -= len(data)
                return self.raw.write(data)

            def __getattr__(self, name: str) -> Any:
                return getattr(self.raw, name)

            def __enter__(self) -> Full:
                return self

            def __exit__(self, *exc: object) -> None:
                self.raw.close()

        class Os:
            def __getattr__(self, name: str) -> Any:
                return getattr(os, name)

            @staticmethod
            def fdopen(fd: int, *args: Any, **kwargs: Any) -> Full:
                return Full(os.fdopen(fd, *args, **kwargs))

        self.monkeypatch.setattr(reports.files, "os", Os())
        # one worker renders in this process, where the injection is
        self.monkeypatch.setattr(reports.render, "_default_workers", lambda: 1)


def test_a_disk_full_while_writing_pdfs_leaves_no_truncated_pdf_and_sends_nothing_until_rerun(
    published, tmp_path, monkeypatch
):
    """The disk fills up while the PDFs of the second unit batch are written: that task fails
    naming the file and the reason; every PDF in the folder is whole (the fault-free run's bytes)
    or absent, no temporary file is left, nothing is sent or kept as told. Once space is freed,
    Airflow's retry of the failed task and the rest of the run publish exactly what a run without
    the fault publishes, each message once."""
    output = tmp_path / "out"
    url = _publish_env(monkeypatch, published.scored, tmp_path / "home", output)
    port = free_port()
    _connection(monkeypatch, port)
    folder = output / SCHEME_ID / JAN
    with SmallDisk(output, monkeypatch) as disk, smtp_server(port, Mailbox()) as mailbox:
        plan_ = plan_step(JAN, "notify", "pub-1", "demo", today=TODAY)
        manifest = render_step(plan_, pdfs=False)
        tasks = pdf_plan_step(manifest)
        batches = json.loads(Path(manifest).read_text(encoding="utf-8"))["pdf_batches"]
        assert len(batches) >= 2
        size = {name: disk.cost(len(data)) for name, data in published.pdfs.items()}
        need = [sum(size[Path(pdf).name] for _, pdf in b) for b in batches]
        disk.leave(sum(need[:-1]) + need[-1] // 2)  # room for all but half the last batch

        failed = []
        for task in tasks:
            try:
                pdf_step(task)
            except RenderError as exc:
                failed.append((task, str(exc)))
        assert [t["index"] for t, _ in failed] == [len(batches) - 1]
        message = failed[0][1]
        assert "No space left on device" in message and f"{folder}/" in message
        assert ".pdf" in message
        # whole or absent, nothing in between, and no temporary file left behind
        there = {p.name: p.read_bytes() for p in folder.glob("*.pdf")}
        assert there and all(data == published.pdfs[name] for name, data in there.items())
        assert set(published.pdfs) - set(there)
        assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []
        # the DAG does not deliver after a failed PDF task; were it made to (an operator marking
        # the task done), delivery refuses before anything is sent or kept as told
        with pytest.raises(FileNotFoundError, match="never written, nothing was sent"):
            deliver_step(manifest)
        assert mailbox.received() == []
        assert table(url, "delivery_log").empty and table(url, "published_result").empty

        disk.free()
        for task, _ in failed:
            pdf_step(task)  # Airflow's retry of the failed mapped task
        delivered = deliver_step(manifest)
        record_step(plan_, manifest, delivered, "pub-1")
        assert delivered["sent"] == len(published.messages) and delivered["failed"] == []
        assert mailbox.received() == published.messages
        _assert_published_as_without_fault(url, output, published)


# --- 4. the mail server down while publishing --------------------------------------------------


def test_smtp_down_while_publishing_sends_each_message_once_when_it_is_back(
    published, tmp_path, monkeypatch
):
    """KAOHE_MAIL=smtp through the connection `kaohe_smtp`. The server is down when the stage is
    delivered (nothing goes, the task fails to be retried); it comes back, accepts three messages
    and goes down again (421); at the next retry it stays up. Then the whole publication is run
    again. Every recipient has each message exactly once, the delivery log holds exactly those,
    and the warehouse is what a run without the fault leaves."""
    output = tmp_path / "out"
    url = _publish_env(monkeypatch, published.scored, tmp_path / "home", output)
    port = free_port()  # nobody listens there yet
    _connection(monkeypatch, port)
    plan_, manifest = _rendered("pub-1")
    everyone = len(published.messages)

    with pytest.raises(DeliveryIncomplete) as down:
        deliver_step(manifest)
    assert down.value.report.sent == [] and len(down.value.report.deferred) == everyone
    assert f"{everyone} deferred" in str(down.value)
    assert all(rcpt not in str(down.value) for rcpt, *_ in published.messages)  # masked
    assert _logged(url) == []

    mailbox = Mailbox()
    mailbox.refuse_after = 3
    with smtp_server(port, mailbox):
        with pytest.raises(DeliveryIncomplete) as again:
            deliver_step(manifest)  # Airflow's first retry
        assert len(again.value.report.sent) == 3
        assert _logged(url) == sorted((r, mid) for r, mid, _, _ in mailbox.received())

        mailbox.refuse_after = None
        delivered = deliver_step(manifest)  # the second retry
        assert (delivered["sent"], delivered["already_sent"]) == (everyone - 3, 3)
        record_step(plan_, manifest, delivered, "pub-1")

        # the operator runs the whole publication again: it renders, and sends nothing
        plan_, manifest = _rendered("pub-2")
        rerun = deliver_step(manifest)
        record_step(plan_, manifest, rerun, "pub-2")
        assert (rerun["sent"], rerun["already_sent"]) == (0, everyone)

    assert mailbox.received() == published.messages  # each message, once
    runs = table(url, "mart_run", "where dag_id = 'kaohe_publish'").set_index("run_id")
    assert runs.status.to_dict() == {"pub-1": "success", "pub-2": "success"}
    assert f"mail: 0 sent, {everyone} already sent" in runs.message["pub-2"]
    _assert_published_as_without_fault(url, output, published)
