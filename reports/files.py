"""Publishing files atomically: a reader (finance opening a table, a web server, a mail client
picking up the outbox) sees the old file or the new one, never half of one."""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def write_atomic(path: Path, data: bytes, *, sync: bool = False) -> Path:
    """Write `data` to a temporary file beside `path` and rename it over `path`. The temporary
    file is created with the ordinary umask (not mkstemp's 0600), so the result is readable like
    any other output; `sync` flushes it to disk before the rename (what is sent or paid from)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if sync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
