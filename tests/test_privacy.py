"""Privacy (issue 7), end to end: rater keys never leave the landing zone (a keyed hash is
stored), a suppressed survey group's figure is reported nowhere, a person's notice tells nobody
else's name or score and goes to that person alone, no log names a person or an address, and an
Airflow task log shows *** for the warehouse and SMTP passwords.

One generated quarter is taken in, scored, closed and published at `notify` once for the module
(on SQLite: what is private does not depend on the database), with every log record and
everything printed kept; the tests read what it left behind. The task-log test runs
kaohe_monthly on PostgreSQL, whose URL carries a password, the way a worker runs a task.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email
import email.policy
import hashlib
import hmac
import html
import io
import json
import logging
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pendulum
import pyarrow.feather as feather
import pytest
import sqlalchemy as sa
from pypdf import PdfReader

from etl.config import (
    Settings,
    log_address,
    log_name,
    redact,
    settings,
)
from etl.dag_support import default_args
from etl.generate import generate
from etl.pipeline import (
    close_step,
    land_step,
    load_step,
    run_month,
    score_step,
    validate_step,
)
from etl.read import to_frame
from etl.sources import RELATION
from etl.warehouse import md
from reports.publish import publish
from reports.render import score
from scoring.scheme import load_scheme
from tests.helpers import table

PG_URL = os.environ.get("KAOHE_TEST_PG_URL")
TODAY = dt.date(2026, 4, 8)
MONTHS = ("2026-01", "2026-02", "2026-03")
HIDDEN = 13.57  # what the raters of every suppressed group give: no document shows it otherwise
KEY = re.compile(r"rk-[0-9a-f]{12}")  # a rater key as the generator writes it
KAOHE_VARS = ("KAOHE_INBOX", "KAOHE_OUTPUT", "KAOHE_SCHEME", "KAOHE_CONNECTOR", "KAOHE_MAIL")


# --- reading back what kaohe wrote, whatever its format -----------------------------------------


def text_of(data: bytes) -> str:
    """What bytes say, told by their content (archived files have no suffix): PDF text, Arrow
    tables as CSV, XLSX cells and strings, e-mail headers and text parts (attachments are files
    read on their own), everything else as bytes: the SQLite file and its WAL too, where a key in
    a freed page would count."""
    if data.startswith(b"%PDF"):
        return "".join(page.extract_text() or "" for page in PdfReader(io.BytesIO(data)).pages)
    if data.startswith(b"ARROW1"):
        return feather.read_table(io.BytesIO(data)).to_pandas().to_csv()
    if data.startswith(b"PK"):
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            return "".join(z.read(n).decode("utf-8", "replace") for n in z.namelist())
    if data.startswith(b"Content-Type") or b"\nMessage-ID:" in data[:4000]:
        msg = email.message_from_bytes(data, policy=email.policy.default)
        parts = [str(v) for _, v in msg.items()]
        parts += [p.get_content() for p in msg.walk() if p.get_content_maintype() == "text"]
        return "\n".join(parts)
    return data.decode("utf-8", "replace")


def squash(text: str) -> str:
    """PDF text without the spaces letter-spacing puts between characters (公 示 稿)."""
    return re.sub(r"\s+", "", text)


class Records(logging.Handler):
    """Every log record of the run, as a log file would show it (message and traceback)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


# --- the quarter ---------------------------------------------------------------------------------


@dataclass
class Quarter:
    cfg: Settings
    keys: set[str]  # every rater key the survey files delivered
    suppressed: set[tuple[str, str, str]]  # (survey_id, ratee, relation) under min_raters
    stage: dict[str, str]  # March's Arrow stage between validate and load (load removes it)
    files: dict[Path, str]  # every file kaohe wrote under KAOHE_HOME, as text
    logs: str  # every log record and everything printed
    folder: Path  # the quarter's documents
    people: pd.DataFrame  # by person_id: name and e-mail (the last roster row of the quarter)


def _rate_thin_groups(month_dir: Path, min_raters: int) -> tuple[set[str], set[tuple]]:
    """Rewrite the month's survey files (as UTF-8 CSV) so that every group with fewer than
    `min_raters` raters (self exempt) gets HIDDEN for every item; -> (rater keys, those groups)."""
    keys: set[str] = set()
    thin: set[tuple[str, str, str]] = set()
    for path in sorted(month_dir.glob("surveys*")):
        frame, missing = to_frame("surveys", path.name, path.read_bytes())
        assert not missing
        cols = ["survey_id", "period", "rater_key", "relation", "ratee_id", "item", "score"]
        rows = frame[cols].astype(str)
        keys |= set(rows.rater_key)
        relation = rows.relation.map(lambda r: RELATION.get(r, r))
        group = [rows.survey_id, rows.ratee_id, relation]
        raters = rows.groupby(group).rater_key.transform("nunique")
        few = (raters < min_raters) & relation.ne("self")
        rows.loc[few, "score"] = f"{HIDDEN:.2f}"
        thin |= set(zip(rows.survey_id[few], rows.ratee_id[few], relation[few], strict=True))
        path.unlink()
        rows.to_csv(path.with_suffix(".csv"), index=False, encoding="utf-8")
    return keys, thin


@pytest.fixture(scope="module")
def quarter(tmp_path_factory) -> Quarter:
    """Three generated months of 30 people taken in and scored, March through the steps the
    DAG's tasks call (to read its stage before the load removes it), the quarter closed and
    published at notify to the outbox; every log record at DEBUG and everything printed kept,
    and every file kaohe wrote read back as text."""
    home = tmp_path_factory.mktemp("privacy") / "home"
    records, printed = Records(), io.StringIO()
    root = logging.getLogger()
    level = root.level
    with pytest.MonkeyPatch.context() as mp:
        for var in (*KAOHE_VARS, "KAOHE_WAREHOUSE_URL", "KAOHE_MASK_PII"):
            mp.delenv(var, raising=False)
        mp.setenv("KAOHE_HOME", str(home))  # the warehouse is the SQLite file under it
        cfg = settings()
        scheme = load_scheme("demo")
        generate(Path(cfg.inbox), 30, MONTHS[0], 3, seed=21)
        (survey,) = [c.survey for c in scheme.components if c.survey]  # the demo has one
        keys, thin = _rate_thin_groups(Path(cfg.inbox) / MONTHS[2], survey.min_raters)
        root.addHandler(records)
        root.setLevel(logging.DEBUG)
        try:
            with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
                for m in MONTHS[:2]:
                    score_step(run_month(m, f"m-{m}", "demo", cfg=cfg), cfg)
                # March as the DAG's tasks take it, to read the stage the load then removes
                manifest = land_step(MONTHS[2], "m-2026-03", scheme_ref="demo", cfg=cfg)
                validation = validate_step(manifest, cfg)
                stage = {
                    p.name: text_of(p.read_bytes()) for p in Path(validation["staging"]).iterdir()
                }
                score_step(load_step(validation, cfg), cfg)
                close_step("2026-Q1", "close-q1", "demo", cfg)
                publish("2026-Q1", "notify", "pub-q1", "demo", cfg, None, TODAY)
        finally:
            root.removeHandler(records)
            root.setLevel(level)
    skip = {cfg.archive, Path(cfg.inbox)}  # the landing zone: the only place keys may be
    files = {
        p: text_of(p.read_bytes())
        for p in sorted(home.rglob("*"))
        if p.is_file() and not skip & set(p.parents) and p.name != "rater.secret"
    }
    roster = table(cfg.warehouse_url, "roster").sort_values("month")
    people = roster.drop_duplicates("person_id", keep="last").set_index("person_id")
    return Quarter(
        cfg=cfg,
        keys=keys,
        suppressed=thin,
        stage=stage,
        files=files,
        logs="\n".join(records.lines) + "\n" + printed.getvalue(),
        folder=cfg.output / scheme.id / "2026-Q1",
        people=people[["name", "email"]],
    )


def _all_tables(url: str) -> dict[str, pd.DataFrame]:
    """Every table of the warehouse, the run log and the landing log included."""
    return {t.name: table(url, t.name) for t in md.sorted_tables}


# --- 1. rater keys -------------------------------------------------------------------------------


def test_rater_keys_stay_in_the_landing_zone_and_are_stored_as_a_keyed_hash(quarter):
    q = quarter
    assert len(q.keys) > 50 and all(KEY.fullmatch(k) for k in q.keys)
    find = re.compile("|".join(map(re.escape, sorted(q.keys))))
    # the search finds them where they are: the landed copies of the survey files
    archived = "".join(text_of(p.read_bytes()) for p in q.cfg.archive.rglob("*") if p.is_file())
    assert set(find.findall(archived)) == q.keys
    tables = _all_tables(q.cfg.warehouse_url)
    for name, frame in tables.items():
        assert not find.search(frame.to_csv()), name
    assert "surveys.arrow" in q.stage
    for name, text in q.stage.items():  # the Arrow files between validate and load
        assert not find.search(text), name
    # Data Docs and summary.json, bulletins and notices (HTML and PDF text), the outbox, the
    # publication's staging, the SQLite file and its WAL
    assert any(p.name == "index.html" and "validation" in p.parts for p in q.files)
    assert any(p.suffix == ".eml" for p in q.files) and any(p.suffix == ".pdf" for p in q.files)
    assert [str(p) for p, text in q.files.items() if find.search(text)] == []
    assert not find.search(q.logs)
    # what is stored is HMAC-SHA256 of the key with the deployment's secret: not the key's plain
    # hash, nor what another secret gives, so without the secret a key cannot be tried
    stored = set(tables["survey_response"].rater_hash)
    secret = os.environ["KAOHE_RATER_SECRET"].encode()
    assert stored == {hmac.new(secret, k.encode(), "sha256").hexdigest() for k in q.keys}
    other = {hmac.new(b"another deployment", k.encode(), "sha256").hexdigest() for k in q.keys}
    assert stored.isdisjoint(other)
    assert stored.isdisjoint({hashlib.sha256(k.encode()).hexdigest() for k in q.keys})


# --- 2. suppressed survey groups -----------------------------------------------------------------


def test_a_suppressed_groups_score_is_in_no_mart_and_no_document(quarter):
    q = quarter
    tables = _all_tables(q.cfg.warehouse_url)
    survey = tables["mart_survey_result"]
    hidden = survey[survey.suppressed.astype(bool)]
    # the groups under min_raters are the ones the mart calls suppressed; their raters are
    # counted (that is why the figure is missing), their score is not there
    assert q.suppressed and set(zip(hidden.survey_id, hidden.person_id, hidden.relation)) == (
        q.suppressed
    )
    assert hidden.score.isna().all() and hidden.score_raw.isna().all()
    assert (hidden.raters >= 1).all()
    assert survey[~survey.suppressed.astype(bool)].score.notna().all()
    # their raters gave HIDDEN to every item: no mart holds that figure anywhere ...
    shown = {n: t for n, t in tables.items() if n.startswith("mart_") or n == "published_result"}
    for name, frame in shown.items():
        numbers = frame.select_dtypes("number")
        assert not ((numbers - HIDDEN).abs() < 0.005).any().any(), name
    # ... and no document: bulletins, notices (HTML and PDF text), the mail that carried them
    published = {p: t for p, t in q.files.items() if q.folder in p.parents or p.suffix == ".eml"}
    assert len(published) > 2 * len(tables["mart_period_score"])
    figure = f"{HIDDEN:.2f}"
    assert [str(p) for p, text in published.items() if figure in text] == []
    # each of those people's notice says why the figure is not there
    for person in {p for _, p, _ in q.suppressed}:
        notice = (q.folder / f"notice-{person}.html").read_text(encoding="utf-8")
        assert "评价人数不足，不予公布" in notice


# --- 3. a person's notice ------------------------------------------------------------------------


def _own_figures(tables: dict[str, pd.DataFrame], person: str) -> set[str]:
    """Every two-decimal figure a notice may show of its person's own rows: every number of
    theirs in the marts, the change from one month to the next, and the period means per
    indicator."""
    out: set[str] = set()
    for name, frame in tables.items():
        if name.startswith("mart_") and "person_id" in frame:
            mine = frame[frame.person_id == person]
            for col in mine.select_dtypes("number"):
                out |= {score(v) for v in mine[col].dropna()}
    monthly = tables["mart_monthly_score"]
    totals = monthly[monthly.person_id == person].sort_values("month").total_score
    out |= {score(abs(d)) for d in totals.diff().dropna()}
    ind = tables["mart_indicator_score"]
    means = ind[ind.person_id == person].groupby(["component_id", "indicator_id"])
    out |= {score(v) for v in means[["actual", "score"]].mean().stack().dropna()}
    # a rate's actual and target as the percentages the notice prints
    items = tables["scheme_item"]
    rates = items[items.measure.fillna("").str.endswith("_rate")]
    rated = ind[ind.person_id == person].merge(
        rates[["component_id", "item_id"]],
        left_on=["component_id", "indicator_id"],
        right_on=["component_id", "item_id"],
    )
    out |= {score(v * 100) for v in rated[["actual", "target"]].stack().dropna()}
    per = rated.groupby(["component_id", "indicator_id"])["actual"].mean().dropna()
    return out | {score(v * 100) for v in per}


def _others_named(text: str, own: str, names: pd.Series) -> list[str]:
    """The names in `text` of people other than the one called `own`. Names nest (王伟 in
    王伟明): one inside the person's own name cannot be told apart and is passed over, one that
    contains it is looked for as it is, any other after the person's own name is taken out (so
    that it does not run into the next cell's text)."""
    rest = text.replace(own, "\x00")
    return [
        n for n in names if n != own and n not in own and (n in text if own in n else n in rest)
    ]


def test_a_notice_names_only_its_person_and_is_sent_to_them_alone(quarter):
    q = quarter
    tables = _all_tables(q.cfg.warehouse_url)
    period = tables["mart_period_score"].set_index("person_id")
    monthly = tables["mart_monthly_score"]
    names = q.people.name
    for person in period.index:
        own = names[person]
        theirs = {score(v) for v in period.period_score.drop(person)}
        theirs |= {score(v) for v in monthly[monthly.person_id != person].total_score}
        mine = _own_figures(tables, person)
        notice = html.unescape((q.folder / f"notice-{person}.html").read_text(encoding="utf-8"))
        pdf = q.files[q.folder / f"notice-{person}.pdf"]
        for text in (notice, squash(pdf)):
            assert own in text
            assert _others_named(text, own, names.drop(person)) == [], person
            # another's total only where it is also a figure of this person's own
            shown = set(re.findall(r"\d+\.\d\d", text))
            assert (shown & theirs) - mine == set(), person
        assert score(period.period_score[person]) in pdf.replace(" ", "")

    # each notice went by itself to its person's own address: nobody else is on the message
    notices = 0
    for path in sorted((q.cfg.output / "outbox").glob("*.eml")):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        files = [p.get_filename() for p in msg.iter_attachments()]
        person = files[0].removeprefix("notice-").removesuffix(".pdf")
        assert files == [f"notice-{person}.pdf"] and person in period.index
        assert [a.addr_spec for a in msg["To"].addresses] == [q.people.email[person]]
        assert msg["Cc"] is None and msg["Bcc"] is None
        body = html.unescape(msg.get_body(("html",)).get_content())
        assert names[person] in body
        assert _others_named(body, names[person], names.drop(person)) == []
        notices += 1
    assert notices == q.people.email.reindex(period.index).fillna("").str.contains("@").sum()


# --- 4. personal data in logs --------------------------------------------------------------------


def _month_with_a_stray_roster_row(inbox: Path) -> tuple[str, str, str]:
    """March of 24 people and a roster row set aside (no such category), which the validation's
    examples quote in full: -> its person id, name and address."""
    generate(inbox, 24, "2026-03", 1, seed=22)
    stray = ("900001", "司马无忌", "sima.wuji@example.gov.cn")
    (inbox / "2026-03" / "roster-extra.csv").write_text(
        "person_id,name,unit_id,unit_name,dept_id,dept_name,category,email\n"
        f"{stray[0]},{stray[1]},court01,青山县人民法院,court01-d1,立案庭,astronaut,{stray[2]}\n",
        encoding="utf-8",
    )
    return stray


def test_what_validation_hands_the_next_task_quotes_no_row_it_set_aside(kaohe):
    # the value a task returns is an XCom, kept in Airflow's database beside the runs: it says
    # how many rows were set aside and why; their cells (a name, an address) stay in the
    # validation report and mart_quarantine
    stray = _month_with_a_stray_roster_row(Path(kaohe.inbox))
    validation = validate_step(land_step("2026-03", "run-x", scheme_ref="demo"))
    handed = json.dumps(validation, ensure_ascii=False)
    report = Path(validation["report"]).with_name("summary.json").read_text(encoding="utf-8")
    assert stray[1] in report and stray[2] in report
    assert validation["sources"]["roster"]["rows_quarantined"] == 1
    assert stray[1] not in handed and stray[2] not in handed


def test_no_log_of_the_quarter_names_a_person_or_an_address(quarter):
    q = quarter
    assert "mail: " in q.logs  # the delivery's own lines were captured
    names = [n for n in q.people.name if len(n) >= 2]
    addresses = [a for a in q.people.email.dropna() if "@" in a]
    assert len(names) >= 30 and addresses
    assert [n for n in names if n in q.logs] == []
    assert [a for a in addresses if a in q.logs] == []


def test_log_lines_mask_names_and_addresses_unless_switched_off(monkeypatch, caplog):
    log = logging.getLogger("kaohe.privacy")
    caplog.set_level(logging.INFO, logger="kaohe.privacy")

    def line() -> str:
        log.info(
            "notice held for %s <%s>", log_name("欧阳娜娜"), log_address("nana@example.gov.cn")
        )
        return caplog.messages[-1]

    monkeypatch.delenv("KAOHE_MASK_PII", raising=False)  # the default: masked
    assert line() == "notice held for 欧* <n***@example.gov.cn>"
    for value in ("1", "yes", "flase"):  # anything but an explicit off keeps it masked
        monkeypatch.setenv("KAOHE_MASK_PII", value)
        assert line() == "notice held for 欧* <n***@example.gov.cn>"
    for value in ("0", "false", "Off"):  # a laptop debugging sample data
        monkeypatch.setenv("KAOHE_MASK_PII", value)
        assert line() == "notice held for 欧阳娜娜 <nana@example.gov.cn>"
    # a task's return value (the validation's example rows quote the roster) is logged by
    # Airflow only when the masking is off
    assert default_args({})["show_return_value_in_logs"] is False
    assert default_args({"KAOHE_MASK_PII": "0"})["show_return_value_in_logs"] is True


# --- 5. passwords in Airflow task logs ------------------------------------------------------------


def test_settings_and_stored_errors_never_show_a_password():
    url = "postgresql://kaohe:Pa55%40word-x@db.example:5432/kaohe"
    cfg = settings({"KAOHE_HOME": "/srv/kaohe", "KAOHE_WAREHOUSE_URL": url})
    assert cfg.warehouse_url == url  # what the engine gets
    assert "Pa55" not in repr(cfg) and "kaohe:***@db.example:5432/kaohe" in repr(cfg)
    # nor the password of a sql connector's URL
    hr = '{"kind": "sql", "url": "postgresql://hr:Hr-secret-9@hr.example/hr", "queries": {}}'
    shown = repr(settings({"KAOHE_HOME": "/srv/kaohe", "KAOHE_CONNECTOR": hr}))
    assert "Hr-secret-9" not in shown and "hr:***@hr.example/hr" in shown
    error = f"cannot connect to {url} (password Pa55@word-x)"
    assert redact(error, cfg) == (
        "cannot connect to postgresql://kaohe:***@db.example:5432/kaohe (password ***)"
    )


def _worker_like(monkeypatch, logs: Path) -> None:
    """Run dag.test()'s tasks as a worker runs them.

    dag.test() runs each task inside the test process, where nothing is masked: Airflow masks
    in the supervisor that writes the task log. So each task goes through `supervise_task`, as
    the executors call it: the task runs in a forked process, registers what it must mask with
    its supervisor (here the test process, answering through the in-process Execution API), and
    the supervisor writes the task log the UI shows, as JSON lines, to `logs`.
    """
    from airflow.executors.workloads import BundleInfo
    from airflow.models.taskinstance import TaskInstance
    from airflow.sdk.execution_time import supervisor
    from airflow.utils.session import create_session

    def run_task_in_process(ti: Any, task: Any, client: Any = None) -> SimpleNamespace:
        supervisor.supervise_task(
            ti=ti,
            bundle_info=BundleInfo(name="dags-folder"),
            dag_rel_path=Path(task.dag.fileloc).name,
            token="",
            client=supervisor.InProcessTestSupervisor._api_client(task.dag),
            log_path=str(logs / f"{ti.task_id}.{ti.map_index}.{ti.try_number}.log"),
        )
        with create_session() as session:
            state = session.get(TaskInstance, ti.id).state
        return SimpleNamespace(ti=SimpleNamespace(state=state, task=task), msg=None)

    monkeypatch.setattr(supervisor, "run_task_in_process", run_task_in_process)


@pytest.mark.usefixtures("airflow_db")
@pytest.mark.parametrize("warehouse_url", ["postgresql"], indirect=True)
def test_task_logs_show_no_password_and_no_personal_data(kaohe, monkeypatch, tmp_path):
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowFailException

    import etl.pipeline as pipeline
    from reports.mail import smtp_from_connection

    db_password, smtp_password = "Wh-pass-3141-x", "Smtp-pass-2718-y"
    url = sa.engine.make_url(kaohe.warehouse_url).set(password=db_password)
    url = url.render_as_string(hide_password=False)  # trust auth: any password connects
    monkeypatch.setenv("KAOHE_WAREHOUSE_URL", url)
    monkeypatch.setenv("AIRFLOW_CONN_KAOHE_SMTP", f"smtp://mailer:{smtp_password}@127.0.0.1:2525")
    inbox = Path(kaohe.inbox)
    stray = _month_with_a_stray_roster_row(inbox)
    keys, people = set(), set()
    for path in (inbox / "2026-03").glob("surveys*"):
        keys |= set(to_frame("surveys", path.name, path.read_bytes())[0].rater_key.astype(str))
    for path in (inbox / "2026-03").glob("roster*"):
        frame = to_frame("roster", path.name, path.read_bytes())[0].astype(str)
        people |= {n for n in frame.name if len(n) >= 2} | {a for a in frame.email if "@" in a}
    # what a careless line in a task would log: the settings, the URL, the SMTP connection,
    # and an error that quotes both (the failure is final: a retry would wait a minute)
    land, probe = pipeline.land_step, logging.getLogger("kaohe.probe")

    def careless_land(*args: Any, **kwargs: Any) -> dict[str, Any]:
        cfg = settings()
        probe.warning("PROBE settings %r", cfg)
        probe.warning("PROBE warehouse %s", cfg.warehouse_url)
        probe.warning("PROBE smtp %r %s", smtp_from_connection(), smtp_uri())
        print("PROBE printed", cfg.warehouse_url)
        return land(*args, **kwargs)

    def smtp_uri() -> str:
        return BaseHook.get_connection("kaohe_smtp").get_uri()

    def failing_load(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise AirflowFailException(f"PROBE lost {settings().warehouse_url} and {smtp_uri()}")

    monkeypatch.setattr(pipeline, "land_step", careless_land)
    monkeypatch.setattr(pipeline, "load_step", failing_load)
    logs = tmp_path / "task-logs"
    _worker_like(monkeypatch, logs)
    dag = DagBag(dag_folder=str(Path(__file__).resolve().parent.parent / "dags")).get_dag(
        "kaohe_monthly"
    )
    logical = pendulum.datetime(2026, 4, 5, 2, tz="Asia/Shanghai")
    run = dag.test(logical_date=logical, run_conf={"month": "2026-03", "scheme": "demo"})

    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert states["validate"] == "success" and states["load"] == "failed", states
    text = {p.name.split(".")[0]: p.read_text(encoding="utf-8") for p in logs.glob("*.log")}
    assert set(text) == {"land", "validate", "load"}
    everything = "\n".join(text.values())
    # no password, anywhere; *** where each would have been
    assert db_password not in everything and smtp_password not in everything
    probes = [line for line in text["land"].splitlines() if "PROBE" in line]
    assert len(probes) == 4 and all(":***@" in line for line in probes)
    assert "mailer:***@127.0.0.1" in text["land"] and "password='***'" in text["land"]
    assert "postgres:***@127.0.0.1" in text["load"] and "mailer:***@127.0.0.1" in text["load"]
    # nor in what kaohe itself keeps of the failure
    failed = table(kaohe.warehouse_url, "mart_run").set_index("status").message["failed"]
    assert "load: PROBE lost" in failed and ":***@" in failed
    assert db_password not in failed and smtp_password not in failed
    # no personal data: the set-aside row went through validate, which returned it as an example
    summary = kaohe.output / "demo-2026" / "2026-03" / "validation" / "summary.json"
    assert stray[1] in summary.read_text(encoding="utf-8")  # the examples validate returned
    assert set(stray[1:]) <= people and len(people) > 40
    assert [x for x in people if x in everything] == []
    assert "Returned value not shown" in text["validate"]
    assert keys and [k for k in keys if k in everything] == []
