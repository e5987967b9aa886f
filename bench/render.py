"""Rendering benchmark: personal result notices as HTML and as PDF.

    python -m bench.render [--people 2000] [--workers N] [--chunk-size 12] [--docs-per-child 600]

The target, on a 2-core machine: at least 20 PDF notices per second with every core rendering.

Each person gets the real quarter notice (反馈单, `reports/templates/notice.html`, two A4 pages):
built by `reports.documents.notice_contexts` from synthetic marts of a closed quarter (three
months of totals, every indicator of the demo scheme's monthly components, a survey round by
relation, adjustments for one person in twenty; Chinese names, some with characters outside GBK),
then rendered as the publish step renders it. The people and values are seeded.

Measured, in this order:
1. HTML: the contexts and the template for every person, in this process, one core; notices per
   second.
2. PDF, cold: the time to the first PDF of a fresh process (import of WeasyPrint, fonts, CSS,
   first layout), measured in a spawned process; and one warm in-process document, for the
   per-document cost on one core.
3. PDF with `reports.render.Renderer` over all cores (or --workers): the pool is started and warmed
   before the clock (`Renderer.start`, its time printed apart), then every notice is rendered and
   written atomically into a temporary folder; notices per second over the wall time, and the
   peak and final RSS of each worker (VmHWM and VmRSS from /proc, Linux only).
A notice is checked to have the person's name in its text. Figures are
printed, never asserted: the command exits 0 whether the target is met or not.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_PDF_PER_S = 20.0
WHAT = "2026-Q1"
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾萧田董袁潘蒋蔡余杜叶程"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红娥玲凤洁梅琳素云莲真环雪荣爱妹香月"
RARE = "䶮堃喆玥犇淼昇㛃"  # 䶮 and 㛃 are outside GBK


def marts(n: int, seed: int = 20260405) -> Any:
    """The marts of a closed quarter for `n` judges in units of 200 (departments of 20): three
    months of monthly totals and every indicator of the demo scheme's monthly components, a
    quarterly survey round by relation (one group suppressed in ten), adjustments for one person
    in twenty, period scores with grades. Vectorised, seeded."""
    import numpy as np
    import pandas as pd

    from reports.documents import Marts
    from scoring.scheme import load_scheme

    rng = np.random.default_rng(seed)
    scheme = load_scheme("demo")
    ids = np.array([f"P{k:06d}" for k in range(n)], dtype=object)
    units = np.array([f"court{k // 200 + 1:02d}" for k in range(n)], dtype=object)
    depts = np.array([f"{u}-d{(k // 20) % 10 + 1:02d}" for k, u in enumerate(units)], dtype=object)
    pick = rng.integers(0, len(SURNAMES), n), rng.integers(0, len(GIVEN), (n, 2))
    names = [SURNAMES[a] + GIVEN[b] + GIVEN[c] for a, (b, c) in zip(pick[0], pick[1], strict=True)]
    names = np.array(
        [nm[:-1] + RARE[k % len(RARE)] if k % 20 == 7 else nm for k, nm in enumerate(names)],
        dtype=object,
    )
    roster = pd.DataFrame(
        {
            "person_id": ids,
            "name": names,
            "unit_id": units,
            "unit_name": [f"第{u[-2:]}人民法院" for u in units],
            "dept_id": depts,
            "dept_name": [f"第{int(d[-2:])}审判庭" for d in depts],
            "category": "judge",
            "email": [f"{i.lower()}@example.gov.cn" for i in ids],
        }
    )
    months = ["2026-01", "2026-02", "2026-03"]
    m = np.repeat(months, n)
    person = np.tile(ids, 3)
    total = rng.normal(85, 6, 3 * n)
    monthly = pd.DataFrame(
        {
            "month": m,
            "person_id": person,
            "name": np.tile(names, 3),
            "unit_id": np.tile(units, 3),
            "dept_id": np.tile(depts, 3),
            "category": "judge",
            "total_score": total,
            "adjustment_total": np.where(rng.random(3 * n) < 0.05, 1.0, 0.0),
            "rank_in_scope": pd.Series(total)
            .groupby(m)
            .rank(ascending=False, method="min")
            .astype("Int64"),
            "red_flag": False,
            "veto": False,
        }
    )
    pairs = [(c.id, i.id, i) for c in scheme.components for i in c.indicators if c.weight]
    k = len(pairs)
    rate = np.tile([(i.measure or "").endswith("_rate") for *_, i in pairs], 3 * n)
    actual = np.where(rate, rng.uniform(0.6, 1.0, 3 * n * k), rng.uniform(0, 40, 3 * n * k))
    indicators = pd.DataFrame(
        {
            "month": np.repeat(m, k),
            "person_id": np.repeat(person, k),
            "component_id": np.tile([c for c, _, _ in pairs], 3 * n),
            "indicator_id": np.tile([i for _, i, _ in pairs], 3 * n),
            "actual": actual,
            "target": np.where(
                rate,
                0.9,
                np.tile([20.0 if i.target is not None else np.nan for *_, i in pairs], 3 * n),
            ),
            "points": np.tile([float(i.points or 0) for *_, i in pairs], 3 * n),
            "score": actual / 2,
            "no_basis": rng.random(3 * n * k) < 0.02,
        }
    )
    relations = ["superior", "peer", "subordinate", "public"]
    raters = rng.integers(1, 12, 4 * n)
    surveys = pd.DataFrame(
        {
            "survey_id": "2026Q1",
            "survey_period": WHAT,
            "person_id": np.repeat(ids, 4),
            "component_id": "conduct",
            "relation": np.tile(relations, n),
            "month": "2026-03",
            "raters": raters,
            "score": rng.uniform(70, 98, 4 * n),
            "score_raw": rng.uniform(70, 98, 4 * n),
            "suppressed": raters < 2,
        }
    )
    adjusted = ids[rng.random(n) < 0.05]
    adjustments = pd.DataFrame(
        {
            "month": "2026-02",
            "person_id": adjusted,
            "source_file": "adjustments-2026-02.csv",
            "source_line": np.arange(2, 2 + len(adjusted)),
            "rule": "praise_city",
            "points": 1.0,
            "count": 1,
            "total": 1.0,
            "veto": False,
            "note": "市级表扬",
            "evidence": "市委办函〔2026〕12号",
        }
    )
    score = monthly.groupby("person_id")["total_score"].mean().reindex(ids).to_numpy()
    period = pd.DataFrame(
        {
            "person_id": ids,
            "name": names,
            "unit_id": units,
            "dept_id": depts,
            "category": "judge",
            "post_coefficient": 1.0,
            "months": 3,
            "mean_monthly": score,
            "period_score": score,
            "rank_in_scope": pd.Series(score).rank(ascending=False, method="min").astype("Int64"),
            "grade": np.where(score > 90, "excellent", np.where(score > 75, "good", "general")),
            "graded": True,
            "veto": False,
            "pacesetter": score > 95,
            "pacesetter_route": np.where(score > 95, "rank", None),
            "placed_by_tiebreak": False,
        }
    )
    return scheme, Marts(
        what=WHAT,
        monthly=monthly,
        indicators=indicators,
        adjustments=adjustments,
        surveys=surveys,
        departments=pd.DataFrame(columns=["month", "dept_id", "red_flag"]),
        quarantine=pd.DataFrame(columns=["month", "source", "reason", "rows"]),
        period=period,
        roster=roster,
    )


def _cold_first_pdf(queue: Any, html: str) -> None:
    start = time.perf_counter()
    from reports.render import html_to_pdf

    imported = time.perf_counter()
    html_to_pdf(html)
    queue.put((imported - start, time.perf_counter() - start))


def _proc_memory(pid: int) -> tuple[int, int] | None:
    """Peak and current resident memory of a process in KiB (Linux /proc)."""
    try:
        fields = dict(
            line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        )
        return int(fields["VmHWM"].split()[0]), int(fields["VmRSS"].split()[0])
    except (OSError, KeyError, ValueError):
        return None


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from reports.render import _default_workers

    ap = argparse.ArgumentParser(prog="python -m bench.render", description=__doc__.split("\n")[0])
    ap.add_argument("--people", type=int, default=2000, help="notices to render (default 2000)")
    ap.add_argument(
        "--workers", type=int, default=_default_workers(), help="PDF workers (default: cores)"
    )
    ap.add_argument("--chunk-size", type=int, default=12, help="documents per worker task")
    ap.add_argument("--docs-per-child", type=int, default=600, help="documents before a new pool")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from importlib.metadata import version

    from pypdf import PdfReader

    from reports import compiled  # imported before WeasyPrint: its compiled modules, where built
    from reports.render import Renderer, html_to_pdf

    finder = compiled.install()
    print(
        f"render benchmark: {args.people:,} notices, {args.workers} PDF worker(s) on "
        f"{os.cpu_count()} core(s); Python {platform.python_version()} "
        f"({os.path.realpath(sys.executable)}), WeasyPrint {version('weasyprint')}, "
        + (
            f"{len(finder.modules) - len(finder.stale)} of {len(compiled.MODULES)} modules "
            "compiled (reports.compiled)"
            if finder
            else "pure Python (no compiled modules, or KAOHE_PURE_PYTHON)"
        )
    )
    print(f"load average before: {_load()}")
    import datetime as dt

    from reports.documents import Stage, notice_contexts
    from reports.render import render_html
    from scoring.revisions import CHANGE

    scheme, data = marts(args.people)
    stage = Stage("notify", 1, dt.date(2026, 4, 6), dt.date(2026, 4, 11))
    import pandas as pd

    # 1. HTML: contexts from the marts, then the notice template
    start = time.perf_counter()
    contexts = list(notice_contexts(scheme, data, stage, pd.DataFrame(columns=CHANGE)))
    context_s = time.perf_counter() - start
    start = time.perf_counter()
    htmls = [render_html("notice.html", ctx) for _, ctx in contexts]
    html_s = time.perf_counter() - start
    size = sum(len(h.encode()) for h in htmls) / len(htmls)
    print(
        f"\nHTML: {len(htmls):,} quarter notices: contexts {context_s:.2f} s, templates "
        f"{html_s:.2f} s = {len(htmls) / (context_s + html_s):,.0f} notices/s "
        f"(one core, {size / 1024:.1f} KiB each)"
    )
    names = {pid: ctx["person"]["name"] for pid, ctx in contexts}

    # 2. one document: cold in a fresh process, then warm here
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_cold_first_pdf, args=(queue, htmls[0]))
    proc.start()
    imported, first = queue.get()
    proc.join()
    html_to_pdf(htmls[0])
    runs = min(10, len(htmls))
    cpu, start = time.process_time(), time.perf_counter()
    for h in htmls[:runs]:
        pdf = html_to_pdf(h)
    warm = (time.perf_counter() - start) / runs
    warm_cpu = (time.process_time() - cpu) / runs
    reader = PdfReader(io.BytesIO(pdf))
    name = names[contexts[runs - 1][0]]
    ok = name in reader.pages[0].extract_text()
    print(
        f"PDF, one document: first in a fresh process {first:.2f} s (of which imports "
        f"{imported:.2f} s); warm {warm * 1000:.0f} ms wall, {warm_cpu * 1000:.0f} ms CPU each "
        f"(so at most {args.workers / warm_cpu:.1f}/s on {args.workers} idle core(s)); "
        f"{len(pdf) / 1024:.0f} KiB, {len(reader.pages)} page(s), name in text: "
        f"{'yes' if ok else 'NO'}"
    )

    # 3. the pool
    out = Path(tempfile.mkdtemp(prefix="kaohe-bench-render-"))
    try:
        jobs = [(h, out / f"notice-{pid}.pdf") for h, (pid, _) in zip(htmls, contexts, strict=True)]
        with Renderer(
            args.workers, chunk_size=args.chunk_size, docs_per_child=args.docs_per_child
        ) as renderer:
            start = time.perf_counter()
            renderer.start()
            started = time.perf_counter() - start
            start = time.perf_counter()
            written = renderer.write(jobs)
            pdf_s = time.perf_counter() - start
            pool = renderer._pool  # the bench peeks at the worker pids
            pids = list(pool._processes) if pool is not None and pool._processes else []
            memory = [m for m in (_proc_memory(pid) for pid in pids) if m]
            pools = renderer.pools_started
        rate = len(written) / pdf_s
        print(
            f"PDF with Renderer: pool start and warm-up {started:.2f} s, then {len(written):,} "
            f"notices in {pdf_s:.1f} s = {rate:.1f} notices/s ({args.workers} worker(s), "
            f"chunks of {args.chunk_size}, {pools} pool(s) of {args.docs_per_child} "
            f"documents per worker)"
        )
        if memory:
            cells = ", ".join(
                f"peak {hwm / 1024:.0f} MiB now {rss / 1024:.0f} MiB" for hwm, rss in memory
            )
            print(f"  workers of the last pool: {cells}")
        total = sum(p.stat().st_size for p in written)
        print(f"  {total / 2**20:.1f} MiB written, {total / len(written) / 1024:.0f} KiB each")
    finally:
        shutil.rmtree(out, ignore_errors=True)

    print(f"load average after: {_load()} (other work on the machine slows every figure)")
    verdict = "met" if rate >= TARGET_PDF_PER_S else "NOT met"
    print(
        f"\ntarget (printed, not asserted): >= {TARGET_PDF_PER_S:.0f} PDF notices/s on 2 cores: "
        f"{rate:.1f}/s with {args.workers} worker(s), {verdict}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
