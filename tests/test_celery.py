"""kaohe_monthly on a real CeleryExecutor, as production runs it (docker-compose.yml): api-server,
scheduler, dag-processor and a Celery worker as separate processes, Airflow's metadata and the
warehouse on PostgreSQL, Redis as the broker. The run is triggered through the REST API and its
result checked in the warehouse; every task that ran must have gone through Celery (its
`external_executor_id` is a Celery task id whose result the worker stored), which no other
executor can fake.

Needs KAOHE_TEST_PG_URL (CI: postgresql://postgres@127.0.0.1:5432/postgres) and a Redis server at
KAOHE_TEST_REDIS_URL (default redis://127.0.0.1:6379/0); the broker is that server's database 15,
flushed when the test ends, and the Celery queue is unique to the run.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import PG_URL, _drop_pg, _pg_database
from tests.helpers import free_port, table

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("KAOHE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REDIS_DB = 15  # the broker's database on that server; only this one is flushed
MONTH = "2026-02"  # not a quarter's end: announce is skipped, kaohe_period_close not started
PEOPLE = 300
DAG_ID = "kaohe_monthly"
RUN_TIMEOUT = 240  # seconds from the trigger to a finished run
COMPONENTS = {
    "api-server": ["api-server", "--host", "127.0.0.1", "--workers", "1"],
    "scheduler": ["scheduler"],
    "dag-processor": ["dag-processor"],
    "worker": ["celery", "worker", "--concurrency", "2", "--skip-serve-logs"],
}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _broker_url() -> str | None:
    """The broker URL (database REDIS_DB of the server) if Redis answers there, else None."""
    redis = pytest.importorskip("redis")
    pytest.importorskip("airflow.providers.celery")
    base = REDIS_URL.split("://", 1)[1].split("/", 1)[0]
    url = f"{REDIS_URL.split('://', 1)[0]}://{base}/{REDIS_DB}"
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = redis.Redis.from_url(
        url, socket_connect_timeout=2, socket_timeout=5, retry=Retry(NoBackoff(), 0)
    )
    try:
        client.ping()
    except redis.RedisError:
        return None
    finally:
        client.close()
    return url


def _flush(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    try:
        client.flushdb()
    finally:
        client.close()


class Deployment:
    """The Airflow components as subprocesses of one environment, each logging to its own file."""

    def __init__(self, tmp: Path, env: dict[str, str], api_port: int, password: str) -> None:
        self.env = env
        self.password = password
        self.logs = tmp / "logs"
        self.logs.mkdir()
        self.api = f"http://127.0.0.1:{api_port}"
        self.api_port = api_port
        self.procs: dict[str, subprocess.Popen] = {}
        self.token: str | None = None

    def start(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "wb")  # the child writes to it
        proc = subprocess.Popen(
            [sys.executable, "-m", "airflow", *args],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, ended as a whole
        )
        log.close()
        self.procs[name] = proc
        return proc

    def migrate(self) -> None:
        proc = self.start("db-migrate", ["db", "migrate"])
        try:
            rc = proc.wait(timeout=240)
        except subprocess.TimeoutExpired:
            rc = None
        assert rc == 0, f"airflow db migrate: {rc}\n{self.tails()}"

    def start_all(self) -> None:
        for name, args in COMPONENTS.items():
            if name == "api-server":
                args = [*args, "--port", str(self.api_port)]
            if name == "worker":  # a node name of its own beside any other worker on the broker
                args = [*args, "--celery-hostname", f"kaohe-test-{uuid.uuid4().hex[:8]}@%h"]
            self.start(name, args)

    def check_alive(self) -> None:
        dead = {
            n: p.returncode
            for n, p in self.procs.items()
            if n != "db-migrate" and p.poll() is not None
        }
        assert not dead, f"components exited: {dead}\n{self.tails()}"

    # --- REST API --------------------------------------------------------------------------
    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, object]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.api + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def wait(self, what: str, probe, timeout: float, every: float = 2.0):
        """Call probe() until it returns something truthy; fail with the logs after timeout."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            try:
                got = probe()
            except (OSError, urllib.error.URLError):
                got = None
            if got:
                return got
            assert time.monotonic() < deadline, f"timed out waiting for {what}\n{self.tails()}"
            time.sleep(every)

    # --- diagnostics and teardown ------------------------------------------------------------
    def tails(self, chars: int = 3000) -> str:
        parts = []
        for path in sorted(self.logs.glob("*.log")):
            parts.append(f"----- {path.name} (tail) -----\n{_tail(path, chars)}")
        home = Path(self.env["AIRFLOW_HOME"]) / "logs" / f"dag_id={DAG_ID}"
        for path in sorted(home.rglob("*.log")):
            lines = path.read_text(errors="replace").splitlines(keepends=True)
            errors = "".join(x for x in lines if '"level":"error"' in x or '"level":"crit' in x)
            text = errors[-3000:] if errors else "".join(lines)[-1000:]
            parts.append(f"----- task log {path.relative_to(home)} -----\n{text}")
        return "\n".join(parts)

    def stop(self) -> None:
        """SIGTERM every component's process group and every descendant (task processes start
        their own groups), then SIGKILL what is still there after 15 s."""
        import psutil

        victims: list[psutil.Process] = []
        for proc in self.procs.values():
            try:
                parent = psutil.Process(proc.pid)
                victims += [parent, *parent.children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for victim in victims:
            try:
                victim.terminate()
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(victims, timeout=15)
        for proc in self.procs.values():
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for victim in alive:
            try:
                victim.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=5)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


def _tail(path: Path, chars: int) -> str:
    """The last `chars` characters of a log, without the api-server's access lines."""
    lines = path.read_text(errors="replace").splitlines(keepends=True)
    return "".join(line for line in lines if "[http.access]" not in line)[-chars:]


def _environment(
    tmp: Path, meta_url: str, warehouse_url: str, broker: str, api_port: int
) -> tuple[dict[str, str], str]:
    meta = meta_url.replace("postgresql://", "postgresql+psycopg://", 1)  # psycopg 3: no psycopg2
    meta_async = meta.replace("+psycopg:", "+psycopg_async:", 1)
    passwords = tmp / "passwords.json"
    password = secrets.token_hex(16)
    passwords.write_text(json.dumps({"kaohe": password}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "KAOHE_"))}
    env.update(
        {
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "AIRFLOW_HOME": str(tmp / "airflow"),
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "kaohe:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": meta,
            # Airflow derives postgresql+asyncpg from the URL above; asyncpg is not installed
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": meta_async,
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(64),  # 64 bytes: none too short
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
            "AIRFLOW__CELERY__BROKER_URL": broker,
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{meta}",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
            # a queue of this run alone, so nothing else on the broker takes its tasks
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": f"kaohe-test-{uuid.uuid4().hex[:8]}",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            # no scheduled run of the latest interval beside the triggered one
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            # parse the dags once: the two cores are shared, and the DAG must not change mid-run
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "GX_ANALYTICS_ENABLED": "false",
            "KAOHE_HOME": str(tmp / "home"),
            "KAOHE_WAREHOUSE_URL": warehouse_url,
            "KAOHE_SCHEME": "demo",
            "KAOHE_RATER_SECRET": "test-secret-not-for-production",
            "KAOHE_BATCH_PEOPLE": "100",  # several unit batches where scoring is mapped over them
        }
    )
    return env, password


@pytest.fixture
def celery_stack(tmp_path):
    if not PG_URL:
        pytest.skip("KAOHE_TEST_PG_URL not set: the Celery test needs PostgreSQL")
    broker = _broker_url()
    if broker is None:
        pytest.skip(f"no Redis answering at {REDIS_URL} (KAOHE_TEST_REDIS_URL)")
    created: list[str] = []
    deployment = None
    try:
        meta_name, meta_url = _pg_database()
        created.append(meta_name)
        wh_name, wh_url = _pg_database()
        created.append(wh_name)
        api_port = free_port()
        env, password = _environment(tmp_path, meta_url, wh_url, broker, api_port)
        deployment = Deployment(tmp_path, env, api_port, password)
        yield deployment, meta_url, wh_url
    finally:
        if deployment is not None:
            deployment.stop()
        for name in created:
            _drop_pg(name)
        _flush(broker)


def _celery_evidence(meta_url: str, run_id: str) -> tuple[list, dict]:
    """The run's task instances (task, map index, state, queue, executor, Celery id) and the
    Celery results the worker stored, by task id."""
    eng = sa.create_engine(meta_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with eng.connect() as conn:
            tis = conn.execute(
                sa.text(
                    "select task_id, map_index, state, queue, executor, external_executor_id "
                    "from task_instance where dag_id = :dag and run_id = :run "
                    "order by task_id, map_index"
                ),
                {"dag": DAG_ID, "run": run_id},
            ).fetchall()
            meta = conn.execute(sa.text("select task_id, status from celery_taskmeta"))
            results = {task_id: status for task_id, status in meta}
    finally:
        eng.dispose()
    return [tuple(t) for t in tis], results


def test_monthly_run_on_celery_scores_the_month(celery_stack):
    from etl.generate import generate

    started = time.monotonic()
    deploy, meta_url, wh_url = celery_stack
    deploy.migrate()
    deploy.start_all()
    generate(Path(deploy.env["KAOHE_HOME"]) / "inbox", PEOPLE, MONTH, 1, seed=21)

    def token() -> str | None:
        status, body = deploy.request(
            "POST", "/auth/token", {"username": "kaohe", "password": deploy.password}
        )
        return body["access_token"] if status in (200, 201) else None

    deploy.token = deploy.wait("the api-server", token, timeout=120)

    def dag_parsed() -> bool:
        status, errors = deploy.request("GET", "/api/v2/importErrors")
        broken = [
            e
            for e in (errors["import_errors"] if status == 200 else [])
            if e["filename"].endswith(f"{DAG_ID}.py")
        ]
        if broken:
            pytest.fail(f"{DAG_ID}.py does not import: {json.dumps(broken, ensure_ascii=False)}")
        return deploy.request("GET", f"/api/v2/dags/{DAG_ID}")[0] == 200

    deploy.wait(f"{DAG_ID} parsed by the dag-processor", dag_parsed, timeout=150)
    deploy.wait(
        "the Celery worker",
        lambda: b" ready." in (deploy.logs / "worker.log").read_bytes(),
        timeout=120,
    )
    status, body = deploy.request("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False})
    assert status == 200, body
    run_id = f"celery_test__{uuid.uuid4().hex[:8]}"
    status, body = deploy.request(
        "POST",
        f"/api/v2/dags/{DAG_ID}/dagRuns",
        {"dag_run_id": run_id, "logical_date": None, "conf": {"month": MONTH}},
    )
    assert status == 200, body

    def finished() -> str | None:
        status, run = deploy.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}")
        return run["state"] if status == 200 and run["state"] in ("success", "failed") else None

    state = deploy.wait(f"run {run_id} to finish", finished, timeout=RUN_TIMEOUT, every=3)
    tis, results = _celery_evidence(meta_url, run_id)
    assert state == "success", f"{state}: {tis}\n{deploy.tails()}"

    # every task that ran went through Celery: its id is a Celery task the worker completed.
    # A task reports success to the api-server before its Celery task returns, so the last
    # result may still read STARTED for a moment.
    deadline = time.monotonic() + 60
    while True:
        ran = [t for t in tis if t[2] != "skipped"]
        if all(results.get(t[5]) == "SUCCESS" for t in ran) or time.monotonic() > deadline:
            break
        time.sleep(1)
        tis, results = _celery_evidence(meta_url, run_id)
    assert ran, tis
    queue = deploy.env["AIRFLOW__OPERATORS__DEFAULT_QUEUE"]
    worker_log = (deploy.logs / "worker.log").read_text(errors="replace")
    for task_id, map_index, ti_state, ti_queue, executor, celery_id in ran:
        where = f"{task_id}[{map_index}] ({ti_state}, executor {executor})"
        assert ti_state == "success", where
        assert ti_queue == queue, where
        assert executor in (None, "CeleryExecutor"), where
        assert results.get(celery_id) == "SUCCESS", f"{where}: celery id {celery_id}, {results}"
        assert f"[{celery_id}] Executing workload in Celery" in worker_log, where

    # the warehouse: one monthly score per person of the month's roster, the run recorded
    month = f"where month = '{MONTH}'"
    roster = table(wh_url, "roster", month)
    scores = table(wh_url, "mart_monthly_score", month)
    assert len(roster) > 0 and not roster.person_id.duplicated().any()
    assert not scores.person_id.duplicated().any()
    assert sorted(scores.person_id) == sorted(roster.person_id)
    runs = table(wh_url, "mart_run", f"where run_id = '{run_id}'")
    assert runs[["dag_id", "month_or_period", "status"]].values.tolist() == [
        [DAG_ID, MONTH, "success"]
    ]
    took = time.monotonic() - started
    print(f"celery run: {len(ran)} task instances, {len(roster)} people, {took:.0f}s: {ran}")
