"""Scoring against the warehouse: read what a month or period needs, write its marts.

The arithmetic lives in `scoring/` as pure functions; this module only selects their inputs and
replaces their outputs, each month or period in one transaction, so a rerun leaves exactly what
one run leaves and a failure leaves the previous result whole.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from etl.bulk import Reader, Writer, concurrent_reads, prepare_partitions, reading, writing
from etl.explain import scheme_items
from etl.warehouse import adjustment as adjustment_table
from etl.warehouse import (
    attendance,
    attendance_month,
    case_month,
    case_snapshot,
    mart_adjustment,
    mart_bonus_allocation,
    mart_component_score,
    mart_department_score,
    mart_indicator_score,
    mart_monthly_score,
    mart_nomination_refused,
    mart_period_score,
    mart_survey_result,
    nomination,
    published_result,
    roster,
    scheme_item,
    survey_response,
    survey_round,
)
from scoring.measures import (
    ATTENDANCE_COUNTS,
    LOOK_BACK_COUNTS,
    attendance_counts,
    attendance_measures_from_counts,
    case_measures,
    department_measures,
)
from scoring.monthly import INDICATOR_COLUMNS, UnitMonth, month_totals, unit_month
from scoring.periods import close_period
from scoring.revisions import month_results, period_results, revision_for
from scoring.scheme import Scheme
from scoring.survey import survey_scores
from scoring.timeline import months_of, parse_period, periods_inside, presence, shift_month

LOOK_BACK_MONTHS = 12  # acceptance_rate sums the 12 months ending with the month


def _replace(out: Writer, table: sa.Table, key: dict[str, Any], rows: pd.DataFrame) -> int:
    """Make `rows`, with the key filled, the rows under `key`."""
    rows = rows.assign(**key)
    if set(key) == {"scheme_id", "month"}:
        return out.replace_month(table, rows, key["scheme_id"], key["month"])
    return out.replace(table, rows, *(table.c[k] == v for k, v in key.items()))


def scored_months(read: Reader, scheme_id: str) -> list[str]:
    c = mart_monthly_score.c
    return read.values(c.month, c.scheme_id == scheme_id)


def closed_periods(read: Reader, scheme_id: str) -> list[str]:
    c = mart_period_score.c
    return read.values(c.period, c.scheme_id == scheme_id)


def months_to_score(read: Reader, scheme_id: str, month: str) -> list[str]:
    """The month and every later month of its year already scored: their look-back measures and
    yearly bonus caps depend on it (scheme.md, "rerunning a month")."""
    later = [m for m in scored_months(read, scheme_id) if m > month and m[:4] == month[:4]]
    return [month, *later]


PEOPLE = ["month", "person_id", "name", "unit_id", "unit_name", "dept_id", "dept_name"]
PEOPLE += ["category", "post_coefficient", "active_from", "active_to"]
ACTIVE = ["month", "person_id", "active_from", "active_to"]
DAYS = ["month", "person_id", "date", "status", "duty_filed", "duty_reviewed"]
COUNTS = ["month", "person_id", *ATTENDANCE_COUNTS]
HISTORY = ["person_id", *LOOK_BACK_COUNTS]
CASES = ["month", "dept_id", "judge_id", "panel_ids", "filed_on", "closed_on", "procedure"]
CASES += ["outcome", "verdict_in_court", "appeal_outcome", "appeal_decided_on", "fault"]
RATINGS = ["survey_id", "period", "rater_hash", "relation", "ratee_id", "item", "score"]
TEXT_OF_RATINGS = ["survey_id", "period", "rater_hash", "relation", "ratee_id", "item"]
SurveysRead = Future[dict[str, Any]]  # _survey_inputs, on its way
READERS = 2  # parallel reads: on a 2-core machine the database or the driver fills the other core


def _people_of(sid: str, months: list[str], units: list[str] | None) -> sa.Select | None:
    """The people a unit batch scores: everyone listed in its units in any of `months` (None: the
    whole scheme, no filter)."""
    if units is None:
        return None
    r = roster.c
    return sa.select(r.person_id).where(
        r.scheme_id == sid, r.month.in_(months), r.unit_id.in_(units)
    )


def _theirs(column: sa.Column, people: sa.Select | None) -> tuple[sa.ColumnElement, ...]:
    return () if people is None else (column.in_(people),)


def case_history(
    read: Reader, scheme_id: str, months: list[str], people: sa.Select | None = None
) -> pd.DataFrame:
    """Per snapshot month and judge of the 12-month look-back before and between `months`, the
    counts it sums (closed, reversed, remanded in that month), as the load kept them; the months
    being scored are left out (they are read whole). A month loaded without them (by an earlier
    kaohe) is aggregated by the database from its snapshot."""
    c = case_month.c
    window, m = [], shift_month(months[0], 1 - LOOK_BACK_MONTHS)
    while m <= months[-1]:
        if m not in months:
            window.append(m)
        m = shift_month(m, 1)
    kept = read.frame(
        case_month,
        c.scheme_id == scheme_id,
        c.month.in_(window),
        *_theirs(c.person_id, people),
        columns=["month", *HISTORY],
    )
    lacking = sorted(set(window) - set(kept["month"]))
    if lacking:
        older = _aggregated_history(read, scheme_id, lacking, people)
        kept = pd.concat([kept, older], ignore_index=True)
    return kept.astype(dict.fromkeys(LOOK_BACK_COUNTS, float))


def _aggregated_history(
    read: Reader, scheme_id: str, months: list[str], people: sa.Select | None = None
) -> pd.DataFrame:
    s = case_snapshot

    def in_month(col: sa.Column) -> sa.ColumnElement:
        return sa.func.substr(sa.cast(col, sa.Text), 1, 7) == s.c.month

    def count(cond: sa.ColumnElement) -> sa.ColumnElement:
        return sa.func.sum(sa.case((cond, 1), else_=0))

    decided = in_month(s.c.appeal_decided_on)
    stmt = (
        sa.select(
            s.c.month,
            s.c.judge_id.label("person_id"),
            count(in_month(s.c.closed_on)).label("closed"),
            count(decided & (s.c.appeal_outcome == "reversed")).label("reversed"),
            count(decided & (s.c.appeal_outcome == "remanded")).label("remanded"),
        )
        .where(s.c.scheme_id == scheme_id, s.c.month.in_(months), *_theirs(s.c.judge_id, people))
        .group_by(s.c.month, s.c.judge_id)
    )
    return read.query(stmt)


def published(read: Reader, sid: str, whats: list[str]) -> pd.DataFrame:
    """What every stage of these months' or periods' publications told people."""
    p = published_result.c
    return read.frame(published_result, p.scheme_id == sid, p.what.in_(whats))


def revision(published: pd.DataFrame, what: str, results: pd.DataFrame) -> int:
    """The revision `results` of `what` are written as: the last final one while nothing it
    published changed, the next as soon as anything did (revisions.revision_for), and never
    below a revision that already went out at any stage."""
    rows = published[published["what"] == what]
    finals = rows[rows["stage"] == "final"]
    last = int(finals["revision"].max()) if len(finals) else None
    told = finals[finals["revision"] == last] if last is not None else None
    return max(revision_for(results, told, last), int(rows["revision"].max()) if len(rows) else 1)


def delivered_rounds(rounds: pd.DataFrame, months: list[str]) -> pd.DataFrame:
    """The survey rounds the months' extracts delivered, each with the (first) month that did:
    the month its relation results are reported in. `rounds`: survey_round rows (or ratings:
    anything with the round and the month that delivered it)."""
    key = ["survey_id", "period", "month"]
    delivered = rounds.loc[rounds["month"].isin(months), key].astype(str)
    return delivered.groupby(["survey_id", "period"], as_index=False, sort=True)["month"].min()


def _attendance(
    read: Reader, sid: str, months: list[str], people: sa.Select | None
) -> pd.DataFrame:
    """The months' attendance counts as the load kept them; a month loaded without them (by an
    earlier kaohe) is counted from its days."""
    s, a = attendance_month, attendance
    mine = _theirs(s.c.person_id, people)
    kept = read.frame(s, s.c.scheme_id == sid, s.c.month.in_(months), *mine, columns=COUNTS)
    lacking = sorted(set(months) - set(kept["month"]))
    if not lacking:
        return kept
    mine = _theirs(a.c.person_id, people)
    days = read.frame(a, a.c.scheme_id == sid, a.c.month.in_(lacking), *mine, columns=DAYS)
    return pd.concat([kept, attendance_counts(days)], ignore_index=True)


def _cases_of(sid: str, months: list[str], units: list[str], people: sa.Select) -> sa.ColumnElement:
    """The case rows a unit batch needs: those of its departments (the division's measures), of
    its judges, and every faulted one (a panel member may sit on another division's case)."""
    c, r = case_snapshot.c, roster.c
    depts = sa.select(r.dept_id).where(
        r.scheme_id == sid, r.month.in_(months), r.unit_id.in_(units)
    )
    return c.dept_id.in_(depts) | c.judge_id.in_(people) | (c.fault == 1)


def _unit_inputs(
    read: Reader, scheme: Scheme, months: list[str], units: list[str] | None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """What the people's own part of `months` needs, for the people of `units` (None: everyone):
    their rows in the months (in key order), their measures, and the year's register rows
    (yearly cap). The reads run side by side, the largest first."""
    sid, last = scheme.id, months[-1]
    year_start = f"{months[0][:4]}-01"
    r, c, j = roster, case_snapshot, adjustment_table
    people = _people_of(sid, months, units)
    cases = () if units is None else (_cases_of(sid, months, units, people),)
    in_units = () if units is None else (r.c.unit_id.in_(units),)
    jobs: dict[str, Callable[[], pd.DataFrame]] = {
        "cases": lambda: read.frame(
            c, c.c.scheme_id == sid, c.c.month.in_(months), *cases, columns=CASES
        ),
        "history": lambda: case_history(read, sid, months, people),
        "people": lambda: read.frame(
            r, r.c.scheme_id == sid, r.c.month.in_(months), *in_units, columns=PEOPLE
        ),
        "year": lambda: read.frame(  # the year's presence, in any unit: closure balance
            r,
            r.c.scheme_id == sid,
            r.c.month.between(year_start, last),
            *_theirs(r.c.person_id, people),
            columns=ACTIVE,
        ),
        "attendance": lambda: _attendance(read, sid, months, people),
        "adjustments": lambda: read.frame(
            j,
            j.c.scheme_id == sid,
            j.c.month.between(year_start, last),
            *_theirs(j.c.person_id, people),
        ),
    }
    # these reads first, then the computing: the frames they make are built under the
    # interpreter lock, which pandas needs too (the survey ratings, read beside all of this,
    # arrive as Arrow columns and dictionary codes, built without it)
    got = read.all(jobs, READERS)
    year = presence(got["year"])
    # person order is the marts' key order, which makes their indexes cheap to fill
    in_months = presence(got["people"]).sort_values(["month", "person_id"], ignore_index=True)
    keys = in_months[["month", "person_id"]]
    snapshots = got.pop("cases")
    cases = case_measures(snapshots, year, scheme.long_pending_days, got["history"], months=months)
    cases = cases.merge(
        department_measures(snapshots, in_months), on=["month", "person_id"], how="left"
    )
    measures = attendance_measures_from_counts(got["attendance"], keys).merge(
        cases, on=["month", "person_id"], how="left"
    )
    return in_months, measures, got["adjustments"]


def unit_parts(
    engine: Engine, scheme: Scheme, months: list[str], units: list[str] | None = None
) -> dict[str, UnitMonth]:
    """The people's own part of each of `months` (monthly.unit_month) for the people of `units`
    (None: everyone): what a unit batch computes on its own."""
    with reading(engine) as read:
        people, measures, adjustments = _unit_inputs(read, scheme, months, units)
    return {
        m: unit_month(
            m,
            people[people["month"] == m].reset_index(drop=True),
            measures[measures["month"] == m],
            adjustments,
            scheme,
        )
        for m in months
    }


def combine(parts: list[UnitMonth]) -> UnitMonth:
    """The batches' parts of one month as one, people in key order as an unsplit run has them."""
    if len(parts) == 1:
        return parts[0]

    def cat(name: str) -> pd.DataFrame:
        return pd.concat([getattr(p, name) for p in parts], ignore_index=True)

    people = cat("people").sort_values("person_id", kind="stable", ignore_index=True)
    return UnitMonth(people, cat("indicators"), cat("summed"), cat("adjustments"))


def unit_batches(sizes: pd.Series, size: int) -> list[list[str]]:
    """Whole units in unit order, a new batch once the current one holds `size` or more (people,
    documents: `sizes` per unit id); a unit larger than that is a batch of its own. Always one
    batch at least, so a mapped task has something to run. Loops over units, never people."""
    batches: list[list[str]] = [[]]
    filled = 0
    for unit, n in sizes.rename(index=str).sort_index().items():
        if filled >= size:
            batches.append([])
            filled = 0
        batches[-1].append(unit)
        filled += int(n)
    return batches


def plan_batches(engine: Engine, scheme: Scheme, month: str, batch_people: int) -> dict[str, Any]:
    """The months a run of `month` scores, and its units in batches of about `batch_people`."""
    r = roster.c
    with reading(engine) as read:
        months = months_to_score(read, scheme.id, month)
        sizes = read.query(
            sa.select(r.unit_id, sa.func.count().label("people"))
            .where(r.scheme_id == scheme.id, r.month.in_(months))
            .group_by(r.unit_id)
        )
    return {
        "months": months,
        "batches": unit_batches(sizes.set_index("unit_id")["people"], batch_people),
    }


def _delivering(read: Reader, sid: str, periods: list[str]) -> list[str]:
    """The months whose extracts delivered ratings of rounds of `periods` (survey_round)."""
    r = survey_round.c
    return read.values(r.month, r.scheme_id == sid, r.period.in_(periods))


def _ratings_of(
    read: Reader, sid: str, periods: list[str], months: Collection[str] = (), **kw: Any
) -> pd.DataFrame:
    """The ratings of the rounds of `periods`, wherever delivered, and every rating the
    extracts of `months` delivered: read by the months of the ratings' key (the months that
    delivered those rounds, from survey_round), so the read is the size of the answer, not of
    every rating the scheme has kept over the years."""
    v = survey_response.c
    others = sorted(set(_delivering(read, sid, periods)) - set(months))
    which = [v.month.in_(sorted({*months, *others}))]  # key ranges
    if others:  # there, only the rounds' ratings
        which.append(v.month.in_(months) | v.period.in_(periods))
    return read.frame(survey_response, v.scheme_id == sid, *which, categories=TEXT_OF_RATINGS, **kw)


def _survey_inputs(read: Reader, sid: str, months: list[str]) -> dict[str, Any]:
    r = survey_round.c
    jobs: dict[str, Callable[[], Any]] = {
        "surveys": lambda: _ratings_of(read, sid, months, months, columns=RATINGS),
        "rounds": lambda: delivered_rounds(
            read.frame(survey_round, r.scheme_id == sid, r.month.in_(months)), months
        ),
        "published": lambda: published(read, sid, months),
        "closed": lambda: closed_periods(read, sid),
    }
    return read.all(jobs, READERS)


@contextmanager
def surveys_read_beside(engine: Engine, sid: str, months: list[str]) -> Iterator[SurveysRead]:
    """What _finish reads of the surveys, read on a thread of its own where the reads need no
    engine connection (ADBC): the rounds' millions of ratings come in while the block computes
    the people's part and the database writes the marts that need no survey. Without ADBC they
    are read now (the engine's one connection is not shared between threads). However the block
    ends, the read has ended too: no reader of the warehouse outlives it (etl/bulk.py)."""
    if not concurrent_reads(engine):
        done: SurveysRead = Future()
        with reading(engine) as read:
            done.set_result(_survey_inputs(read, sid, months))
        yield done
        return

    def job() -> dict[str, Any]:
        with reading(engine) as read:
            return _survey_inputs(read, sid, months)

    with ThreadPoolExecutor(1, thread_name_prefix="kaohe-surveys") as pool:
        yield pool.submit(job)  # leaving the pool waits for the read


def _arrived(surveys: SurveysRead) -> dict[str, Any]:
    """The survey inputs, once read: the time spent here is the time scoring waits for them."""
    return surveys.result()


def finish_months(
    engine: Engine, scheme: Scheme, months: list[str], parts: dict[str, UnitMonth]
) -> dict[str, Any]:
    """What needs the whole scheme: the survey rounds (a rater's leniency is measured over every
    rating of the round), totals, ranks in scope, red flags, departments, revisions; every mart
    of `months` replaced in one transaction. Returns what was scored and the closed periods that
    must be closed again."""
    with surveys_read_beside(engine, scheme.id, months) as surveys:
        return _finish(engine, scheme, months, parts, surveys)


def _finish(
    engine: Engine,
    scheme: Scheme,
    months: list[str],
    parts: dict[str, UnitMonth],
    surveys: SurveysRead,
) -> dict[str, Any]:
    summary: dict[str, Any] = {"months": months, "people": {}}
    prepare_partitions(engine, scheme.id)
    with writing(engine) as out:  # each mart is written while the next is computed
        # the marts that need no survey first: the largest is written while the surveys come in
        for m in months:
            key = {"scheme_id": scheme.id, "month": m}
            _replace(out, mart_indicator_score, key, parts[m].indicators)
            _replace(out, mart_adjustment, key, parts[m].adjustments)
            # the month's largest frame is the writer's alone now, and freed once written: the
            # totals need only its components, summed already (a province month: ~0.5 GiB)
            parts[m] = replace(parts[m], indicators=pd.DataFrame(columns=INDICATOR_COLUMNS))
        data = _arrived(surveys)
        closed = data["closed"]
        rated, relations = survey_scores(data.pop("surveys"), scheme)  # freed once scored
        results = relations.merge(data["rounds"], on=["survey_id", "period"]).rename(
            columns={"period": "survey_period"}
        )
        s = mart_survey_result.c
        out.replace(
            mart_survey_result,
            results.assign(scheme_id=scheme.id),
            s.scheme_id == scheme.id,
            s.month.in_(months) | s.survey_id.in_(data["rounds"]["survey_id"].unique().tolist()),
        )
        items = scheme_items(scheme).assign(scheme_id=scheme.id)
        out.replace(scheme_item, items, scheme_item.c.scheme_id == scheme.id)
        for m in months:
            result = month_totals(parts.pop(m), rated[rated["period"] == m], scheme)
            key = {"scheme_id": scheme.id, "month": m}
            rev = revision(data["published"], m, month_results(result.monthly))
            _replace(out, mart_monthly_score, key, result.monthly.assign(revision=rev))
            _replace(out, mart_component_score, key, result.components)
            _replace(out, mart_department_score, key, result.departments)
            summary["people"][m] = len(result.monthly)
    summary["periods_to_redo"] = sorted(p for p in closed if set(months_of(p)) & set(months))
    return summary


def score_months(engine: Engine, scheme: Scheme, month: str) -> dict[str, Any]:
    """Score `month` and the later scored months of its year in one piece (every unit at once);
    replace their marts in one transaction. The surveys are read while the people's part is
    computed."""
    with reading(engine) as read:
        months = months_to_score(read, scheme.id, month)
    with surveys_read_beside(engine, scheme.id, months) as surveys:
        parts = unit_parts(engine, scheme, months)
        return _finish(engine, scheme, months, parts, surveys)


def _period_inputs(read: Reader, scheme: Scheme, period: str) -> dict[str, pd.DataFrame]:
    """What closing `period` reads: its months' scores, the survey rounds inside it, its
    nominations, the roster of its last month and who a register row bars from honours."""
    sid, months = scheme.id, months_of(period)
    m, c, n, r = mart_monthly_score, mart_component_score, nomination, roster
    a = adjustment_table
    bars = [x.rule for x in scheme.adjustments if x.no_honours]
    jobs: dict[str, Callable[[], pd.DataFrame]] = {
        "monthly": lambda: read.frame(m, m.c.scheme_id == sid, m.c.month.in_(months)),
        "components": lambda: read.frame(c, c.c.scheme_id == sid, c.c.month.in_(months)),
        "responses": lambda: _ratings_of(read, sid, periods_inside(period), columns=RATINGS),
        "nominations": lambda: read.frame(n, n.c.scheme_id == sid, n.c.period == period),
        "last": lambda: read.frame(r, r.c.scheme_id == sid, r.c.month == months[-1]),
        "published": lambda: published(read, sid, [period]),
        "barred": lambda: read.frame(  # the register: rows of months a person missed count too
            a,
            a.c.scheme_id == sid,
            a.c.month.in_(months),
            a.c.rule.in_(bars),
            columns=["person_id"],
        ),
    }
    return read.all(jobs, READERS)


def close_period_in_warehouse(engine: Engine, scheme: Scheme, period: str) -> dict[str, Any]:
    """Period scores, grades, pacesetters and bonus of one period, replaced in one transaction."""
    kind, months = parse_period(period)
    with reading(engine) as read:
        data = _period_inputs(read, scheme, period)
    monthly = data["monthly"]
    if monthly.empty:
        raise ValueError(f"{period}: no month of it has been scored")
    missing = sorted(set(months) - set(monthly["month"]))
    rated, _ = survey_scores(data["responses"], scheme)
    result = close_period(
        period,
        monthly,
        data["components"],
        rated,
        data["nominations"],
        data["last"],
        scheme,
        barred=set(data["barred"]["person_id"].astype(str)),
    )
    key = {"scheme_id": scheme.id, "period": period}
    if kind == "month":  # a month closed for monthly pacesetters is published as that month
        rev = int(monthly.loc[monthly["month"] == period, "revision"].max())
    else:
        rev = revision(data["published"], period, period_results(result.scores, result.bonus))
    bonus = result.bonus if result.bonus is not None else pd.DataFrame()
    refused = result.refused_nominations
    with writing(engine) as out:
        _replace(out, mart_period_score, key, result.scores.assign(revision=rev))
        _replace(
            out,
            mart_bonus_allocation,
            key,
            bonus.assign(revision=rev) if len(bonus) else bonus,
        )
        _replace(
            out, mart_nomination_refused, key, refused if refused is not None else pd.DataFrame()
        )
    return {
        "period": period,
        "kind": kind,
        "people": len(result.scores),
        "graded": int(result.scores["graded"].sum()),
        "months_missing": missing,
        "bonus_rows": 0 if result.bonus is None else len(result.bonus),
        "nominations_refused": 0 if refused is None else len(refused),
        "messages": result.messages,
        "revision": rev,
    }
