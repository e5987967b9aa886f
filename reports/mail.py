"""E-mail delivery of result notices, unit bulletins and bonus tables.

One message per recipient and document. `deliver` sends each letter at most once per
(document, revision, recipient): what went out is recorded in the warehouse's `delivery_log`
right after it went, one short transaction per message, so a rerun of the DAG or an Airflow task
retry in another process sends only what has not gone yet.

Failures are sorted by what a retry can change:
- transient (connection refused or reset, server disconnected, timeouts, any 4xx reply): retried
  `attempts` times with exponential backoff, reconnecting each time. What still has not gone is
  `deferred`, and `deliver` raises `DeliveryIncomplete` at the end of the batch so the Airflow task
  fails and its retry resumes. When the *server* stays unreachable (not one recipient's 4xx),
  the rest of the batch is deferred at once instead of knocking on a closed door for every letter.
- permanent (5xx, e.g. 550 unknown mailbox): not retried; the letter is in `failed`, nothing is
  logged for it, and `deliver` does not raise (the caller lists failures in the run summary).
  A later run tries it again, once.
- the transport itself is unusable (login refused, STARTTLS missing, certificate rejected):
  `TransportError` is raised at once; no letter could go.

Addresses are personal data: log lines carry counts and masked addresses (`log_address`;
KAOHE_MASK_PII=0 shows them, for sample data only), never the SMTP server's reply text; errors and
reports always mask them (`mask_address`); passwords appear nowhere (not in logs, reprs or
exception messages).
"""

from __future__ import annotations

import hashlib
import logging
import re
import smtplib
import socket
import ssl
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy as email_policy
from email.message import EmailMessage
from email.utils import format_datetime, localtime
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from etl.config import log_address, mask_address
from etl.warehouse import delivery_log
from reports.files import write_atomic

log = logging.getLogger(__name__)

STAGES = ("notify", "final")
SECURITY = ("starttls", "ssl", "none")
_KEY_CHUNK = 500  # documents per look-up of the delivery log (well below any bind-parameter limit)
# one address, ASCII, no display name, no list: anything else never reaches a transport
ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
_FALSY_WORDS = {"false", "0", "no", "off", "n", "f"}


# --- letters and messages -----------------------------------------------------------------------
@dataclass(frozen=True)
class Attachment:
    filename: str  # as the recipient sees it; may be Chinese (sent RFC 2231-encoded)
    path: Path
    mimetype: str  # e.g. application/pdf, text/csv,
    # application/vnd.openxmlformats-officedocument.spreadsheetml.sheet


@dataclass(frozen=True)
class Letter:
    document: str  # "<scheme_id>/<month or period>/<file stem>", e.g. demo-2026/2026-Q1/notice-P1
    revision: int
    stage: str  # notify | final
    recipient: str  # one address
    subject: str
    text: str
    html: str | None = None
    attachments: tuple[Attachment, ...] = ()

    @property
    def key(self) -> tuple[str, int, str]:
        return (self.document, self.revision, self.recipient)


def valid_address(address: object) -> bool:
    return isinstance(address, str) and ADDRESS.fullmatch(address) is not None


def message_id(letter: Letter) -> str:
    """The same (document, revision, recipient) always has the same Message-ID."""
    key = "\x00".join((letter.document, str(letter.revision), letter.recipient))
    return f"<{hashlib.sha256(key.encode('utf-8')).hexdigest()[:32]}@kaohe>"


def _check(letter: Letter) -> None:
    if not valid_address(letter.recipient):
        raise ValueError(
            f"letter {letter.document} rev {letter.revision}: "
            f"recipient {mask_address(letter.recipient)!s} is not one plain e-mail address"
        )
    if letter.stage not in STAGES:
        raise ValueError(f"letter {letter.document}: stage {letter.stage!r} is not one of {STAGES}")
    if not isinstance(letter.revision, int) or letter.revision < 1:
        raise ValueError(f"letter {letter.document}: revision must be an integer >= 1")
    if not letter.document or "\n" in letter.subject or "\r" in letter.subject:
        raise ValueError(f"letter {letter.document!r}: empty document or a line break in subject")
    for a in letter.attachments:
        if a.mimetype.count("/") != 1:
            raise ValueError(f"attachment {a.filename!r}: mimetype {a.mimetype!r} is not type/sub")
        if not Path(a.path).is_file():
            raise FileNotFoundError(f"letter {letter.document}: attachment {a.path} is missing")


def compose(letter: Letter, sender: str) -> EmailMessage:
    """The MIME message: text with an optional HTML alternative, then the attachments.

    Headers are encoded by the `email` package's default policy: a Chinese subject as RFC 2047
    UTF-8 encoded words, Chinese attachment names as RFC 2231 `filename*=utf-8''…` parameters.
    """
    _check(letter)
    if not valid_address(sender):
        raise ValueError(f"sender {mask_address(sender)} is not one plain e-mail address")
    msg = EmailMessage(policy=email_policy.default)
    msg["From"] = sender
    msg["To"] = letter.recipient
    msg["Subject"] = letter.subject
    msg["Date"] = format_datetime(localtime())
    msg["Message-ID"] = message_id(letter)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to this
    msg["X-Auto-Response-Suppress"] = "All"  # the same for Exchange / Outlook
    # base64 bodies: 7-bit clean through any relay, with or without 8BITMIME
    msg.set_content(letter.text, charset="utf-8", cte="base64")
    if letter.html is not None:
        msg.add_alternative(letter.html, subtype="html", charset="utf-8", cte="base64")
    for a in letter.attachments:
        maintype, subtype = a.mimetype.split("/")
        msg.add_attachment(
            Path(a.path).read_bytes(), maintype=maintype, subtype=subtype, filename=a.filename
        )
        # some clients take the name from Content-Type rather than Content-Disposition
        msg.get_payload()[-1].set_param("name", a.filename)
    return msg


# --- transports ---------------------------------------------------------------------------------
class Transport(Protocol):
    name: str  # what delivery_log.transport records: outbox | smtp

    def __enter__(self) -> Transport: ...
    def __exit__(self, *exc: object) -> None: ...
    def send(self, msg: EmailMessage) -> None: ...
    def reset(self) -> None: ...  # drop any connection; the next send opens a new one


class TransportError(RuntimeError):
    """The transport cannot be used at all (login refused, no STARTTLS, certificate rejected)."""


class Outbox:
    """Writes each message to `<folder>/<message id without <>>.eml` (KAOHE_MAIL=outbox)."""

    name = "outbox"

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.sender: str | None = None

    def __repr__(self) -> str:
        return f"Outbox({str(self.folder)!r})"

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def reset(self) -> None:
        return None

    def path_for(self, msg: EmailMessage) -> Path:
        mid = str(msg["Message-ID"] or "").strip().strip("<>")
        if not re.fullmatch(r"[A-Za-z0-9._-]+@[A-Za-z0-9.-]+", mid):
            raise ValueError(f"message id {mid!r} cannot name an outbox file")
        return self.folder / f"{mid}.eml"

    def send(self, msg: EmailMessage) -> None:
        target = self.path_for(msg)
        self.folder.mkdir(parents=True, exist_ok=True)
        data = msg.as_bytes(policy=email_policy.SMTP)  # CRLF line ends, as on the wire
        write_atomic(target, data, sync=True)


class Smtp:
    """One SMTP connection per batch: opened at the first send, kept, closed on exit.

    `security`: "ssl" (implicit TLS, usually port 465), "starttls" (plain connect, then STARTTLS,
    which must be offered: there is no fallback to plain text), "none" (plain: loopback relays).
    """

    name = "smtp"

    def __init__(
        self,
        host: str,
        port: int,
        login: str | None = None,
        password: str | None = None,
        security: str = "starttls",
        timeout: float = 30,
        sender: str | None = None,
        verify: bool = True,
    ) -> None:
        if security not in SECURITY:
            raise ValueError(f"security must be one of {SECURITY}, not {security!r}")
        if not host:
            raise ValueError("SMTP host is empty")
        self.host, self.port, self.login = host, int(port), login or None
        self.security, self.timeout, self.sender, self.verify = (
            security,
            float(timeout),
            sender,
            verify,
        )
        self.__password = password or None  # name-mangled, and kept out of repr
        self._client: smtplib.SMTP | None = None

    def __repr__(self) -> str:
        pw = "'***'" if self.__password else "None"
        return (
            f"Smtp(host={self.host!r}, port={self.port}, login={self.login!r}, password={pw}, "
            f"security={self.security!r}, timeout={self.timeout:g}, sender={self.sender!r})"
        )

    def __enter__(self) -> Smtp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _tls(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _open(self) -> smtplib.SMTP:
        where = f"{self.host}:{self.port}"
        if self.security == "ssl":
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=self._tls()
            )
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            client.ehlo()
            if self.security == "starttls":
                if not client.has_extn("starttls"):
                    raise TransportError(f"SMTP server {where} does not offer STARTTLS")
                client.starttls(context=self._tls())
                client.ehlo()
            if self.login and self.__password:
                if self.security == "none":
                    log.warning("mail: logging in to %s without TLS", where)
                try:
                    client.login(self.login, self.__password)
                except smtplib.SMTPAuthenticationError as e:
                    if 400 <= e.smtp_code < 500:
                        raise  # transient: the server asks to try later
                    raise TransportError(
                        f"SMTP login to {where} as {self.login!r} refused ({e.smtp_code})"
                    ) from None
                except smtplib.SMTPNotSupportedError:
                    raise TransportError(f"SMTP server {where} offers no AUTH") from None
        except BaseException:
            _close_quietly(client)
            raise
        return client

    def send(self, msg: EmailMessage) -> None:
        if self._client is None:
            try:
                self._client = self._open()
            except ssl.SSLCertVerificationError as e:
                raise TransportError(
                    f"TLS certificate of {self.host}:{self.port} rejected: {e.verify_message}"
                ) from None
        self._client.send_message(msg)

    def reset(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            _close_quietly(client)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()


def _close_quietly(client: smtplib.SMTP) -> None:
    try:
        client.close()
    except OSError:
        pass


def _flag(conn_id: str, extra: dict[str, Any], key: str) -> bool:
    """As Airflow's SmtpHook reads it: any non-empty value is true.

    A value such as "false" or "0" would be read as true there (and in `EmailOperator`), which
    silently turns TLS off; such a value is refused here instead of being guessed either way.
    """
    value = extra.get(key, False)
    if isinstance(value, str) and value.strip().lower() in _FALSY_WORDS:
        raise ValueError(
            f"connection {conn_id!r}: extra {key}={value!r} means true to Airflow's SmtpHook "
            f"(any non-empty value does); remove the key, or give JSON false"
        )
    return bool(value)


def smtp_from_connection(conn_id: str = "kaohe_smtp") -> Smtp:
    """An `Smtp` from the Airflow connection `conn_id`, its extras read as SmtpHook reads them.

    - `disable_ssl` absent -> implicit TLS ("ssl", port 465 unless given);
      `disable_ssl` set -> STARTTLS unless `disable_tls` is set too ("none", port 25 unless given).
    - `from_email` -> the default sender; `timeout` -> seconds (default 30);
      `ssl_context`: "default" (verify the certificate) or "none" (do not: lab servers only).
    - `retry_limit` is not used: `deliver(attempts=...)` governs retries. `auth_type=oauth2` is not
      supported.

    In a task the connection comes through the Execution API (UI, CLI, secrets backend); outside a
    task (tests, scripts) only `AIRFLOW_CONN_<ID>` environment variables and configured external
    secrets backends are searched: connections in the metadata database are not visible there.
    """
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)  # never log `conn`: its repr shows the password
    extra = conn.extra_dejson
    if str(extra.get("auth_type", "basic")) != "basic":
        raise ValueError(f"connection {conn_id!r}: only auth_type basic is supported")
    ssl_context = extra.get("ssl_context")
    if ssl_context not in (None, "", "default", "none"):
        raise ValueError(
            f"connection {conn_id!r}: ssl_context must be 'default' or 'none', not {ssl_context!r}"
        )
    if _flag(conn_id, extra, "disable_ssl"):
        security = "none" if _flag(conn_id, extra, "disable_tls") else "starttls"
    else:
        security = "ssl"
    if not conn.host:
        raise ValueError(f"connection {conn_id!r} has no host")
    try:
        timeout = float(extra.get("timeout", 30))
    except (TypeError, ValueError):
        raise ValueError(f"connection {conn_id!r}: timeout must be a number of seconds") from None
    return Smtp(
        host=conn.host,
        port=int(conn.port) if conn.port else (465 if security == "ssl" else 25),
        login=conn.login or None,
        password=conn.password or None,
        security=security,
        timeout=timeout,
        sender=extra.get("from_email") or None,
        verify=ssl_context != "none",
    )


def transport_for(mode: str, outbox_folder: Path) -> Outbox | Smtp:
    """KAOHE_MAIL: "outbox" -> `Outbox(outbox_folder)`, "smtp" -> the connection `kaohe_smtp`."""
    chosen = (mode or "").strip().lower()
    if chosen == "outbox":
        return Outbox(Path(outbox_folder))
    if chosen == "smtp":
        return smtp_from_connection()
    raise ValueError(f"KAOHE_MAIL must be 'outbox' or 'smtp', not {mode!r}")


# --- delivery -----------------------------------------------------------------------------------
Entry = tuple[str, str]  # (document, recipient)


@dataclass
class DeliveryReport:
    sent: list[Entry] = field(default_factory=list)
    already_sent: list[Entry] = field(default_factory=list)
    failed: list[Entry] = field(default_factory=list)  # permanent refusals: a rerun tries again
    deferred: list[Entry] = field(default_factory=list)  # transient, attempts used up: retry
    reasons: dict[Entry, str] = field(default_factory=dict)  # failed/deferred: SMTP code, reply

    @property
    def complete(self) -> bool:
        return not self.deferred

    def summary(self) -> str:
        """Counts, then each failed or deferred letter by document and masked address."""
        head = (
            f"mail: {len(self.sent)} sent, {len(self.already_sent)} already sent, "
            f"{len(self.failed)} refused, {len(self.deferred)} deferred"
        )
        lines = [head]
        for label, entries in (("refused", self.failed), ("deferred", self.deferred)):
            for doc, rcpt in entries[:20]:
                lines.append(f"  {label}: {doc} to {mask_address(rcpt)}")
            if len(entries) > 20:
                lines.append(f"  … and {len(entries) - 20} more {label}")
        return "\n".join(lines)


class DeliveryIncomplete(RuntimeError):
    """Some letters could not go for transient reasons; a retry of the task sends only those."""

    def __init__(self, report: DeliveryReport) -> None:
        super().__init__(report.summary())
        self.report = report

    def __reduce__(self) -> tuple[Any, ...]:  # survives pickling (process pools, task runners)
        return (type(self), (self.report,))


_SERVER_DOWN = "server"  # the server cannot be reached: defer the rest of the batch
_TRANSIENT = "transient"  # this message, later: retry it
_PERMANENT = "permanent"  # this message, never as it is


def _classify(exc: BaseException) -> str | None:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        return _TRANSIENT if any(400 <= c < 500 for c in codes) else _PERMANENT
    if isinstance(exc, (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError)):
        return _SERVER_DOWN
    if isinstance(exc, smtplib.SMTPResponseException):
        if exc.smtp_code == 421:  # RFC 5321: service not available, closing the channel
            return _SERVER_DOWN
        if 400 <= exc.smtp_code < 500:
            return _TRANSIENT
        if 500 <= exc.smtp_code < 600:
            return _PERMANENT
        return _SERVER_DOWN  # a reply that is no SMTP code: a broken connection
    if isinstance(exc, ssl.SSLError):  # a subclass of OSError, but no retry mends it
        return None
    if isinstance(exc, (OSError, socket.timeout)):  # refused, reset, unreachable, timed out
        return _SERVER_DOWN
    return None


def _reason(exc: BaseException, recipient: str) -> str:
    """The SMTP code and reply, with the address masked; for reports, not for logs."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, text = next(iter(exc.recipients.values()), (0, b""))
    elif isinstance(exc, smtplib.SMTPResponseException):
        code, text = exc.smtp_code, exc.smtp_error
    else:
        return type(exc).__name__
    reply = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"{code} {reply.replace(recipient, mask_address(recipient))}".strip()


def _brief(exc: BaseException) -> str:
    """What a log line may say about a failure: its kind and code, never the reply text."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return f"recipient refused ({', '.join(str(c) for c, _ in exc.recipients.values())})"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{type(exc).__name__} {exc.smtp_code}"
    if isinstance(exc, OSError) and exc.errno:
        return f"{type(exc).__name__} errno {exc.errno}"
    return type(exc).__name__


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _logged_keys(engine: Engine, documents: Iterable[str]) -> set[tuple[str, int, str]]:
    docs = sorted(set(documents))
    keys: set[tuple[str, int, str]] = set()
    c = delivery_log.c
    with engine.connect() as conn:  # closed before anything is sent
        for part in _chunks(docs, _KEY_CHUNK):
            rows = conn.execute(
                sa.select(c.document, c.revision, c.recipient).where(c.document.in_(part))
            )
            keys.update((d, int(r), p) for d, r, p in rows)
    return keys


def _record(engine: Engine, letter: Letter, mid: str, transport: str) -> None:
    row = {
        "document": letter.document,
        "revision": letter.revision,
        "recipient": letter.recipient,
        "stage": letter.stage,
        "message_id": mid,
        "transport": transport,
        "sent_at": datetime.now(UTC),
    }
    try:
        with engine.begin() as conn:
            conn.execute(sa.insert(delivery_log), [row])
    except sa.exc.IntegrityError:
        # another run logged the same message meanwhile (two runs at once): already recorded
        log.warning("mail: %s rev %d was logged by another run", letter.document, letter.revision)


def deliver(
    engine: Engine,
    letters: Iterable[Letter],
    transport: Transport,
    *,
    sender: str | None = None,
    attempts: int = 3,
    backoff: float = 1.0,
) -> DeliveryReport:
    """Send every letter not yet in `delivery_log`; log each one right after it went.

    `sender` is the From address; None takes the transport's (the connection's `from_email`).
    Raises ValueError before anything is sent when a letter is malformed (above all: a recipient
    that is not one plain address), `DeliveryIncomplete` after the batch when letters were
    deferred, `TransportError` when the transport cannot be used at all.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    from_addr = sender or getattr(transport, "sender", None)
    if not valid_address(from_addr):
        raise ValueError(f"sender {mask_address(from_addr)} is not one plain e-mail address")
    batch: dict[tuple[str, int, str], Letter] = {}
    for letter in letters:
        _check(letter)  # nothing malformed ever reaches the transport
        seen = batch.setdefault(letter.key, letter)
        if seen != letter:
            raise ValueError(
                f"two different letters for {letter.document} rev {letter.revision} "
                f"to {mask_address(letter.recipient)}"
            )
    report = DeliveryReport()
    logged = _logged_keys(engine, (k[0] for k in batch))
    pending: list[Letter] = []
    for key, letter in batch.items():
        if key in logged:
            report.already_sent.append((letter.document, letter.recipient))
        else:
            pending.append(letter)
    log.info(
        "mail: %d letters to send through %s, %d already sent",
        len(pending),
        transport.name,
        len(report.already_sent),
    )
    with transport:
        for n, letter in enumerate(pending):
            outcome = _send_one(engine, letter, transport, from_addr, attempts, backoff, report)
            if outcome == _SERVER_DOWN:
                rest = pending[n + 1 :]
                report.deferred.extend((x.document, x.recipient) for x in rest)
                log.warning("mail: server unreachable; %d further letters deferred", len(rest))
                break
    log.info(
        "mail: %d sent, %d already sent, %d refused, %d deferred",
        len(report.sent),
        len(report.already_sent),
        len(report.failed),
        len(report.deferred),
    )
    if report.deferred:
        raise DeliveryIncomplete(report)
    return report


def _send_one(
    engine: Engine,
    letter: Letter,
    transport: Transport,
    sender: str,
    attempts: int,
    backoff: float,
    report: DeliveryReport,
) -> str | None:
    """Send one letter with retries; returns None when it went or was refused, else its trouble."""
    entry = (letter.document, letter.recipient)
    msg = compose(letter, sender)
    for attempt in range(1, attempts + 1):
        try:
            transport.send(msg)
        except Exception as exc:
            kind = _classify(exc)
            if kind is None:
                raise
            if kind == _PERMANENT:
                report.failed.append(entry)
                report.reasons[entry] = _reason(exc, letter.recipient)
                log.warning(
                    "mail: %s to %s refused: %s",
                    letter.document,
                    log_address(letter.recipient),
                    _brief(exc),
                )
                return None
            transport.reset()  # whatever state the session is in, start a fresh one
            log.warning(
                "mail: %s to %s, attempt %d of %d: %s",
                letter.document,
                log_address(letter.recipient),
                attempt,
                attempts,
                _brief(exc),
            )
            if attempt == attempts:
                report.deferred.append(entry)
                report.reasons[entry] = _reason(exc, letter.recipient)
                return kind
            time.sleep(backoff * 2 ** (attempt - 1))
        else:
            _record(engine, letter, str(msg["Message-ID"]), transport.name)
            report.sent.append(entry)
            return None
    return None  # unreachable: the loop returns
