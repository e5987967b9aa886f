"""Connectors: where a month's extracts come from. Each gives the same thing, a list of `Extract`
(source, file name, bytes), so landing, validation and loading never know the origin.

- folder (default): `<inbox>/<YYYY-MM>/<source>[-<anything>].csv|.xlsx`, a local path or any
  `ObjectStoragePath` URL (s3://, gs://, file://...).
- sql: one query per source over an Airflow connection or a SQLAlchemy URL; `:month` is bound.
- http: paged JSON GET per source through an Airflow HTTP connection or a base URL.
SQL and HTTP results are written as UTF-8 CSV (`<source>-sql.csv`, `<source>-http.csv`) and landed
like any file, so every result traces to exact bytes in the archive.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode
from urllib.request import urlopen

from etl.read import cell_text, nfkc
from etl.sources import SOURCES, alias_map, column_names, source_of


@dataclass(frozen=True)
class Extract:
    source: str
    name: str
    data: bytes


class Connector(Protocol):
    def fetch(self, month: str) -> tuple[list[Extract], list[str]]:
        """The month's extracts, and the names it passed over (with why)."""
        ...


class FolderConnector:
    def __init__(self, inbox: str) -> None:
        self.inbox = inbox

    def _month_dir(self, month: str) -> Any:
        if "://" in self.inbox and not self.inbox.startswith("file://"):
            from airflow.sdk import ObjectStoragePath

            return ObjectStoragePath(self.inbox) / month
        return Path(self.inbox.removeprefix("file://")) / month

    def fetch(self, month: str) -> tuple[list[Extract], list[str]]:
        folder = self._month_dir(month)
        if not folder.exists():
            return [], [f"{folder}: no folder for {month} in the inbox"]
        out, skipped = [], []
        for p in sorted(folder.iterdir(), key=lambda p: p.name):
            if p.is_dir():
                continue
            if p.name.startswith("~$"):
                skipped.append(f"{p.name}: an Office lock file (the workbook is open); passed over")
                continue
            src = source_of(p.name)
            if src is None:
                skipped.append(
                    f"{p.name}: not named after a source ({', '.join(SOURCES)}) "
                    "with .csv or .xlsx; passed over"
                )
                continue
            out.append(Extract(src, p.name, p.read_bytes()))
        return out, skipped


def _csv_bytes(
    source: str, name: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> tuple[bytes, list[str]]:
    """UTF-8 CSV of the source's columns in canonical order, and a note naming any column left out.

    Result columns may carry a canonical name in any case or a Chinese alias (as file headers may);
    they are written under the canonical name so nothing the source knows is dropped on the way.
    """
    aliases, order = alias_map(source), column_names(source)
    known = [
        (i, aliases[nfkc(str(c)).lower()])
        for i, c in enumerate(columns)
        if nfkc(str(c)).lower() in aliases
    ]
    known.sort(key=lambda ic: order.index(ic[1]))
    unknown = [str(c) for c in columns if nfkc(str(c)).lower() not in aliases]
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow([c for _, c in known])
    out.writerows([cell_text(row[i]) for i, _ in known] for row in rows)
    notes = [f"{name}: {', '.join(unknown)}: not {source} columns; left out"] if unknown else []
    return buf.getvalue().encode("utf-8"), notes


class SqlConnector:
    """`queries`: source -> SQL text with an optional `:month` bind parameter."""

    def __init__(
        self, queries: dict[str, str], url: str | None = None, conn_id: str | None = None
    ) -> None:
        self.queries, self.url, self.conn_id = queries, url, conn_id

    def _url(self) -> str:
        if self.url:
            return self.url
        from airflow.sdk import BaseHook

        return BaseHook.get_connection(self.conn_id).get_uri()

    def fetch(self, month: str) -> tuple[list[Extract], list[str]]:
        import sqlalchemy as sa

        from etl.warehouse import engine_for

        eng = engine_for(self._url())
        out, notes = [], []
        try:
            with eng.connect() as conn:
                for source, query in self.queries.items():
                    params = {"month": month} if ":month" in query else {}
                    result = conn.execute(sa.text(query), params)
                    name = f"{source}-sql.csv"
                    data, left_out = _csv_bytes(source, name, list(result.keys()), result.all())
                    out.append(Extract(source, name, data))
                    notes += left_out
        finally:
            eng.dispose()
        return out, notes


class HttpConnector:
    """GET `<base>/<endpoint>?month=YYYY-MM&page=N` for each source, following `next_page`.

    A page is `{"rows": [{column: value}, ...], "next_page": N or null}`, or a bare list of rows
    (a single page). With `conn_id` the base URL and headers come from the Airflow HTTP connection.
    """

    def __init__(
        self,
        endpoints: dict[str, str],
        base_url: str | None = None,
        conn_id: str | None = None,
        page_size: int = 5000,
        max_pages: int = 10000,
    ) -> None:
        self.endpoints, self.base_url, self.conn_id = endpoints, base_url, conn_id
        self.page_size, self.max_pages = page_size, max_pages

    def _get(self, endpoint: str, params: dict[str, Any]) -> Any:
        if self.conn_id:
            from airflow.providers.http.hooks.http import HttpHook

            resp = HttpHook(method="GET", http_conn_id=self.conn_id).run(endpoint, data=params)
            return resp.json()
        url = f"{self.base_url.rstrip('/')}/{endpoint.lstrip('/')}?{urlencode(params)}"
        with urlopen(url, timeout=60) as r:  # noqa: S310 - operator-configured endpoint
            return json.loads(r.read().decode("utf-8"))

    def fetch(self, month: str) -> tuple[list[Extract], list[str]]:
        out, notes = [], []
        for source, endpoint in self.endpoints.items():
            rows: list[dict[str, Any]] = []
            page: int | None = 1
            for _ in range(self.max_pages):
                body = self._get(
                    endpoint, {"month": month, "page": page, "page_size": self.page_size}
                )
                if isinstance(body, list):
                    rows.extend(body)
                    break
                rows.extend(body.get("rows", []))
                page = body.get("next_page")
                if not page:
                    break
            else:
                raise RuntimeError(f"{source}: more than {self.max_pages} pages; stopped")
            if not rows:
                notes.append(f"{source}: {endpoint} gave no rows for {month}")
                continue
            name = f"{source}-http.csv"
            columns = list(dict.fromkeys(k for r in rows for k in r))  # first-seen order
            data, left_out = _csv_bytes(
                source, name, columns, ([r.get(c) for c in columns] for r in rows)
            )
            out.append(Extract(source, name, data))
            notes += left_out
        return out, notes


def connector_from_config(spec: str, inbox: str) -> Connector:
    """`folder`, or a JSON object / a path to a JSON file describing a sql or http connector:
    `{"kind": "sql", "conn_id": "hr_db", "queries": {"roster": "select ... where m = :month"}}`,
    `{"kind": "http", "conn_id": "hr_api", "endpoints": {"roster": "api/roster"}}`."""
    if spec in ("", "folder"):
        return FolderConnector(inbox)
    text = Path(spec).read_text(encoding="utf-8") if os.path.exists(spec) else spec
    conf = json.loads(text)
    kind = conf.pop("kind")
    if kind == "folder":
        return FolderConnector(conf.get("inbox", inbox))
    if kind == "sql":
        return SqlConnector(**conf)
    if kind == "http":
        return HttpConnector(**conf)
    raise ValueError(f"unknown connector kind {kind!r}: folder, sql or http")
