"""Deployment configuration: environment variables with embedded defaults (interfaces.md).

Read at call time, never at import, so a test or an operator can point one process at another
warehouse or inbox by changing the environment.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
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
    return Settings(
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
        return env["KAOHE_RATER_SECRET"].encode()
    path = cfg.home / "rater.secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_text().strip().encode()
