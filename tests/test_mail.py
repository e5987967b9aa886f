"""E-mail delivery: a real SMTP server on loopback (aiosmtpd), a real warehouse (SQLite and
PostgreSQL). What a recipient and an assessment office care about: each person gets each document
exactly once, whatever reruns and retries happen, with the Chinese subject and attachment intact;
refused addresses are reported, not silently dropped; passwords and full addresses never leak."""

from __future__ import annotations

import email
import email.policy
import json
import logging
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from etl.warehouse import create_schema, delivery_log, engine_for
from reports.mail import (
    Attachment,
    DeliveryIncomplete,
    Letter,
    Outbox,
    Smtp,
    TransportError,
    deliver,
    mask_address,
    message_id,
    smtp_from_connection,
    transport_for,
)
from tests.helpers import free_port

SENDER = "kaohe@court.example.gov.cn"
ZHANG, LI = "zhangsan@court.example.gov.cn", "lisi@court.example.gov.cn"
LEADER1, LEADER2 = "wang.yuanzhang@court.example.gov.cn", "zhao.shuji@court.example.gov.cn"
NOTICE_A = "demo-2026/2026-Q1/notice-P0001"
NOTICE_B = "demo-2026/2026-Q1/notice-P0002"
BULLETIN = "demo-2026/2026-Q1/bulletin-U01"
FAST = {"sender": SENDER, "attempts": 3, "backoff": 0.01}


# --- a recording SMTP server ---------------------------------------------------------------------
class Recorder:
    """Accepts mail and keeps it; can be told to refuse RCPT or DATA the way real servers do."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []
        self.data_commands = 0
        self.rcpt_commands: dict[str, int] = {}
        self.data_replies: list[str] = []  # replies for the next DATA commands, then 250
        self.rcpt_replies: dict[str, list[str]] = {}  # per address, consumed one by one
        self.refuse: dict[str, str] = {}  # per address, every time
        self.accept_at_most: int | None = None  # then every DATA gets 421 (server going down)
        self.logins: list[bytes] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        self.rcpt_commands[address] = self.rcpt_commands.get(address, 0) + 1
        if address in self.refuse:
            return self.refuse[address]
        if self.rcpt_replies.get(address):
            return self.rcpt_replies[address].pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.data_commands += 1
        if self.data_replies:
            return self.data_replies.pop(0)
        if self.accept_at_most is not None and len(self.messages) >= self.accept_at_most:
            return "421 4.3.2 Service shutting down"
        self.messages.append((list(envelope.rcpt_tos), envelope.original_content))
        return "250 2.0.0 Message accepted"

    def parsed(self) -> list[email.message.EmailMessage]:
        return [email.message_from_bytes(raw, policy=email.policy.default) for _, raw in self]

    def __iter__(self):
        return iter(self.messages)

    def received(self) -> list[tuple[str, str]]:
        """(envelope recipient, Message-ID) of every accepted message, sorted."""
        out = []
        for (rcpts, _), msg in zip(self.messages, self.parsed(), strict=True):
            out += [(r, msg["Message-ID"]) for r in rcpts]
        return sorted(out)


def start(handler: Recorder, port: int, **smtp_kw) -> Controller:
    ctl = Controller(handler, hostname="127.0.0.1", port=port, server_hostname="mx.test", **smtp_kw)
    ctl.start()
    return ctl


@pytest.fixture
def server():
    handler, port = Recorder(), free_port()
    ctl = start(handler, port)
    try:
        yield handler, port
    finally:
        ctl.stop()


def plain_smtp(port: int, **kw) -> Smtp:
    return Smtp("127.0.0.1", port, security="none", timeout=5, **kw)


@pytest.fixture
def engine(warehouse_url):
    eng = engine_for(warehouse_url)
    create_schema(eng)
    yield eng
    eng.dispose()


def logged(engine) -> list[tuple]:
    c = delivery_log.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(c.document, c.revision, c.recipient, c.stage, c.message_id, c.transport)
        )
        return sorted(tuple(r) for r in rows)


# --- the letters of a quarter: a notice to each of two people, a bulletin to two leaders ---------
PDF_A = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3 notice of Zhang San\n%%EOF\n"
PDF_B = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3 notice of Li Si\n%%EOF\n"
PDF_U = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3 bulletin U01\n%%EOF\n"
CSV_U = "工号,姓名,奖金\nP0001,张三,1200.00\n".encode("utf-8-sig")
SUBJECT_NOTICE = "2026年第一季度考核结果反馈单"
SUBJECT_BULLETIN = "关于2026年第一季度干部绩效考核结果的通报"


@pytest.fixture
def letters(tmp_path) -> list[Letter]:
    files = tmp_path / "output"
    files.mkdir()
    for name, data in [
        ("notice-P0001.pdf", PDF_A),
        ("notice-P0002.pdf", PDF_B),
        ("bulletin-U01.pdf", PDF_U),
        ("bonus-U01.csv", CSV_U),
    ]:
        (files / name).write_bytes(data)

    def notice(doc, to, who, pdf):
        return Letter(
            document=doc,
            revision=1,
            stage="notify",
            recipient=to,
            subject=SUBJECT_NOTICE,
            text=f"{who}同志：\n您的2026年第一季度考核结果见附件。如有异议，请于公示期内提出。",
            html=f"<p>{who}同志：</p><p>您的考核结果见附件。</p>",
            attachments=(Attachment(f"考核结果反馈单-{who}.pdf", files / pdf, "application/pdf"),),
        )

    bulletin = [
        Letter(
            document=BULLETIN,
            revision=1,
            stage="final",
            recipient=leader,
            subject=SUBJECT_BULLETIN,
            text="附件为本单位2026年第一季度考核通报及奖金分配表。",
            attachments=(
                Attachment("考核通报-U01.pdf", files / "bulletin-U01.pdf", "application/pdf"),
                Attachment("奖金分配表-U01.csv", files / "bonus-U01.csv", "text/csv"),
            ),
        )
        for leader in (LEADER1, LEADER2)
    ]
    return [
        notice(NOTICE_A, ZHANG, "张三", "notice-P0001.pdf"),
        notice(NOTICE_B, LI, "李四", "notice-P0002.pdf"),
        *bulletin,
    ]


def ids(letters) -> list[tuple[str, str]]:
    return sorted((x.recipient, message_id(x)) for x in letters)


# --- tests ------------------------------------------------------------------------------------
def test_each_person_gets_each_document_once_with_chinese_intact(engine, server, letters):
    handler, port = server
    report = deliver(engine, letters, plain_smtp(port), **FAST)

    assert sorted(report.sent) == sorted(
        [(NOTICE_A, ZHANG), (NOTICE_B, LI), (BULLETIN, LEADER1), (BULLETIN, LEADER2)]
    )
    assert report.already_sent == report.failed == report.deferred == []
    assert handler.received() == ids(letters)  # one message per recipient and document
    by_to = {m["To"]: m for m in handler.parsed()}
    assert len(by_to) == 4

    zhang = by_to[ZHANG]
    assert zhang["Subject"] == "2026年第一季度考核结果反馈单"
    assert zhang["From"] == SENDER
    assert zhang["Auto-Submitted"] == "auto-generated"
    assert "张三同志" in zhang.get_body(("plain",)).get_content()
    assert "<p>张三同志：</p>" in zhang.get_body(("html",)).get_content()
    [pdf] = zhang.iter_attachments()
    assert pdf.get_filename() == "考核结果反馈单-张三.pdf"
    assert pdf.get_param("name") == "考核结果反馈单-张三.pdf"  # for clients that look there
    assert pdf.get_content_type() == "application/pdf"
    assert pdf.get_content() == PDF_A
    assert [a.get_content() for a in by_to[LI].iter_attachments()] == [PDF_B]  # not Zhang's

    leader = by_to[LEADER2]
    assert leader["Subject"] == "关于2026年第一季度干部绩效考核结果的通报"
    assert [(a.get_filename(), a.get_content_type()) for a in leader.iter_attachments()] == [
        ("考核通报-U01.pdf", "application/pdf"),
        ("奖金分配表-U01.csv", "text/csv"),
    ]
    pdf_u, csv_u = leader.iter_attachments()
    assert pdf_u.get_content() == PDF_U
    assert csv_u.get_payload(decode=True) == CSV_U  # the bytes, BOM and all
    # what went over the wire is 7-bit clean, so any relay passes it unchanged
    assert all(raw.isascii() for _, raw in handler)

    assert logged(engine) == sorted(
        (x.document, 1, x.recipient, x.stage, message_id(x), "smtp") for x in letters
    )


def test_rerun_and_retry_in_another_process_send_nothing_again(
    warehouse_url, engine, server, letters
):
    handler, port = server
    deliver(engine, letters, plain_smtp(port), **FAST)

    again = deliver(engine, letters, plain_smtp(port), **FAST)  # a full rerun
    assert again.sent == [] and len(again.already_sent) == 4

    other = engine_for(warehouse_url)  # an Airflow task retry runs in a fresh process
    try:
        retry = deliver(other, letters, plain_smtp(port), **FAST)
    finally:
        other.dispose()
    assert retry.sent == [] and len(retry.already_sent) == 4
    assert handler.received() == ids(letters)
    assert len(logged(engine)) == 4

    # a corrected notice (revision 2) is a new document revision: it goes, once
    a = letters[0]
    corrected = Letter(a.document, 2, "notify", a.recipient, a.subject, "更正后的结果。")
    assert deliver(engine, [*letters, corrected], plain_smtp(port), **FAST).sent == [
        (NOTICE_A, ZHANG)
    ]
    assert len(handler.messages) == 5
    assert message_id(corrected) != message_id(a)
    assert len(logged(engine)) == 5


@pytest.mark.parametrize("failure", ["421 on the first DATA", "450 greylisting of one RCPT"])
def test_a_transient_refusal_is_retried_and_each_message_arrives_once(
    engine, server, letters, failure
):
    handler, port = server
    if failure.startswith("421"):
        handler.data_replies = ["421 4.3.2 Service not available, closing channel"]
    else:
        handler.rcpt_replies[LI] = ["450 4.2.0 Greylisted, try again later"]

    report = deliver(engine, letters, plain_smtp(port), **FAST)

    assert len(report.sent) == 4 and report.failed == report.deferred == []
    assert handler.received() == ids(letters)  # exactly once each, none lost, none doubled
    if failure.startswith("421"):
        assert handler.data_commands == 5  # the refused DATA and four accepted ones
    else:
        assert handler.rcpt_commands[LI] == 2
    assert len(logged(engine)) == 4


def test_a_permanent_refusal_is_reported_not_retried_and_tried_again_next_run(
    engine, server, letters, caplog, monkeypatch
):
    handler, port = server
    monkeypatch.delenv("KAOHE_MASK_PII", raising=False)  # the default: log lines masked
    handler.refuse[LI] = f"550 5.1.1 <{LI}>: Recipient address rejected: User unknown"
    caplog.set_level(logging.INFO, logger="reports.mail")

    report = deliver(engine, letters, plain_smtp(port), **FAST)  # no exception

    assert report.failed == [(NOTICE_B, LI)]
    assert sorted(report.sent) == sorted(
        [(NOTICE_A, ZHANG), (BULLETIN, LEADER1), (BULLETIN, LEADER2)]
    )
    assert handler.rcpt_commands[LI] == 1  # a 5xx is not retried
    assert report.reasons[(NOTICE_B, LI)].startswith("550 5.1.1")
    assert LI not in report.reasons[(NOTICE_B, LI)]
    assert "1 refused" in report.summary() and "l***@court.example.gov.cn" in report.summary()
    assert LI not in report.summary()
    assert [r[:3] for r in logged(engine)] == sorted(
        [(NOTICE_A, 1, ZHANG), (BULLETIN, 1, LEADER1), (BULLETIN, 1, LEADER2)]
    )

    # logs carry counts and masked addresses only
    # what kaohe logs (the test SMTP server's own log, at whatever level an earlier test left
    # it, is the other side's and may name its recipients)
    def ours() -> str:
        return "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("reports."))

    assert "l***@court.example.gov.cn" in ours()
    assert all(x not in ours() for x in (ZHANG, LI, LEADER1, LEADER2))

    # it was never logged as sent, so the next run tries it again (once) and reports it again;
    # with KAOHE_MASK_PII off (sample data) its log line names the address, its report does not
    monkeypatch.setenv("KAOHE_MASK_PII", "0")
    caplog.clear()
    second = deliver(engine, letters, plain_smtp(port), **FAST)
    assert LI in ours() and LI not in second.summary()
    monkeypatch.delenv("KAOHE_MASK_PII")
    assert second.failed == [(NOTICE_B, LI)] and second.sent == []
    assert len(second.already_sent) == 3
    assert handler.rcpt_commands[LI] == 2
    # once the mailbox exists, the notice goes, and only it
    del handler.refuse[LI]
    third = deliver(engine, letters, plain_smtp(port), **FAST)
    assert third.sent == [(NOTICE_B, LI)] and third.failed == []
    assert handler.received() == ids(letters)


def test_a_server_going_down_raises_incomplete_and_the_retry_sends_only_the_unsent(
    engine, server, letters
):
    handler, port = server
    handler.accept_at_most = 1  # the first message goes, then 421 to everything

    with pytest.raises(DeliveryIncomplete) as caught:
        deliver(engine, letters, plain_smtp(port), **FAST)

    report = caught.value.report
    assert report.sent == [(NOTICE_A, ZHANG)]
    assert report.deferred == [(NOTICE_B, LI), (BULLETIN, LEADER1), (BULLETIN, LEADER2)]
    assert handler.data_commands == 1 + 3  # the 2nd letter tried 3 times; the rest not knocked on
    assert "3 deferred" in str(caught.value)
    assert all(x not in str(caught.value) for x in (ZHANG, LI, LEADER1, LEADER2))
    assert [r[:3] for r in logged(engine)] == [(NOTICE_A, 1, ZHANG)]  # nothing for the unsent

    handler.accept_at_most = None  # the server is back; Airflow retries the task
    retry = deliver(engine, letters, plain_smtp(port), **FAST)
    assert retry.already_sent == [(NOTICE_A, ZHANG)] and len(retry.sent) == 3
    assert handler.received() == ids(letters)
    assert len(logged(engine)) == 4


def test_connection_refused_defers_everything_until_the_server_listens(engine, letters):
    port = free_port()  # nothing listens there yet
    with pytest.raises(DeliveryIncomplete) as caught:
        deliver(engine, letters, plain_smtp(port), **FAST)
    assert caught.value.report.sent == [] and len(caught.value.report.deferred) == 4
    assert logged(engine) == []

    handler = Recorder()
    ctl = start(handler, port)
    try:
        report = deliver(engine, letters, plain_smtp(port), **FAST)
    finally:
        ctl.stop()
    assert len(report.sent) == 4
    assert handler.received() == ids(letters)


def test_outbox_writes_one_eml_per_letter_named_by_message_id_and_a_rerun_writes_nothing(
    engine, letters, tmp_path
):
    folder = tmp_path / "output" / "outbox"
    report = deliver(engine, letters, Outbox(folder), **FAST)
    assert len(report.sent) == 4

    files = sorted(folder.iterdir())
    assert [f.name for f in files] == sorted(message_id(x)[1:-1] + ".eml" for x in letters)
    by_name = {message_id(x)[1:-1] + ".eml": x for x in letters}
    for f in files:
        msg = email.message_from_bytes(f.read_bytes(), policy=email.policy.default)
        letter = by_name[f.name]
        assert msg["To"] == letter.recipient
        assert msg["Subject"] == letter.subject
        assert msg["Message-ID"] == message_id(letter)
    assert {r[5] for r in logged(engine)} == {"outbox"} and len(logged(engine)) == 4

    before = {f.name: (f.stat().st_mtime_ns, f.read_bytes()) for f in files}
    again = deliver(engine, letters, Outbox(folder), **FAST)
    assert again.sent == [] and len(again.already_sent) == 4
    assert {f.name: (f.stat().st_mtime_ns, f.read_bytes()) for f in folder.iterdir()} == before


def test_a_malformed_recipient_never_reaches_the_server(server, letters, tmp_path):
    handler, port = server
    eng = engine_for(f"sqlite:///{tmp_path / 'w.db'}")
    create_schema(eng)
    a = letters[0]
    for bad in [
        "",
        "zhangsan",
        "张三 <zhangsan@court.example.gov.cn>",
        f"{ZHANG}, {LI}",
        " " + ZHANG,
        ZHANG + "\r\nBcc: everyone@example.gov.cn",
    ]:
        bad_letter = Letter(a.document, 1, "notify", bad, a.subject, a.text)
        with pytest.raises(ValueError, match="not one plain e-mail address"):
            deliver(eng, [letters[1], bad_letter], plain_smtp(port), **FAST)
    assert handler.messages == [] and handler.rcpt_commands == {}  # not even the good letter
    eng.dispose()


def test_login_and_tls_rules_keep_the_password_safe(letters, tmp_path, caplog):
    eng = engine_for(f"sqlite:///{tmp_path / 'w.db'}")
    create_schema(eng)
    password = "Zh1-secret-pw"

    def authenticator(server, session, envelope, mechanism, auth_data):
        handler.logins.append(auth_data.login)
        ok = auth_data.login == b"kaohe" and auth_data.password == password.encode()
        return AuthResult(success=ok, handled=False)

    handler, port = Recorder(), free_port()
    ctl = start(handler, port, authenticator=authenticator, auth_require_tls=False)
    caplog.set_level(logging.DEBUG)
    try:
        # right password, plain relay: the letter goes
        good = plain_smtp(port, login="kaohe", password=password)
        assert len(deliver(eng, letters[:1], good, **FAST).sent) == 1
        # wrong password: stop at once, the password in no message
        bad = plain_smtp(port, login="kaohe", password="wrong-" + password)
        with pytest.raises(TransportError, match="refused") as caught:
            deliver(eng, letters[1:2], bad, **FAST)
        assert password not in str(caught.value) and password not in repr(bad)
        logins = len(handler.logins)
        # STARTTLS required but not offered: no fallback, so no credentials go in clear
        tls = Smtp("127.0.0.1", port, "kaohe", password, security="starttls", timeout=5)
        with pytest.raises(TransportError, match="STARTTLS"):
            deliver(eng, letters[1:2], tls, **FAST)
        assert len(handler.logins) == logins  # the STARTTLS attempt never tried to log in
    finally:
        ctl.stop()
        eng.dispose()
    assert len(handler.messages) == 1
    assert password not in caplog.text


@pytest.mark.parametrize(
    "value, expected",
    [
        (
            {
                "conn_type": "smtp",
                "host": "mail.court.example.gov.cn",
                "port": 587,
                "login": "kaohe",
                "password": "Pw-from-secrets-1",
                "extra": {"disable_ssl": True, "from_email": SENDER, "timeout": 10},
            },
            ("mail.court.example.gov.cn", 587, "kaohe", "starttls", 10, SENDER),
        ),
        (
            "smtp://kaohe:Pw-from-secrets-1@mail.court.example.gov.cn"
            "?from_email=kaohe%40court.example.gov.cn",
            ("mail.court.example.gov.cn", 465, "kaohe", "ssl", 30, SENDER),
        ),
        (
            "smtp://relay.local?disable_ssl=true&disable_tls=true",
            ("relay.local", 25, None, "none", 30, None),
        ),
    ],
    ids=["json-starttls", "uri-ssl", "uri-plain-relay"],
)
def test_smtp_from_the_airflow_connection(monkeypatch, value, expected):
    env = json.dumps(value) if isinstance(value, dict) else value
    monkeypatch.setenv("AIRFLOW_CONN_KAOHE_SMTP", env)
    smtp = smtp_from_connection()
    assert (smtp.host, smtp.port, smtp.login, smtp.security, smtp.timeout, smtp.sender) == expected
    assert "Pw-from-secrets-1" not in repr(smtp)
    assert isinstance(transport_for("smtp", Path("unused")), Smtp)


def test_a_false_looking_tls_flag_is_refused_not_read_as_true(monkeypatch):
    # Airflow's SmtpHook reads any non-empty value as true: "disable_tls=false" would turn TLS off
    monkeypatch.setenv(
        "AIRFLOW_CONN_KAOHE_SMTP",
        "smtp://kaohe:Pw-from-secrets-1@mail.example.gov.cn:587?disable_ssl=true&disable_tls=false",
    )
    with pytest.raises(ValueError, match="disable_tls") as caught:
        smtp_from_connection()
    assert "Pw-from-secrets-1" not in str(caught.value)


def test_transport_for_the_configured_mode(tmp_path):
    assert isinstance(transport_for("outbox", tmp_path), Outbox)
    with pytest.raises(ValueError, match="KAOHE_MAIL must be 'outbox' or 'smtp', not 'sendmail'"):
        transport_for("sendmail", tmp_path)


def test_message_id_is_stable_per_document_revision_and_recipient(letters):
    a = letters[0]
    same = Letter(a.document, 1, "final", a.recipient, "另一个标题", "其他正文")
    assert message_id(same) == message_id(a)  # subject and body do not matter
    assert message_id(Letter(a.document, 2, "notify", a.recipient, "s", "t")) != message_id(a)
    assert message_id(Letter(a.document, 1, "notify", LI, "s", "t")) != message_id(a)
    assert message_id(letters[2]) != message_id(letters[3])  # one bulletin, two leaders


@pytest.mark.parametrize(
    "address, masked",
    [
        ("zhangsan@example.gov.cn", "z***@example.gov.cn"),
        ("z@example.gov.cn", "***@example.gov.cn"),
        ("", "***"),
        (None, "***"),
        ("zhangsan", "***"),
        ("a@b@c.cn", "***"),
    ],
)
def test_mask_address(address, masked):
    assert mask_address(address) == masked
