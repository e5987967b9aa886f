"""Deployment configuration: environment variables with embedded defaults (interfaces.md).

Read at call time, never at import, so a test or an operator can point one process at another
warehouse or inbox by changing the environment.

Also what keeps secrets and personal data out of logs, because every task reads its settings
here first: the warehouse password and the rater secret are registered with Airflow's secrets
masker (the task log shows `***` in their place), and `log_name` / `log_address` are what any log
line that names a person or an address must show (masked unless `KAOHE_MASK_PII` is off).
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

_OFF = {"0", "false", "no", "off"}


@dataclass(frozen=True, repr=False)
class Settings:
    home: Path
    inbox: str
    warehouse_url: str
    scheme: str | None
    output: Path
    mail: str
    base_url: str
    connector: str
    mail_from: str | None
    batch_people: int  # people per unit batch of the mapped scoring and rendering

    def __repr__(self) -> str:
        """No password of the warehouse URL or a connector's URL: a Settings in a log or a
        traceback is safe."""
        hidden = _secrets_of(self)
        shown = (f"{f.name}={_urls_shown(getattr(self, f.name), hidden)!r}" for f in fields(self))
        return "Settings(" + ", ".join(shown) + ")"

    @property
    def archive(self) -> Path:
        """The landing zone: landed files by checksum; nothing else reads the inbox."""
        return self.home / "archive"

    @property
    def staging(self) -> Path:
        return self.home / "staging"


def settings(env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    home = Path(env.get("KAOHE_HOME") or "./var").resolve()
    output = Path(env.get("KAOHE_OUTPUT") or home / "output").resolve()
    cfg = Settings(
        home=home,
        inbox=env.get("KAOHE_INBOX") or str(home / "inbox"),
        warehouse_url=env.get("KAOHE_WAREHOUSE_URL") or f"sqlite:///{home / 'warehouse.db'}",
        scheme=env.get("KAOHE_SCHEME") or None,
        output=output,
        mail=env.get("KAOHE_MAIL") or "outbox",
        base_url=env.get("KAOHE_BASE_URL") or output.as_uri(),
        connector=env.get("KAOHE_CONNECTOR") or "folder",
        mail_from=env.get("KAOHE_MAIL_FROM") or None,  # else the connection's from_email
        batch_people=_positive(env, "KAOHE_BATCH_PEOPLE", 10_000),
    )
    # every task reads its settings first: from here on its log shows *** for these
    register_secrets(*_secrets_of(cfg))
    return cfg


def _positive(env: dict[str, str], name: str, default: int) -> int:
    text = env.get(name) or str(default)
    if not text.strip().isdigit() or int(text) < 1:
        raise ValueError(f"{name} must be a whole number of at least 1, not {text!r}")
    return int(text)


def rater_secret(cfg: Settings, env: dict[str, str] | None = None) -> bytes:
    """The deployment secret that rater keys are hashed with.

    Production sets KAOHE_RATER_SECRET (from the secrets backend); a laptop deployment gets one
    generated once and kept beside the warehouse, so hashes stay stable across reruns.
    """
    env = os.environ if env is None else env
    if env.get("KAOHE_RATER_SECRET"):
        register_secrets(env["KAOHE_RATER_SECRET"])
        return env["KAOHE_RATER_SECRET"].encode()
    path = cfg.home / "rater.secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    secret = path.read_text().strip()
    register_secrets(secret)
    return secret.encode()


# --- secrets in logs ------------------------------------------------------------------------------


def url_secrets(url: str | None) -> list[str]:
    """The password of a URL as written (percent-encoded) and as the driver receives it."""
    try:
        password = urlsplit(url or "").password
    except ValueError:  # not a URL at all: nothing in it is a password we could name
        return []
    return sorted({password, unquote(password)}) if password else []


def _urls_shown(value: Any, passwords: list[str]) -> Any:
    """`postgresql://kaohe:***@db/kaohe`: the URLs in a value (a URL, a connector's JSON) as a
    log line or a repr may show them."""
    if isinstance(value, str):
        for secret in passwords:
            value = value.replace(f":{secret}@", ":***@")
    return value


def _connector_urls(spec: str) -> list[str]:
    """The URLs a sql or http connector's JSON names (`url`, `base_url`), which may hold a
    password; a connection id's password is Airflow's to mask."""
    try:
        text = Path(spec).read_text(encoding="utf-8") if os.path.isfile(spec) else spec
        conf = json.loads(text)
    except (OSError, ValueError):
        return []  # `folder`, or nothing a connector could be built from either
    if not isinstance(conf, dict):
        return []
    return [str(conf[k]) for k in ("url", "base_url") if conf.get(k)]


def _secrets_of(cfg: Settings) -> list[str]:
    urls = [cfg.warehouse_url, *_connector_urls(cfg.connector)]
    return [s for url in urls for s in url_secrets(url)]


def register_secrets(*values: str) -> None:
    """Register values with Airflow's secrets masker, so the task log (written by the task's
    supervisor, which the registration also reaches) shows `***` in their place.

    A no-op outside Airflow (tests, `make demo`, the benchmarks import no Airflow). Airflow masks
    nothing shorter than `[logging] min_length_masked_secret` (5): use longer passwords.
    """
    if "airflow.sdk" not in sys.modules:
        return
    from airflow.sdk.log import mask_secret

    for value in values:
        if value:
            mask_secret(value)


def redact(text: str, cfg: Settings | None = None) -> str:
    """`text` with every secret kaohe knows of, and every secret registered with Airflow's masker
    in this process (connection passwords a task fetched), replaced by `***`: for what kaohe
    itself stores, such as a failed task's error in `mart_run`."""
    cfg = cfg or settings()
    known = [*_secrets_of(cfg), os.environ.get("KAOHE_RATER_SECRET") or ""]
    for secret in sorted(filter(None, known), key=len, reverse=True):
        text = text.replace(secret, "***")
    if "airflow.sdk" in sys.modules:
        try:
            from airflow.sdk._shared.secrets_masker import redact as airflow_redact
        except ImportError:  # moved in a later Airflow: kaohe's own secrets are replaced above
            return text
        text = str(airflow_redact(text))
    return text


# --- personal data in logs ------------------------------------------------------------------------


def pii_masked(env: dict[str, str] | None = None) -> bool:
    """KAOHE_MASK_PII: on unless set to 0/false/no/off (a laptop debugging sample data). Anything
    else, a typo included, keeps the masking: the safe way to misread a setting."""
    env = os.environ if env is None else env
    return (env.get("KAOHE_MASK_PII") or "1").strip().lower() not in _OFF


def mask_name(name: Any) -> str:
    """`张三丰` -> `张*`: the family name, never the length of the given name."""
    text = "" if name is None else str(name).strip()
    return f"{text[0]}*" if text else "***"


def mask_address(address: Any) -> str:
    """`zhangsan@example.gov.cn` -> `z***@example.gov.cn`; anything unparsable -> `***`: the one
    rule for logs, mail errors and reports."""
    if not address or not isinstance(address, str) or address.count("@") != 1:
        return "***"
    local, domain = address.strip().split("@")
    if not domain:
        return "***"
    return f"{local[:1] if len(local) > 1 else ''}***@{domain}"


def log_name(name: Any) -> str:
    """What a log line shows of a person's name: masked unless KAOHE_MASK_PII is off."""
    return mask_name(name) if pii_masked() else str(name)


def log_address(address: Any) -> str:
    """What a log line shows of an e-mail address: masked unless KAOHE_MASK_PII is off."""
    return mask_address(address) if pii_masked() else str(address)
