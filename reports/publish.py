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
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd
import sqlalchemy as sa
from markupsafe import Markup
from sqlalchemy.engine import Engine

from etl.bulk import reading
from etl.config import Settings
from etl.warehouse import (
    delivery_log,
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
DEFAULT_SENDER = "kaohe@localhost.localdomain"  # KAOHE_MAIL_FROM or the connection's from_email
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


def _published(conn: sa.Connection, scheme_id: str, what: str) -> dict[tuple[str, int], Any]:
    p = publication.c
    rows = conn.execute(sa.select(publication).where(p.scheme_id == scheme_id, p.what == what))
    return {(r.stage, r.revision): r for r in rows}


def plan(
    engine: Engine, scheme: Scheme, what: str, stage: str, today: dt.date, run_id: str = "plan"
) -> dict[str, Any]:
    """The revision the marts hold for `what` and the dates its documents carry, fixed by the
    first run that plans this stage and revision (a retry or rerun, even days later, renders the
    same dates). Refuses a stage that would contradict what went out: `notify` after `final` of
    the same revision, or a stage already recorded whose results have changed since."""
    if stage not in STAGES:
        raise ValueError(f"stage must be notify or final, not {stage!r}")
    kind = _kind(what)
    mart = mart_monthly_score if kind == "month" else mart_period_score
    key = mart.c.month if kind == "month" else mart.c.period
    with engine.begin() as conn:
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
        revision = int(revision)
        done = _published(conn, scheme.id, what)
        r = published_result.c
        went_out = {
            (row.stage, row.revision)
            for row in conn.execute(
                sa.select(r.stage, r.revision)
                .where(r.scheme_id == scheme.id, r.what == what)
                .distinct()
            )
        }
        if stage == "notify" and ("final", revision) in went_out:
            raise ValueError(
                f"{what} revision {revision} has gone out at final "
                f"({done[('final', revision)].published_on}): a notify stage after it would "
                "replace the final documents with drafts"
            )
        gone_out = (stage, revision) in went_out
        mine = done.get((stage, revision))
        if mine is not None and gone_out:
            published_on, deadline = mine.published_on, mine.appeal_deadline
        else:  # first planned, or planned before but nothing went out: dated from today
            deadline = (
                today + dt.timedelta(days=scheme.publication.appeal_days)
                if stage == "notify"
                else None  # the appeal window closed with notify; final results are final
            )
            conn.execute(
                publication.delete().where(
                    publication.c.scheme_id == scheme.id,
                    publication.c.what == what,
                    publication.c.stage == stage,
                    publication.c.revision == revision,
                )
            )
            conn.execute(
                publication.insert().values(
                    scheme_id=scheme.id,
                    what=what,
                    stage=stage,
                    revision=revision,
                    published_on=today,
                    appeal_deadline=deadline,
                    run_id=run_id,
                    planned_at=dt.datetime.now(dt.UTC),
                )
            )
            published_on = today
    plan_ = {
        "scheme_id": scheme.id,
        "what": what,
        "stage": stage,
        "revision": revision,
        "published_on": published_on.isoformat(),
        "appeal_deadline": deadline.isoformat() if deadline else None,
        "gone_out": gone_out,
    }
    if gone_out:
        told = _snapshot(engine, scheme.id, what, stage, revision)
        if not changes(read_results(engine, scheme, what), told).empty:
            raise ValueError(
                f"{what}: the results changed after {stage} of revision {revision} went out; "
                + (
                    "the people they changed are told at the next stage (publish final)"
                    if stage == "notify"
                    else "score the month or close the period again to make the next revision"
                )
            )
    return plan_


def whole_numbers(frame: pd.DataFrame, table: sa.Table) -> pd.DataFrame:
    """The table's integer columns (ranks, months, raters) as whole numbers again: one NULL among
    them (a person not ranked) makes the read give the whole column as floats, and every notice
    would then say "第 2.0 名"."""
    cols = [c.name for c in table.columns if isinstance(c.type, sa.Integer) and c.name in frame]
    floats = [c for c in cols if frame[c].dtype.kind == "f"]
    return frame.astype(dict.fromkeys(floats, "Int64")) if floats else frame


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
    tables = {"monthly": m, "indicators": i, "adjustments": a, "surveys": s, "departments": d}
    tables |= {"period": ps, "bonus": b, "refused": n}
    for name, table in tables.items():
        got[name] = whole_numbers(got[name], table)
    people = got.pop("roster").sort_values(["person_id", "month"])
    people = people.drop_duplicates("person_id", keep="last").reset_index(drop=True)
    for name in ("period", "bonus", "refused"):
        if got[name].empty:
            got[name] = None
    return Marts(what=what, roster=people, **got)


def read_results(engine: Engine, scheme: Scheme, what: str) -> pd.DataFrame:
    """What each person would be told now, read from the score marts alone."""
    sid, m, ps, b = scheme.id, mart_monthly_score, mart_period_score, mart_bonus_allocation
    with reading(engine) as read:
        if _kind(what) == "month":
            return month_results(read.frame(m, m.c.scheme_id == sid, m.c.month == what))
        period = read.frame(ps, ps.c.scheme_id == sid, ps.c.period == what)
        bonus = read.frame(b, b.c.scheme_id == sid, b.c.period == what)
    if period.empty:
        raise ValueError(f"{what}: the period has not been closed")
    return period_results(period, bonus)


def current_results(marts: Marts) -> pd.DataFrame:
    """What each person would be told now, in the shape `published_result` keeps."""
    if _kind(marts.what) == "month":
        # the month's totals, ranks and flags, as scoring compares them for a new revision
        # (a monthly pacesetter is shown in the documents, not compared)
        return month_results(marts.monthly[marts.monthly["month"] == marts.what])
    if marts.period is None:
        raise ValueError(f"{marts.what}: the period has not been closed")
    return period_results(marts.period, marts.bonus)


def _reached(engine: Engine, scheme_id: str, what: str, kind: str) -> pd.DataFrame:
    """(stage, revision, key) of every `kind` document of this month or period that reached
    someone: key is the id as file names encode it (`keys`)."""
    d = delivery_log.c
    prefix = f"{scheme_id}/{what}/"
    with engine.connect() as conn:
        docs = pd.read_sql(
            sa.select(d.document, d.revision)
            .where(d.document.startswith(prefix, autoescape=True))
            .distinct(),
            conn,
        )
    docs = docs[docs["document"].str.startswith(prefix)]  # SQLite's LIKE ignores case
    if docs.empty:
        return pd.DataFrame(columns=["stage", "revision", "key"])
    parts = docs["document"].str.slice(len(prefix)).str.split("/", n=1, expand=True)
    mine = parts[1].str.startswith(f"{kind}-")
    return pd.DataFrame(
        {
            "stage": parts.loc[mine, 0],
            "revision": docs.loc[mine, "revision"].astype(int),
            "key": parts.loc[mine, 1].str.slice(len(kind) + 1),
        }
    )


def _order(stage: pd.Series | str, revision: pd.Series | int) -> Any:
    """Publications in the order they go out: notify before final, revision by revision."""
    rank = (
        stage.map({"notify": 0, "final": 1})
        if isinstance(stage, pd.Series)
        else (STAGES.index(stage))
    )
    return revision * 2 + rank


def baselines(
    engine: Engine, scheme_id: str, what: str, stage: str, revision: int
) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """Before this stage and revision: what each person was last told by a notice that reached
    them (one row per person; None if nobody was reached), and what the last final publication
    said (None before the first)."""
    p = published_result.c
    with engine.connect() as conn:
        rows = pd.read_sql(
            sa.select(published_result).where(p.scheme_id == scheme_id, p.what == what), conn
        )
    rows = rows[_order(rows["stage"], rows["revision"]) < _order(stage, revision)]
    if rows.empty:
        return None, None
    finals = rows[rows["stage"] == "final"]
    final = finals[finals["revision"] == finals["revision"].max()] if len(finals) else None
    reached = _reached(engine, scheme_id, what, "notice")
    rows = rows.assign(key=keys(rows["person_id"]))
    told = rows.merge(reached, on=["stage", "revision", "key"])
    told = told.assign(_o=_order(told["stage"], told["revision"])).sort_values("_o")
    told = told.drop_duplicates("person_id", keep="last")
    return (
        None if told.empty else told[RESULT].reset_index(drop=True),
        None if final is None else final[RESULT].reset_index(drop=True),
    )


def _snapshot(engine: Engine, scheme_id: str, what: str, stage: str, revision: int) -> pd.DataFrame:
    r = published_result.c
    with engine.connect() as conn:
        rows = pd.read_sql(
            sa.select(published_result).where(
                r.scheme_id == scheme_id, r.what == what, r.stage == stage, r.revision == revision
            ),
            conn,
        )
    return rows[RESULT]


def snapshot(engine: Engine, plan_: dict[str, Any], results: pd.DataFrame) -> None:
    """Keep what this stage and revision tells each person, before its first letter goes: from
    then on it has gone out (a rescoring that changes it makes the next revision), even if the
    delivery fails half way. Written once; a retry keeps the first."""
    sid, what, stage, rev = (plan_[k] for k in ("scheme_id", "what", "stage", "revision"))
    r = published_result.c
    this = (r.scheme_id == sid, r.what == what, r.stage == stage, r.revision == rev)
    with engine.begin() as conn:
        if conn.execute(sa.select(sa.func.count()).where(*this)).scalar():
            return
        rows = results[RESULT].astype(object).where(results[RESULT].notna(), None)
        conn.execute(
            published_result.insert(),
            [
                row | {"scheme_id": sid, "what": what, "stage": stage, "revision": rev}
                for row in rows.to_dict("records")
            ],
        )


def record(engine: Engine, plan_: dict[str, Any], results: pd.DataFrame) -> None:
    """The stage and revision marked delivered (its snapshot kept if delivery wrote none)."""
    sid, what, stage, rev = (plan_[k] for k in ("scheme_id", "what", "stage", "revision"))
    snapshot(engine, plan_, results)
    p = publication.c
    this = (p.scheme_id == sid, p.what == what, p.stage == stage, p.revision == rev)
    with engine.begin() as conn:
        conn.execute(
            publication.update()
            .where(*this, p.recorded_at.is_(None))
            .values(recorded_at=dt.datetime.now(dt.UTC))
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


def _placed(found: pd.DataFrame, *results: pd.DataFrame | None) -> pd.DataFrame:
    """Each change with every unit any of `results` placed its person in (a person who moved
    is a change for both units, one who left for the unit they left)."""
    frames = [r[["person_id", "unit_id"]] for r in results if r is not None]
    units = pd.concat(frames).drop_duplicates()
    return found.merge(units, on="person_id", how="left")


def _doc_id(plan_: dict[str, Any], name: str) -> str:
    """The delivery log's document: `<scheme>/<month or period>/<stage>/<file stem>`."""
    return f"{plan_['scheme_id']}/{plan_['what']}/{plan_['stage']}/{name}"


def stem(kind: str, key: str) -> str:
    """`notice-<person_id>`, `bulletin-<unit_id>`, `bonus-<unit_id>`: the id percent-encoded
    where it holds anything but letters, digits, `.`, `_`, `-`, `~`, so no id can name a path
    outside the folder or another person's file."""
    return f"{kind}-{quote(str(key), safe='')}"


def keys(ids: pd.Series) -> pd.Series:
    """Ids as `stem` encodes them; only the rare id that needs encoding goes through `quote`."""
    ids = ids.astype(str)
    plain = ids.str.fullmatch(r"[A-Za-z0-9._~-]*")
    return ids.where(plain, ids[~plain].map(lambda i: quote(i, safe="")))


def _one_line(text: object) -> str:
    """Data put into a subject: control characters and runs of white space become one space."""
    return re.sub(r"[\s\x00-\x1f\x7f]+", " ", str(text)).strip()


def _people_to_tell(
    results: pd.DataFrame, told: pd.DataFrame | None
) -> tuple[set[str], pd.DataFrame]:
    """Whose notice goes out now, and what changed for them: whoever's result differs from what
    their last notice that reached them said, and whoever no notice of this month or period has
    reached yet (no address before, a refusal, a notice held)."""
    if told is None:
        return set(results["person_id"]), pd.DataFrame(columns=CHANGE)
    found = changes(results, told)
    found = found[found["person_id"].isin(set(told["person_id"]))]  # never told: not a 更正
    never = set(results["person_id"]) - set(told["person_id"])
    return never | (set(found["person_id"]) & set(results["person_id"])), found


def _addresses(marts: Marts) -> tuple[pd.Series, set[str], set[str]]:
    """Each person's address, and the people whose address is missing or malformed, or is also
    another person's (a shared mailbox would show one person's notice to others)."""
    from reports.mail import ADDRESS

    email = marts.roster.set_index("person_id")["email"]
    text = email.where(email.notna(), "").astype(str).str.strip()
    valid = text.str.fullmatch(ADDRESS.pattern)
    shared = text[valid].str.lower().duplicated(keep=False)
    return text, set(text.index[~valid]), set(shared.index[shared])


def render(
    cfg: Settings,
    engine: Engine,
    scheme: Scheme,
    plan_: dict[str, Any],
    workers: int | None = None,
    pdfs: bool = True,
) -> dict[str, Any]:
    """Write the documents of the plan and the manifest of letters; returns the manifest. The
    PDFs are written here, or with `pdfs=False` left to `pdf_step`, by the manifest's unit
    batches (`pdf_batches`), which the DAG maps over."""
    from reports.charts import distribution_svg, trend_svg
    from reports.mail import valid_address
    from reports.render import render_html, write_text

    what, stage, rev = plan_["what"], plan_["stage"], plan_["revision"]
    marts = read_marts(engine, scheme, what)
    results = current_results(marts)  # raises if the period is not closed
    held = marts.monthly[marts.monthly["month"] == what] if _kind(what) == "month" else marts.period
    if set(held["revision"].astype(int)) != {rev}:
        raise ValueError(
            f"{what} was rescored while it was being published (revision {rev} planned, "
            f"{sorted(set(held['revision'].astype(int)))} now): run kaohe_publish again"
        )
    told, final = baselines(engine, scheme.id, what, stage, rev)
    tell, notice_changes = _people_to_tell(results, told)
    none = pd.DataFrame(columns=CHANGE)
    bulletin_changes = none if final is None else _placed(changes(results, final), results, final)
    # at a later final: the units it changed, and any unit whose bulletin never reached anyone
    changed_units = None
    if final is not None:
        reached = set(
            _reached(engine, scheme.id, what, "bulletin").query("stage == 'final'")["key"]
        )
        units = results["unit_id"].drop_duplicates()
        unreached = set(units[~keys(units).isin(reached)])
        changed_units = set(bulletin_changes["unit_id"].dropna()) | unreached
    out = folder(cfg, scheme.id, what)
    out.mkdir(parents=True, exist_ok=True)
    final_stage = stage == "final"
    links: dict[str, dict[str, str]] = {}
    letters: list[dict[str, Any]] = []
    summary: dict[str, Any] = {"no_email": [], "shared_email": [], "no_recipient": []}
    summary |= {"bad_address": [], "documents": 0}

    if final_stage and marts.bonus is not None and scheme.bonus is not None:
        bonus_letters, links = _bonus_tables(cfg, scheme, marts, plan_, final)
        letters += bonus_letters
        summary["bad_address"] += [a for a in scheme.publication.finance if not valid_address(a)]

    stage_ = stage_of(plan_)
    jobs: list[tuple[Path, Path, str]] = []  # html file, pdf file, unit
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
        name = stem("bulletin", unit_id)
        write_text(out / f"{name}.html", render_html("bulletin.html", ctx))
        jobs.append((out / f"{name}.html", out / f"{name}.pdf", str(unit_id)))
        if not final_stage or (changed_units is not None and unit_id not in changed_units):
            continue  # bulletins go out at final; a correction only to the units it changed
        to = [a for a in recipients.get(unit_id, []) if valid_address(a)]
        summary["bad_address"] += [a for a in recipients.get(unit_id, []) if not valid_address(a)]
        if not to:
            summary["no_recipient"].append(unit_id)
        unit_name = _one_line(ctx["unit"]["name"])
        for address in to:
            letters.append(
                {
                    "document": _doc_id(plan_, name),
                    "recipient": address,
                    "subject": f"【考核通报】{unit_name}{ctx['label']}绩效考核结果通报"
                    + ("（更正）" if ctx["changes"] else ""),
                    "text": f"{unit_name}{ctx['label']}绩效考核结果通报见附件。",
                    "html_file": str(out / f"{name}.html"),
                    "attachments": [[f"{name}.pdf", str(out / f"{name}.pdf"), PDF]],
                }
            )
    emails, unusable, shared = _addresses(marts)
    unit_of = results.set_index("person_id")["unit_id"].astype(str)
    for pid, ctx in notice_contexts(scheme, marts, stage_, notice_changes):
        name = stem("notice", pid)
        write_text(out / f"{name}.html", render_html("notice.html", ctx))
        jobs.append((out / f"{name}.html", out / f"{name}.pdf", unit_of.get(pid, "")))
        if pid not in tell:
            continue
        if pid in unusable or pid not in emails.index:
            summary["no_email"].append(pid)
            continue
        if pid in shared:
            summary["shared_email"].append(pid)
            continue
        deadline = ctx["appeal_deadline"]
        letters.append(
            {
                "document": _doc_id(plan_, name),
                "recipient": emails[pid],
                "subject": f"【考核反馈】{ctx['label']}绩效考核结果反馈单"
                + ("（更正）" if ctx["changes"] else ""),
                "text": f"{_one_line(ctx['person']['name'])}：您好！"
                f"您的{ctx['label']}绩效考核结果反馈单见附件。"
                + (
                    f"如有异议，请于{deadline.year}年{deadline.month}月{deadline.day}日前申请复议。"
                    if deadline
                    else ""
                ),
                "html_file": str(out / f"{name}.html"),
                "attachments": [[f"{name}.pdf", str(out / f"{name}.pdf"), PDF]],
            }
        )
    batches = pdf_batches(jobs, cfg.batch_people)
    if pdfs:
        write_pdfs_of([j for b in batches for j in b], workers)
    summary["documents"] = len(jobs)
    path = manifest_path(cfg, scheme.id, what, stage, rev)
    path.parent.mkdir(parents=True, exist_ok=True)
    # what was rendered is what `record` keeps as told, whatever a rescoring does meanwhile
    results.to_feather(path.with_suffix(".results.feather"))
    manifest = plan_ | {"letters": letters, "summary": summary, "pdf_batches": batches}
    write_text(path, json.dumps(manifest, ensure_ascii=False, default=str))
    return manifest | {"manifest": str(path)}


def pdf_batches(jobs: list[tuple[Path, Path, str]], size: int) -> list[list[list[str]]]:
    """The documents' (html, pdf) files in unit batches of about `size` documents (unit_batches)."""
    from etl.score import unit_batches

    if not jobs:
        return [[]]
    files = pd.DataFrame(jobs, columns=["html", "pdf", "unit"]).astype(str)
    units = unit_batches(files.groupby("unit").size(), size)
    batch = files["unit"].map({u: i for i, us in enumerate(units) for u in us})
    return [g.to_numpy().tolist() for _, g in files.groupby(batch, sort=True)[["html", "pdf"]]]


def write_pdfs_of(files: list[list[str]], workers: int | None = None) -> int:
    """Each (html file, pdf file) rendered; the HTML is read as the workers need it."""
    from reports.render import write_pdfs

    jobs = ((Path(html).read_text(encoding="utf-8"), Path(pdf)) for html, pdf in files)
    return len(write_pdfs(jobs, workers))


def _bonus_tables(
    cfg: Settings, scheme: Scheme, marts: Marts, plan_: dict[str, Any], final: pd.DataFrame | None
) -> tuple[list[dict[str, Any]], dict[str, dict[str, str]]]:
    """The bonus tables of a bonus period at `final`, and their letters to finance: every unit's
    at the first final, later only the units whose allocation changed."""
    from reports.bonus_tables import BonusHeader, bonus_rows, write_csv, write_xlsx
    from reports.mail import valid_address

    what, rev = plan_["what"], plan_["revision"]
    out = folder(cfg, scheme.id, what)
    base = cfg.base_url.rstrip("/")
    grades = {g.grade: g.name or g.grade for g in scheme.grading.grades} if scheme.grading else {}
    people = marts.roster.merge(
        marts.period[["person_id", "post_coefficient"]], on="person_id", how="left"
    )
    people["category"] = people["category"].map(lambda c: scheme.categories.get(c) or c)
    units = marts.roster.drop_duplicates("unit_id").set_index("unit_id")["unit_name"]
    method = {"grade_coefficient": "按等次系数", "score_share": "按得分占比"}[scheme.bonus.method]
    generated = dt.datetime.combine(
        dt.date.fromisoformat(plan_["published_on"]), dt.time(), tzinfo=dt.UTC
    )
    paid_before = None
    if final is not None:
        paid_before = final.dropna(subset=["amount_cents"]).set_index("person_id")
    letters, links = [], {}
    for unit_id, alloc in marts.bonus.groupby("unit_id"):
        header = BonusHeader(
            scheme_id=scheme.id,
            scheme_name=scheme.name,
            unit_id=unit_id,
            unit_name=_one_line(units.get(unit_id, unit_id)),
            period=what,
            period_label=label(what),
            pool_cents=int(alloc["amount_cents"].sum()),
            revision=rev,
            method_label=method,
            generated_at=generated,
        )
        rows = bonus_rows(alloc, people, grades)
        name = stem("bonus", unit_id)
        xlsx = write_xlsx(out / f"{name}.xlsx", header, rows)
        csv = write_csv(out / f"{name}.csv", header, rows)
        links[unit_id] = {
            "xlsx": f"{base}/{scheme.id}/{what}/{quote(xlsx.name)}",
            "csv": f"{base}/{scheme.id}/{what}/{quote(csv.name)}",
            "xlsx_name": xlsx.name,
        }
        if paid_before is not None:
            before = paid_before[paid_before["unit_id"] == unit_id]["amount_cents"]
            now = alloc.set_index("person_id")["amount_cents"]
            if before.astype("int64").sort_index().equals(now.astype("int64").sort_index()):
                continue  # the same people paid the same: finance gets nothing new
        for address in filter(valid_address, scheme.publication.finance):  # others: run log
            letters.append(
                {
                    "document": _doc_id(plan_, name),
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
    return letters, links


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
        return plan(engine, scheme, what, stage, today, run_id) | {"scheme_ref": scheme_ref}
    finally:
        engine.dispose()


def render_step(plan_: dict[str, Any], cfg: Settings | None = None, pdfs: bool = True) -> str:
    """Render everything of the plan (the PDFs too unless `pdfs` is false: the DAG maps them over
    unit batches); returns the manifest's path (the letters stay on disk)."""
    from etl.config import settings

    cfg = cfg or settings()
    scheme, engine = _scheme_and_engine(plan_.get("scheme_ref"), cfg)
    try:
        return render(cfg, engine, scheme, plan_, pdfs=pdfs)["manifest"]
    finally:
        engine.dispose()


def pdf_plan_step(manifest_file: str) -> list[dict[str, Any]]:
    """One mapped PDF task per unit batch of the manifest."""
    batches = json.loads(Path(manifest_file).read_text(encoding="utf-8"))["pdf_batches"]
    return [
        {"manifest": manifest_file, "index": i, "documents": len(b)} for i, b in enumerate(batches)
    ]


def pdf_step(batch: dict[str, Any]) -> int:
    """The PDFs of one unit batch of the manifest, on this worker's cores."""
    manifest = json.loads(Path(batch["manifest"]).read_text(encoding="utf-8"))
    return write_pdfs_of(manifest["pdf_batches"][batch["index"]])


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
        results = pd.read_feather(Path(manifest_file).with_suffix(".results.feather"))
        letters = letters_of(manifest)
        # a document whose PDF task did not finish (a full disk) stops delivery before the stage
        # is kept as gone out: nothing can have gone, so a rerun may still date it anew
        attached = {a.path for x in letters for a in x.attachments}
        missing = sorted(str(p) for p in attached if not p.is_file())
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} attachments were never written, nothing was sent: "
                + ", ".join(missing[:5])
                + (" …" if len(missing) > 5 else "")
            )
        snapshot(engine, manifest, results)  # from here on, this stage has gone out
        transport = transport or transport_for(cfg.mail, cfg.output / "outbox")
        sender = cfg.mail_from or getattr(transport, "sender", None) or DEFAULT_SENDER
        report = deliver(engine, letters, transport, sender=sender)
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
        results = pd.read_feather(Path(manifest_file).with_suffix(".results.feather"))
        record(engine, plan_, results)
        notes = [delivered["summary"]]
        if summary["no_email"]:
            notes.append(f"no usable e-mail address: {', '.join(summary['no_email'])}")
        if summary["shared_email"]:
            notes.append(
                "notice held, address shared with another person: "
                + ", ".join(summary["shared_email"])
            )
        if summary["bad_address"]:
            notes.append(f"malformed recipient addresses: {len(summary['bad_address'])}")
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
        "shared_email": summary["shared_email"],
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
