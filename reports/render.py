"""HTML and PDF rendering for bulletins and notices: Jinja2 templates, WeasyPrint, a worker pool.

Templates live in `templates/`; everything a rendered document may load (the stylesheet, logos,
fonts) lives in `templates/assets/`. PDFs are rendered with WeasyPrint in long-lived worker
processes, because a fresh process pays ~1 s (imports, fonts, first layout) before its first
document, and WeasyPrint's memory grows over the first documents of a process (stack-notes.md).

Rendering never touches the network: the URL fetcher serves only files under `ASSETS` and
`data:` URLs, everything else is refused and WeasyPrint renders without it.
"""

from __future__ import annotations

import functools
import gc
import logging
import mimetypes
import multiprocessing
import os
import re
import zlib
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from itertools import islice
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from urllib.request import DataHandler, Request, url2pathname

import jinja2
from weasyprint.urls import URLFetcher, URLFetcherResponse

from reports.files import write_atomic

if TYPE_CHECKING:
    from weasyprint import CSS, HTML
    from weasyprint.text.fonts import FontConfiguration

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"
ASSETS = TEMPLATES / "assets"
STYLESHEET = ASSETS / "kaohe.css"
# base.html's inline copy of kaohe.css: its id cannot come from data (templates autoescape)
INLINED = re.compile(r'<style id="kaohe-css">.*?</style>', re.DOTALL)
# The base URL of every rendered document: relative links resolve into the assets folder.
BASE_URL = ASSETS.resolve().as_uri() + "/"

MISSING = "—"
_CENT = Decimal("0.01")


# --- Jinja2 ------------------------------------------------------------------------------------


def _decimal(value: Any) -> Decimal | None:
    """The decimal a person reads in `value`: floats through their shortest repr, so that
    2.675 is 2.675 and not the binary 2.67499999…; None and NaN are missing."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    else:
        number = Decimal(repr(float(value)))  # float(): numpy scalars repr as np.float64(…)
    return None if number.is_nan() else number


def score(value: Any) -> str:
    """Two decimals rounded half-up, as scores are published; None -> "—"."""
    number = _decimal(value)
    if number is None:
        return MISSING
    return f"{number.quantize(_CENT, rounding=ROUND_HALF_UP):f}"


def pct(value: Any) -> str:
    """A ratio as a percentage with two decimals (0.1234 -> "12.34%"); None -> "—"."""
    number = _decimal(value)
    if number is None:
        return MISSING
    return f"{(number * 100).quantize(_CENT, rounding=ROUND_HALF_UP):f}%"


def number(value: Any) -> str:
    """A measured value (an indicator's actual, target or points) as plainly as it reads: at
    most two decimals, half-up, without trailing zeros (12.0 -> "12", 0.955 -> "0.96")."""
    num = _decimal(value)
    if num is None:
        return MISSING
    text = f"{num.quantize(_CENT, rounding=ROUND_HALF_UP):f}"
    text = text.rstrip("0").rstrip(".") if "." in text else text
    return "0" if text == "-0" else text


def yuan(cents: Any) -> str:
    """Integer cents as money (428572 -> "¥4,285.72"); money is kept in cents to stay exact."""
    number = _decimal(cents)
    if number is None:
        return MISSING
    if number != number.to_integral_value():
        raise ValueError(f"yuan expects whole cents, got {cents!r}")
    whole, rest = divmod(abs(int(number)), 100)
    sign = "-" if number < 0 else ""
    return f"{sign}¥{whole:,}.{rest:02d}"


def cn_date(value: date | str | None) -> str:
    """A date as written in Chinese documents (2026-04-05 -> "2026年4月5日")."""
    if value is None or value == "":
        return MISSING
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value)
        except ValueError:
            value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        value = value.date()
    return f"{value.year}年{value.month}月{value.day}日"


@functools.cache
def environment() -> jinja2.Environment:
    """The one template environment of the process; everything is escaped, since names, unit
    names and remarks come from extracts and are data, not markup."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(score=score, number=number, yuan=yuan, pct=pct, cn_date=cn_date)
    return env


def render_html(template: str, context: Mapping[str, Any]) -> str:
    """Render `template` (a path under templates/) with `context`."""
    return environment().get_template(template).render(context)


# --- the URL fetcher ---------------------------------------------------------------------------


class AssetRefused(ValueError):
    """A document asked for something outside the assets folder."""


def _asset_path(url: str) -> Path:
    parts = urlsplit(url)
    if parts.scheme.lower() != "file" or parts.netloc not in ("", "localhost"):
        raise AssetRefused(f"only assets and data: URLs are rendered, not {url[:200]}")
    root = ASSETS.resolve()
    try:
        # resolve() follows symlinks and `..`, so the check is on the file that would be read
        path = Path(url2pathname(parts.path)).resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise AssetRefused(f"no such asset: {url[:200]}") from exc
    if not path.is_relative_to(root) or not path.is_file():
        raise AssetRefused(f"not an asset: {url[:200]}")
    return path


def fetch_asset(url: str, headers: Mapping[str, str] | None = None) -> URLFetcherResponse:
    """Serve a file under ASSETS or a data: URL; refuse everything else by raising.

    WeasyPrint catches the exception, logs it and renders the document without the resource.
    """
    if url[:5].lower() == "data:":
        decoded = DataHandler().data_open(Request(url))  # noqa: S310 (a data: URL, checked above)
        body = decoded.read()
        return URLFetcherResponse(url, body, {"Content-Type": decoded.headers["Content-type"]})
    path = _asset_path(url)
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return URLFetcherResponse(
        path.as_uri(), path.read_bytes(), {"Content-Type": content_type}, status=200
    )


class AssetFetcher(URLFetcher):
    """WeasyPrint 70 wants a URLFetcher instance (it reads private attributes of it when a
    fetch fails), so a plain function cannot be passed as url_fetcher any more."""

    def __init__(self) -> None:
        # the base class's own fetching is never used; were it reached, it would allow nothing
        super().__init__(allowed_protocols=(), allow_redirects=False, fail_on_errors=False)

    def fetch(self, url: str, headers: Mapping[str, str] | None = None) -> URLFetcherResponse:
        return fetch_asset(url, headers)


FETCHER = AssetFetcher()


# --- PDF ---------------------------------------------------------------------------------------


@functools.cache
def _resources() -> tuple[FontConfiguration, CSS]:
    """One font configuration and one compiled kaohe.css per process: both are costly to build
    and safe to reuse between documents."""
    from weasyprint import CSS
    from weasyprint.text.fonts import FontConfiguration

    fonts = FontConfiguration()
    css = CSS(
        string=STYLESHEET.read_text(encoding="utf-8"),
        base_url=BASE_URL,
        url_fetcher=FETCHER,
        font_config=fonts,
    )
    return fonts, css


@contextmanager
def _collected_after() -> Iterator[None]:
    """Python's cycle collector paused while a document is laid out, and the young generations
    collected once when it is done.

    A notice allocates a few hundred thousand objects (boxes, computed styles, text runs), some
    of them in reference cycles; with the collector running, it walks them again and again while
    they are being made, over a tenth of a notice's time (the README's rendering figures).
    Collected once afterwards, the document's garbage goes at a fraction of that cost, and
    nothing of one document is left when the next begins.
    """
    if not gc.isenabled():  # the caller manages the collector
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect(1)


def _parsed(html: str) -> HTML:
    """The document, parsed by expat where that gives the tree WeasyPrint's HTML parser would
    (reports.parsed.tree), else by WeasyPrint.

    The templates write markup that is also well-formed XML (void elements closed, every table
    row in a row group, nothing before <head> or after </body>), which expat reads and
    reports.parsed checks in a twelfth of the time tinyhtml5 takes (0.6 ms against 7.7 for a
    quarter notice), and that was a twentieth of a notice's rendering. test_markup renders the
    notices both ways and compares the PDFs byte for byte; a bulletin's inline SVG charts, and
    whatever else the two parsers could read differently, go to tinyhtml5 as before.
    """
    from weasyprint import HTML

    from reports.parsed import ParsedHTML, tree

    root = tree(html)
    if root is None:
        return HTML(string=html, base_url=BASE_URL, url_fetcher=FETCHER)
    return ParsedHTML(root, BASE_URL, FETCHER)


def _deflate(document: Any, pdf: Any) -> None:
    """Compress the PDF's streams at zlib's default level before pydyf would at level 9.

    A WeasyPrint `finisher`: it runs on the finished pydyf.PDF before it is written. Level 9
    cost a notice 3 % of its rendering time, most of it on the font subset, for a file 0.4 %
    smaller than level 6 makes it. A stream holding anything but bytes is left to pydyf, and
    pydyf's own object and cross-reference streams, made as the file is written, stay at 9.
    """
    import pydyf

    for obj in pdf.objects:
        if isinstance(obj, pydyf.Stream) and obj.compress:
            if all(isinstance(item, bytes) for item in obj.stream):
                obj.stream = [zlib.compress(b"\n".join(obj.stream))]
                obj.compress = False
                obj.extra["Filter"] = "/FlateDecode"


def html_to_pdf(html: str) -> bytes:
    """Render one HTML document to PDF bytes, with kaohe.css applied and the fonts embedded as
    subsets.

    kaohe.css is always applied (as a user stylesheet, so a document's own styles win); a
    document need not link it, and the copy base.html inlines is taken out first. The output has no
    file identifier and no dates unless the document carries `<meta name="dcterms.created">`, so
    the same HTML gives the same bytes.
    """
    fonts, css = _resources()
    # the copy base.html inlines (for the HTML file read on its own) would be parsed again and
    # cascaded beside the compiled one: every rule matched twice, a tenth of a notice's time
    document = _parsed(INLINED.sub("", html, count=1))
    with _collected_after():
        return document.write_pdf(
            stylesheets=[css],
            font_config=fonts,
            full_fonts=False,  # subsets: a CJK font is 5-20 MB whole
            hinting=False,
            pdf_identifier=False,
            uncompressed_pdf=False,
            finisher=_deflate,
        )


_WARM_UP = (
    '<html lang="zh-CN"><body><h1>考核结果通知书</h1>'
    "<table><thead><tr><th>指标</th><th>得分</th></tr></thead>"
    "<tbody><tr><td>出勤</td><td>98.50</td></tr></tbody></table></body></html>"
)


def warm_up() -> None:
    """Load fonts, CSS and WeasyPrint's lazy imports before the first real document."""
    html_to_pdf(_WARM_UP)


# --- atomic files ------------------------------------------------------------------------------


def write_text(path: Path, text: str) -> None:
    """Write an HTML (or any text) file atomically, in UTF-8."""
    write_atomic(Path(path), text.encode("utf-8"))


# --- the worker pool ---------------------------------------------------------------------------


class RenderError(RuntimeError):
    """A document could not be rendered or written; the message names it."""


def _render_chunk(chunk: Sequence[tuple[str, str]]) -> list[str]:
    """Render and write a batch of (html, pdf path); runs in a worker (or in-process)."""
    done = []
    for html, target in chunk:
        try:
            write_atomic(Path(target), html_to_pdf(html))
        except Exception as exc:
            # only a string crosses the process boundary: the original may not pickle
            raise RenderError(f"{target}: {type(exc).__name__}: {exc}") from None
        done.append(target)
    return done


def _worker_init() -> None:
    try:
        warm_up()
    except Exception:  # a broken warm-up shows again, with its document's name, on first use
        log.exception("PDF worker warm-up failed")
    # what the worker holds for good (modules, fonts, the compiled stylesheet) is set apart from
    # the collector's generations, so that no full collection walks it again
    gc.collect()
    gc.freeze()


def _default_workers() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))  # the cores this process may use
    return os.cpu_count() or 1


def _chunks(jobs: Iterable[tuple[str, Path]], size: int) -> Iterator[list[tuple[str, str]]]:
    it = iter(jobs)
    while chunk := [(html, os.fspath(path)) for html, path in islice(it, size)]:
        yield chunk


class Renderer:
    """A pool of warm PDF workers, one per core, for a whole run.

    Workers are started from a "forkserver" (or "spawn") context, never forked from the caller,
    which may be an Airflow task with threads. Each task a worker gets is a batch of `chunk_size`
    documents (one round trip per batch rather than per document). `workers` of 0 or 1 renders
    in the calling process.

    WeasyPrint's memory grows over the first documents of a process, so workers are replaced
    after about `docs_per_child` documents each. Not with ProcessPoolExecutor's
    `max_tasks_per_child`: on Python 3.11 it deadlocks once a worker retires with tasks still
    queued (CPython gh-115634, reproduced here on 3.11.7; fixed only in later branches).
    Instead the whole pool is retired after `workers × docs_per_child` documents: it finishes
    its queue and exits while a fresh pool takes the next batches, so the run never waits on a
    restart.
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        chunk_size: int = 12,
        docs_per_child: int | None = 600,
        context: str | None = None,
    ) -> None:
        self.workers = _default_workers() if workers is None else max(0, workers)
        self.chunk_size = max(1, chunk_size)
        self.docs_per_child = docs_per_child
        if context is None:
            methods = multiprocessing.get_all_start_methods()
            context = "forkserver" if "forkserver" in methods else "spawn"
        if context == "fork":
            raise ValueError("fork is unsafe from threaded callers: use forkserver or spawn")
        self.context = context
        self._pool: ProcessPoolExecutor | None = None
        self._pool_docs = 0
        self._retired: list[ProcessPoolExecutor] = []
        self.pools_started = 0

    @property
    def in_process(self) -> bool:
        return self.workers <= 1

    def _executor(self, docs: int) -> ProcessPoolExecutor:
        """The pool for the next `docs` documents, retiring the current one when it is due."""
        limit = self.docs_per_child * self.workers if self.docs_per_child else None
        if self._pool is not None and limit is not None and self._pool_docs >= limit:
            # it runs its queue to the end, then its processes exit and are joined by its own
            # manager thread; close() only has to collect the (by then idle) executor object
            self._pool.shutdown(wait=False)
            self._retired.append(self._pool)
            self._pool = None
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context(self.context),
                initializer=_worker_init,
            )
            self._pool_docs = 0
            self.pools_started += 1
        self._pool_docs += docs
        return self._pool

    def start(self) -> None:
        """Start and warm every worker now (otherwise the first documents wait for them)."""
        if self.in_process:
            warm_up()
            return
        pool = self._executor(0)
        for future in [pool.submit(os.getpid) for _ in range(self.workers)]:
            future.result()

    def __enter__(self) -> Renderer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        for pool in [*self._retired, self._pool]:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        self._pool, self._retired = None, []

    def write(self, jobs: Iterable[tuple[str, Path]]) -> list[Path]:
        """Render each (html, pdf_path) and write it atomically; return the paths in job order.

        Jobs are consumed lazily with a bounded number of batches in flight, so a generator of
        HTML for a whole province does not sit in memory at once. The first failure cancels
        what has not started and raises RenderError naming the document; PDFs already written
        stay.
        """
        written: list[Path] = []
        if self.in_process:
            for chunk in _chunks(jobs, self.chunk_size):
                written.extend(Path(p) for p in _render_chunk(chunk))
            return written

        in_flight: deque[tuple[Future[list[str]], list[str]]] = deque()

        def collect() -> None:
            future, names = in_flight.popleft()
            try:
                written.extend(Path(p) for p in future.result())
            except BrokenProcessPool as exc:
                self.close()  # the next write starts a new pool
                raise RenderError(
                    f"a PDF worker died while rendering one of {names[0]} … {names[-1]}"
                ) from exc

        try:
            for chunk in _chunks(jobs, self.chunk_size):
                pool = self._executor(len(chunk))
                in_flight.append((pool.submit(_render_chunk, chunk), [p for _, p in chunk]))
                if len(in_flight) >= 2 * self.workers:
                    collect()
            while in_flight:
                collect()
        except BaseException:
            for future, _ in in_flight:
                future.cancel()
            raise
        return written


def write_pdfs(jobs: Iterable[tuple[str, Path]], workers: int | None = None) -> list[Path]:
    """Render a batch of PDFs with a pool opened for this call only (Renderer for many calls)."""
    with Renderer(workers) as renderer:
        return renderer.write(jobs)


__all__ = [
    "ASSETS",
    "BASE_URL",
    "FETCHER",
    "TEMPLATES",
    "AssetFetcher",
    "AssetRefused",
    "RenderError",
    "Renderer",
    "cn_date",
    "environment",
    "fetch_asset",
    "html_to_pdf",
    "number",
    "pct",
    "render_html",
    "score",
    "warm_up",
    "write_pdfs",
    "write_text",
    "yuan",
]
