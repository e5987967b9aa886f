"""Landing: every extract is copied unchanged into a content-addressed archive before anything reads
it, so each result traces to exact bytes and a rerun reads what was landed, not what the inbox
holds now.

Which bytes a month uses: the files of the month's current load stay pinned (a changed inbox copy of
a loaded file is reported and passed over, unless the run asks for `reland`); every other file is
taken from the inbox as it is. A correction after a rejection therefore needs no flag, and a
correction of a loaded month is an explicit decision.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from etl.connectors import Extract
from etl.warehouse import landed_file, landing_log, loaded_file


@dataclass(frozen=True)
class Landed:
    source: str
    name: str
    sha256: str
    size: int
    path: str
    newly_landed: bool

    def as_dict(self) -> dict:
        return asdict(self)


def archive_path(archive: Path, sha: str) -> Path:
    return archive / sha[:2] / sha


def _store(archive: Path, data: bytes, sha: str) -> Path:
    """Write once, atomically: a crash leaves no half file under a checksum name."""
    path = archive_path(archive, sha)
    if path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() == sha:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def land(
    extracts: list[Extract],
    month: str,
    scheme_id: str,
    run_id: str,
    archive: Path,
    engine: Engine,
    reland: bool = False,
) -> tuple[list[Landed], list[str]]:
    """Land the month's extracts; return the files the run will use and notes for the operator."""
    now = dt.datetime.now(dt.UTC)
    notes: list[str] = []
    with engine.begin() as conn:
        conn.execute(
            landing_log.delete().where(  # a retried task replaces its own log rows
                landing_log.c.run_id == run_id,
                landing_log.c.scheme_id == scheme_id,
                landing_log.c.month == month,
            )
        )
        pinned = (
            {}
            if reland
            else {
                r.name: r
                for r in conn.execute(
                    sa.select(loaded_file).where(
                        loaded_file.c.scheme_id == scheme_id, loaded_file.c.month == month
                    )
                )
            }
        )
        shas = [hashlib.sha256(e.data).hexdigest() for e in extracts]
        known = set(
            conn.scalars(
                sa.select(landed_file.c.sha256).where(
                    landed_file.c.sha256.in_(shas + [p.sha256 for p in pinned.values()])
                )
            )
        )
        used: list[Landed] = []
        for e, sha in zip(extracts, shas):
            if e.name in pinned and pinned[e.name].sha256 != sha:
                notes.append(
                    f"{e.name}: changed in the inbox after it was loaded; the landed copy "
                    f"{pinned[e.name].sha256[:12]} is used (rerun with reland=true to "
                    "take the new version)"
                )
                continue
            path = _store(archive, e.data, sha)
            new = sha not in known
            if new:
                conn.execute(
                    landed_file.insert().values(
                        sha256=sha,
                        size_bytes=len(e.data),
                        archive_path=str(path),
                        first_name=e.name,
                        first_landed_at=now,
                    )
                )
                known.add(sha)
            used.append(Landed(e.source, e.name, sha, len(e.data), str(path), new))
        names = {u.name for u in used}
        for name, row in pinned.items():
            if name not in names:
                if name not in {e.name for e in extracts}:
                    notes.append(f"{name}: no longer in the inbox; the landed copy is used")
                path = archive_path(archive, row.sha256)
                used.append(
                    Landed(row.source, name, row.sha256, path.stat().st_size, str(path), False)
                )
        used.sort(key=lambda u: (u.source, u.name))
        for u in used:
            conn.execute(
                landing_log.insert().values(
                    run_id=run_id,
                    scheme_id=scheme_id,
                    month=month,
                    name=u.name,
                    source=u.source,
                    sha256=u.sha256,
                    size_bytes=u.size,
                    logged_at=now,
                    newly_landed=u.newly_landed,
                )
            )
    return used, notes
