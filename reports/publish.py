"""Publishing a month or period: its documents written, delivered, and what they said recorded.

`kaohe_publish` runs four steps, each a function here: `plan` (which revision goes out, when the
appeal window ends), `render` (bulletins, notices and bonus tables into the output folder, and a
manifest of who receives what), `deliver` (the manifest's letters; the delivery log keeps a retry
or a rerun from sending anything twice) and `record` (the publication and each person's result as
published, the baseline the next revision is compared with).

Who gets what:
- stage `notify`: every person their notice (公示 opens: the bulletins are written as 公示稿 and
  the notice names the last day of the appeal window); after an earlier publication of the month
  or period, only the people whose result changed since, with what changed (更正).
- stage `final`: bulletins to the unit's leaders (or the scheme's `recipients`) and bonus tables to
  finance; notices only to people whose result changed since they were last told (an appeal
  upheld in the window) or who were never told. A final revision after the first one goes only to
  the units whose results changed, and says 更正 and what changed.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from markupsafe import Markup
from sqlalchemy.engine import Engine

from etl.bulk import reading
from etl.config import Settings
from etl.warehouse import (
    mart_adjustment,
    mart_bonus_allocation,
    mart_department_score,
    mart_indicator_score,
    mart_monthly_score,
    mart_nomination_refused,
    mart_period_score,
    mart_quarantine,
    mart_survey_result,
    publication,
    published_result,
    roster,
)
from reports.documents import Marts, Stage, bulletin_contexts, label, notice_contexts
from scoring.revisions import CHANGE, RESULT, changes, month_results, period_results
from scoring.scheme import Scheme
from scoring.timeline import parse_period, periods_inside

STAGES = ("notify", "final")
PDF, HTML = "application/pdf", "text/html"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def folder(cfg: Settings, scheme_id: str, what: str) -> Path:
    return cfg.output / scheme_id / what


def manifest_path(cfg: Settings, scheme_id: str, what: str, stage: str, revision: int) -> Path:
    """Where `render` leaves the list of letters for `deliver` (a file, not an XCom: one
    entry per person)."""
    return cfg.staging / "publish" / scheme_id / what / f"{stage}-r{revision}.json"


def _kind(what: str) -> str:
    return parse_period(what)[0]


def plan(engine: Engine, scheme: Scheme, what: str, stage: str, today: dt.date) -> dict[str, Any]:
    """The revision the marts hold for `what` and the dates its documents carry. A stage
    published before keeps its first date, so a rerun renders the same documents."""
    if stage not in STAGES:
        raise ValueError(f"stage must be notify or final, not {stage!r}")
    kind = _kind(what)
    mart = mart_monthly_score if kind == "month" else mart_period_score
    key = mart.c.month if kind == "month" else mart.c.period
    with engine.connect() as conn:
        revision = conn.execute(
            sa.select(sa.func.max(mart.c.revision)).where(
                mart.c.scheme_id == scheme.id, key == what
            )
        ).scalar()
        if revision is None:
            raise ValueError(
                f"{what}: nothing to publish for scheme {scheme.id} — "
                + ("score the month first" if kind == "month" else "close the period first")
            )
        p = publication.c
        done = {
            (r.stage, r.revision): r
            for r in conn.execute(
                sa.select(publication).where(p.scheme_id == scheme.id, p.what == what)
            )
        }
    mine = done.get((stage, revision))
    published_on = mine.published_at.date() if mine is not None else today
    notify = done.get(("notify", revision))
    if stage == "notify":
        deadline = published_on + dt.timedelta(days=scheme.publication.appeal_days)
    else:
        deadline = notify.appeal_deadline if notify is not None else None
    return {
        "scheme_id": scheme.id,
        "what": what,
        "stage": stage,
        "revision": int(revision),
        "published_on": published_on.isoformat(),
        "appeal_deadline": deadline.isoformat() if deadline else None,
        "already_published": mine is not None,
    }


def read_marts(engine: Engine, scheme: Scheme, what: str) -> Marts:
    """Every mart row the documents of `what` are made of."""
    sid = scheme.id
    kind, months = parse_period(what)
    year_start = f"{what[:4]}-01"
    m, i, a, s = mart_monthly_score, mart_indicator_score, mart_adjustment, mart_survey_result
    d, q, ps, b = mart_department_score, mart_quarantine, mart_period_score, mart_bonus_allocation
    n, r = mart_nomination_refused, roster
    with reading(engine) as read:
        got = {
            "monthly": read.frame(
                m, m.c.scheme_id == sid, m.c.month.between(year_start, months[-1])
            ),
            "indicators": read.frame(i, i.c.scheme_id == sid, i.c.month.in_(months)),
            "adjustments": read.frame(a, a.c.scheme_id == sid, a.c.month.in_(months)),
            "surveys": read.frame(
                s,
                s.c.scheme_id == sid,
                s.c.month.in_(months) | s.c.survey_period.in_(periods_inside(what)),
            ),
            "departments": read.frame(d, d.c.scheme_id == sid, d.c.month.in_(months)),
            "quarantine": read.query(
                sa.select(q.c.month, q.c.source, q.c.reason, sa.func.count().label("rows"))
                .where(q.c.scheme_id == sid, q.c.month.in_(months))
                .group_by(q.c.month, q.c.source, q.c.reason)
            ),
            "period": read.frame(ps, ps.c.scheme_id == sid, ps.c.period == what),
            "bonus": read.frame(b, b.c.scheme_id == sid, b.c.period == what),
            "refused": read.frame(n, n.c.scheme_id == sid, n.c.period == what),
            "roster": read.frame(
                r,
                r.c.scheme_id == sid,
                r.c.month.in_(months),
                columns=["month", "person_id", "name", "unit_id", "unit_name", "dept_id"]
                + ["dept_name", "category", "email"],
            ),
        }
    people = got.pop("roster").sort_values(["person_id", "month"])
    people = people.drop_duplicates("person_id", keep="last").reset_index(drop=True)
    for name in ("period", "bonus", "refused"):
        if got[name].empty:
            got[name] = None
    return Marts(what=what, roster=people, **got)


def current_results(marts: Marts) -> pd.DataFrame:
    """What each person would be told now, in the shape `published_result` keeps."""
    if _kind(marts.what) == "month":
        rows = month_results(marts.monthly[marts.monthly["month"] == marts.what])
        if marts.period is not None:  # a month closed as a pacesetter period
            setters = marts.period.set_index("person_id")["pacesetter"]
            rows["pacesetter"] = rows["person_id"].map(setters).fillna(False).astype(bool)
        return rows
    if marts.period is None:
        raise ValueError(f"{marts.what}: the period has not been closed")
    return period_results(marts.period, marts.bonus)


def baselines(
    engine: Engine, scheme_id: str, what: str, stage: str, revision: int
) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """What people were last told before this stage and revision, and what the last final
    publication before it said (None where there was none)."""
    p = published_result.c
    with engine.connect() as conn:
        rows = pd.read_sql(
            sa.select(published_result).where(p.scheme_id == scheme_id, p.what == what), conn
        )
    if rows.empty:
        return None, None
    order = rows["revision"] * 2 + rows["stage"].map({"notify": 0, "final": 1})
    mine = revision * 2 + STAGES.index(stage)
    before = rows[order < mine]
    if before.empty:
        return None, None
    last = before[order[before.index] == order[before.index].max()]
    finals = before[before["stage"] == "final"]
    final = finals[finals["revision"] == finals["revision"].max()] if len(finals) else None
    return last[RESULT].reset_index(drop=True), (
        None if final is None else final[RESULT].reset_index(drop=True)
    )


def record(engine: Engine, plan_: dict[str, Any], results: pd.DataFrame, run_id: str) -> None:
    """The publication and each person's result as published, once per stage and revision."""
    sid, what, stage, rev = (plan_[k] for k in ("scheme_id", "what", "stage", "revision"))
    p, r = publication.c, published_result.c
    with engine.begin() as conn:
        exists = conn.execute(
            sa.select(sa.func.count()).where(
                p.scheme_id == sid, p.what == what, p.stage == stage, p.revision == rev
            )
        ).scalar()
        if exists:
            return
        conn.execute(
            published_result.delete().where(
                r.scheme_id == sid, r.what == what, r.stage == stage, r.revision == rev
            )
        )
        rows = results[RESULT].astype(object).where(results[RESULT].notna(), None)
        conn.execute(
            published_result.insert(),
            [
                row | {"scheme_id": sid, "what": what, "stage": stage, "revision": rev}
                for row in rows.to_dict("records")
            ],
        )
        deadline = plan_.get("appeal_deadline")
        conn.execute(
            publication.insert().values(
                scheme_id=sid,
                what=what,
                stage=stage,
                revision=rev,
                # the day the plan published on (a rerun keeps it), at the time it was recorded
                published_at=dt.datetime.combine(
                    dt.date.fromisoformat(plan_["published_on"]), dt.datetime.now(dt.UTC).timetz()
                ),
                appeal_deadline=dt.date.fromisoformat(deadline) if deadline else None,
                run_id=run_id,
            )
        )


def stage_of(plan_: dict[str, Any]) -> Stage:
    deadline = plan_.get("appeal_deadline")
    return Stage(
        stage=plan_["stage"],
        revision=plan_["revision"],
        published_on=dt.date.fromisoformat(plan_["published_on"]),
        appeal_deadline=dt.date.fromisoformat(deadline) if deadline else None,
    )


def _leaders(marts: Marts, scheme: Scheme) -> dict[str, list[str]]:
    """Each unit's bulletin recipients: the scheme's list, else its leaders with an address."""
    people = marts.roster
    leaders = people[(people["category"] == "leader") & people["email"].fillna("").ne("")]
    out = leaders.groupby("unit_id")["email"].agg(lambda s: sorted(set(s))).to_dict()
    return out | {u: list(a) for u, a in scheme.publication.recipients.items()}


def _units(found: pd.DataFrame, *results: pd.DataFrame | None) -> set[str]:
    """The units of the people in `found`, as any of `results` placed them (a person who moved
    unit changes both)."""
    frames = [r[["person_id", "unit_id"]] for r in results if r is not None]
    return set(pd.concat(frames).merge(found[["person_id"]], on="person_id")["unit_id"])


def _doc_id(plan_: dict[str, Any], stem: str) -> str:
    return f"{plan_['scheme_id']}/{plan_['what']}/{plan_['stage']}/{stem}"


def render(
    cfg: Settings, engine: Engine, scheme: Scheme, plan_: dict[str, Any], workers: int | None = None
) -> dict[str, Any]:
    """Write the documents of the plan and the manifest of letters; returns the manifest."""
    from reports.bonus_tables import BonusHeader, bonus_rows, write_csv, write_xlsx
    from reports.charts import distribution_svg, trend_svg
    from reports.render import Renderer, render_html, write_text

    what, stage, rev = plan_["what"], plan_["stage"], plan_["revision"]
    marts = read_marts(engine, scheme, what)
    results = current_results(marts)
    told, final = baselines(engine, scheme.id, what, stage, rev)
    none = pd.DataFrame(columns=CHANGE)
    notice_changes = none if told is None else changes(results, told)
    bulletin_changes = none if final is None else changes(results, final)
    # the first publication tells everyone; a later one only those whose result changed
    tell = set(results["person_id"] if told is None else notice_changes["person_id"])
    changed_units = _units(bulletin_changes, results, final)
    out = folder(cfg, scheme.id, what)
    out.mkdir(parents=True, exist_ok=True)
    base = cfg.base_url.rstrip("/")
    final_stage = stage == "final"
    links: dict[str, dict[str, str]] = {}
    letters: list[dict[str, Any]] = []
    summary: dict[str, Any] = {"no_email": [], "no_recipient": [], "documents": 0}
    generated = dt.datetime.combine(
        dt.date.fromisoformat(plan_["published_on"]), dt.time(), tzinfo=dt.UTC
    )

    # bonus tables: final only, for the units of a bonus period
    if final_stage and marts.bonus is not None and scheme.bonus is not None:
        names = (
            {g.grade: g.name or g.grade for g in scheme.grading.grades} if scheme.grading else {}
        )
        people = marts.roster.merge(
            marts.period[["person_id", "post_coefficient"]], on="person_id", how="left"
        )
        units = marts.roster.drop_duplicates("unit_id").set_index("unit_id")["unit_name"]
        method = {"grade_coefficient": "按等次系数", "score_share": "按得分占比"}[
            scheme.bonus.method
        ]
        for unit_id, alloc in marts.bonus.groupby("unit_id"):
            header = BonusHeader(
                scheme_id=scheme.id,
                scheme_name=scheme.name,
                unit_id=unit_id,
                unit_name=str(units.get(unit_id, unit_id)),
                period=what,
                period_label=label(what),
                pool_cents=int(alloc["amount_cents"].sum()),
                revision=rev,
                method_label=method,
                generated_at=generated,
            )
            rows = bonus_rows(alloc, people, names)
            xlsx = write_xlsx(out / f"bonus-{unit_id}.xlsx", header, rows)
            csv = write_csv(out / f"bonus-{unit_id}.csv", header, rows)
            links[unit_id] = {
                "xlsx": f"{base}/{scheme.id}/{what}/{xlsx.name}",
                "csv": f"{base}/{scheme.id}/{what}/{csv.name}",
                "xlsx_name": xlsx.name,
            }
            if final is not None and unit_id not in changed_units:
                continue  # an unchanged unit of a corrected revision gets nothing
            for address in scheme.publication.finance:
                letters.append(
                    {
                        "document": _doc_id(plan_, f"bonus-{unit_id}"),
                        "recipient": address,
                        "subject": f"【奖金分配】{header.unit_name}{label(what)}奖金分配表"
                        + ("（更正）" if final is not None else ""),
                        "text": f"{header.unit_name}{label(what)}奖金分配表见附件（XLSX 与 CSV），"
                        f"合计 ¥{header.pool_cents / 100:,.2f}，第 {rev} 版。",
                        "attachments": [
                            [xlsx.name, str(xlsx), XLSX],
                            [csv.name, str(csv), "text/csv"],
                        ],
                    }
                )

    stage_ = stage_of(plan_)
    jobs: list[tuple[str, Path]] = []
    recipients = _leaders(marts, scheme)
    for unit_id, ctx in bulletin_contexts(scheme, marts, stage_, bulletin_changes, links):
        # charts are SVG that matplotlib wrote and escaped (reports.charts), not data
        ctx["trend_svg"] = Markup(  # noqa: S704
            trend_svg(
                [t["label"] for t in ctx["trend"]],
                [t["mean"] for t in ctx["trend"]],
                title="单位月度平均分",
            )
        )
        ctx["distribution_svg"] = Markup(distribution_svg(ctx["scores"], title="得分分布"))  # noqa: S704
        html = render_html("bulletin.html", ctx)
        stem = f"bulletin-{unit_id}"
        write_text(out / f"{stem}.html", html)
        jobs.append((html, out / f"{stem}.pdf"))
        if not final_stage or (final is not None and unit_id not in changed_units):
            continue
        to = recipients.get(unit_id, [])
        if not to:
            summary["no_recipient"].append(unit_id)
        for address in to:
            letters.append(
                {
                    "document": _doc_id(plan_, stem),
                    "recipient": address,
                    "subject": f"【考核通报】{ctx['unit']['name']}{ctx['label']}绩效考核结果通报"
                    + ("（更正）" if ctx["changes"] else ""),
                    "text": f"{ctx['unit']['name']}{ctx['label']}绩效考核结果通报见附件。",
                    "html_file": str(out / f"{stem}.html"),
                    "attachments": [[f"{stem}.pdf", str(out / f"{stem}.pdf"), PDF]],
                }
            )
    emails = marts.roster.set_index("person_id")["email"]
    for pid, ctx in notice_contexts(scheme, marts, stage_, notice_changes):
        html = render_html("notice.html", ctx)
        stem = f"notice-{pid}"
        write_text(out / f"{stem}.html", html)
        jobs.append((html, out / f"{stem}.pdf"))
        if pid not in tell:
            continue
        address = emails.get(pid)
        if not isinstance(address, str) or "@" not in address:
            summary["no_email"].append(pid)
            continue
        letters.append(
            {
                "document": _doc_id(plan_, stem),
                "recipient": address,
                "subject": f"【考核反馈】{ctx['label']}绩效考核结果反馈单"
                + ("（更正）" if ctx["changes"] else ""),
                "text": f"{ctx['person']['name']}：您好！"
                f"您的{ctx['label']}绩效考核结果反馈单见附件。"
                + (
                    f"如有异议，请于{ctx['appeal_deadline']}前申请复议。"
                    if ctx["appeal_deadline"]
                    else ""
                ),
                "html_file": str(out / f"{stem}.html"),
                "attachments": [[f"{stem}.pdf", str(out / f"{stem}.pdf"), PDF]],
            }
        )
    with Renderer(workers) as renderer:
        renderer.write(jobs)
    summary["documents"] = len(jobs)
    manifest = plan_ | {"letters": letters, "summary": summary}
    path = manifest_path(cfg, scheme.id, what, stage, rev)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(manifest, ensure_ascii=False, default=str))
    return manifest | {"manifest": str(path)}


# --- the DAG's steps: each opens its own engine and keeps the run log ------------------------


def _scheme_and_engine(scheme_ref: str | None, cfg: Settings) -> tuple[Scheme, Engine]:
    from etl.warehouse import create_schema, engine_for
    from scoring.scheme import load_scheme

    scheme = load_scheme(scheme_ref or cfg.scheme)
    engine = engine_for(cfg.warehouse_url)
    create_schema(engine)
    return scheme, engine


def what_of(period: str | None, month: str | None) -> str:
    """The month or period to publish: exactly one of the two params."""
    if bool(period) == bool(month):
        raise ValueError("pass exactly one of `period` (YYYY-Qn, YYYY-H1/H2, YYYY) or `month`")
    what = (period or month or "").strip()
    parse_period(what)
    return what


def plan_step(
    what: str,
    stage: str,
    run_id: str,
    scheme_ref: str | None = None,
    cfg: Settings | None = None,
    today: dt.date | None = None,
) -> dict[str, Any]:
    from etl.config import settings
    from etl.pipeline import start_run

    cfg = cfg or settings()
    scheme, engine = _scheme_and_engine(scheme_ref, cfg)
    try:
        start_run(engine, run_id, "kaohe_publish", scheme.id, f"{what} {stage}")
        zone = dt.timezone(dt.timedelta(hours=8)) if scheme.timezone == "Asia/Shanghai" else None
        today = today or dt.datetime.now(zone).date()
        return plan(engine, scheme, what, stage, today) | {"scheme_ref": scheme_ref}
    finally:
        engine.dispose()


def render_step(plan_: dict[str, Any], cfg: Settings | None = None) -> str:
    """Render everything of the plan; returns the manifest's path (the letters stay on disk)."""
    from etl.config import settings

    cfg = cfg or settings()
    scheme, engine = _scheme_and_engine(plan_.get("scheme_ref"), cfg)
    try:
        return render(cfg, engine, scheme, plan_)["manifest"]
    finally:
        engine.dispose()


def letters_of(manifest: dict[str, Any]) -> list[Any]:
    from reports.mail import Attachment, Letter

    return [
        Letter(
            document=entry["document"],
            revision=manifest["revision"],
            stage=manifest["stage"],
            recipient=entry["recipient"],
            subject=entry["subject"],
            text=entry["text"],
            html=Path(entry["html_file"]).read_text(encoding="utf-8")
            if entry.get("html_file")
            else None,
            attachments=tuple(Attachment(n, Path(p), t) for n, p, t in entry["attachments"]),
        )
        for entry in manifest["letters"]
    ]


def deliver_step(
    manifest_file: str, cfg: Settings | None = None, transport: Any = None
) -> dict[str, Any]:
    """Send the manifest's letters that the delivery log has not seen; raises (for a retry) when
    a transient failure outlasted its attempts."""
    from etl.config import settings
    from etl.warehouse import create_schema, engine_for
    from reports.mail import deliver, transport_for

    cfg = cfg or settings()
    manifest = json.loads(Path(manifest_file).read_text(encoding="utf-8"))
    engine = engine_for(cfg.warehouse_url)
    create_schema(engine)
    try:
        transport = transport or transport_for(cfg.mail, cfg.output / "outbox")
        report = deliver(engine, letters_of(manifest), transport, sender=cfg.mail_from)
    finally:
        engine.dispose()
    return {
        "sent": len(report.sent),
        "already_sent": len(report.already_sent),
        "failed": [list(f) for f in report.failed],
        "summary": report.summary(),
    }


def record_step(
    plan_: dict[str, Any],
    manifest_file: str,
    delivered: dict[str, Any],
    run_id: str,
    cfg: Settings | None = None,
) -> dict[str, Any]:
    """The publication recorded (results locked at `final`) and the run log's summary."""
    from etl.config import settings
    from etl.pipeline import _now, record_run

    cfg = cfg or settings()
    scheme, engine = _scheme_and_engine(plan_.get("scheme_ref"), cfg)
    manifest = json.loads(Path(manifest_file).read_text(encoding="utf-8"))
    summary = manifest["summary"]
    try:
        results = current_results(read_marts(engine, scheme, plan_["what"]))
        record(engine, plan_, results, run_id)
        notes = [delivered["summary"]]
        if summary["no_email"]:
            notes.append(f"no e-mail address: {', '.join(summary['no_email'])}")
        if summary["no_recipient"]:
            notes.append(f"no bulletin recipient for units: {', '.join(summary['no_recipient'])}")
        if delivered["failed"]:
            notes.append(f"refused by the mail server: {len(delivered['failed'])}")
        record_run(
            engine,
            run_id,
            status="success",
            finished_at=_now(),
            rows_in=summary["documents"],
            message="; ".join(notes)[:2000],
        )
    finally:
        engine.dispose()
    return {
        "what": plan_["what"],
        "stage": plan_["stage"],
        "revision": plan_["revision"],
        "folder": str(folder(cfg, scheme.id, plan_["what"])),
        "documents": summary["documents"],
        "no_email": summary["no_email"],
        **{k: delivered[k] for k in ("sent", "already_sent", "failed")},
    }


def publish(
    what: str,
    stage: str,
    run_id: str,
    scheme_ref: str | None = None,
    cfg: Settings | None = None,
    transport: Any = None,
    today: dt.date | None = None,
) -> dict[str, Any]:
    """The whole of `kaohe_publish` in one process (tests, the demo): plan, render, deliver,
    record."""
    plan_ = plan_step(what, stage, run_id, scheme_ref, cfg, today)
    manifest_file = render_step(plan_, cfg)
    delivered = deliver_step(manifest_file, cfg, transport)
    return record_step(plan_, manifest_file, delivered, run_id, cfg)
