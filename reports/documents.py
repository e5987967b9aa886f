"""What each document says: the marts of a month or period turned into the contexts the
templates render, one per unit bulletin (通报) and one per personal result notice (反馈单).

Pure functions of DataFrames and the scheme. A notice's context is built from that person's rows
only, so nothing about anyone else can reach it; rater-level data never reaches a mart, so it
cannot reach a document either. Numbers stay numbers here; the templates format them.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from scoring.numbers import half_up
from scoring.scheme import Scheme
from scoring.timeline import parse_period

RELATIONS = {"superior": "上级", "peer": "同级", "subordinate": "下级", "self": "自评"}
RELATIONS["public"] = "服务对象"
ROUTES = {"rank": "排名产生", "streak": "连续进入第一方阵", "nomination": "单位推荐"}
# scoring.pacesetters' reasons, as the unit that nominated someone reads them
REFUSALS = {
    "unknown person": "不在本期花名册",
    "not graded": "考核月数不足，未定等次",
    "vetoed": "本期被一票否决",
    "barred from honours": "本期被取消评先评优资格",
    "already a pacesetter by rank": "已按排名当选",
    "already a pacesetter by first-tier streak": "已因连续进入第一方阵当选",
    "duplicate": "重复推荐",
    "over the unit's cap": "超出本单位推荐名额",
}
FIELDS = {
    "present": "参评",
    "unit_id": "单位",
    "category": "人员类别",
    "score": "得分",
    "rank_in_scope": "排名",
    "grade": "等次",
    "veto": "一票否决",
    "pacesetter": "绩效标兵",
    "red_flag": "流动红旗",
    "amount_cents": "奖金",
}
SOURCE_NAMES = ("roster", "attendance", "cases", "surveys", "adjustments", "nominations")
SOURCES = {"roster": "人员名册", "attendance": "考勤", "cases": "案件", "surveys": "民主测评"}
SOURCES |= {"adjustments": "加减分登记", "nominations": "标兵推荐"}
CN_QUARTER = {"1": "一", "2": "二", "3": "三", "4": "四"}


# what a month's result lacks that a period's has (a month closed for monthly pacesetters has
# some of it)
RESULT_DEFAULTS = {
    "grade": None,
    "pacesetter": False,
    "pacesetter_route": None,
    "placed_by_tiebreak": False,
    "veto": False,
}


def label(what: str) -> str:
    """2026-03 → 2026年3月; 2026-Q1 → 2026年第一季度; 2026-H1 → 2026年上半年; 2026 → 2026年度."""
    kind, months = parse_period(what)
    year = what[:4]
    if kind == "month":
        return f"{year}年{int(what[5:7])}月"
    if kind == "quarter":
        return f"{year}年第{CN_QUARTER[what[-1]]}季度"
    if kind == "half":
        return f"{year}年{'上' if what.endswith('1') else '下'}半年"
    return f"{year}年度"


def month_label(month: str) -> str:
    return f"{int(month[5:7])}月"


@dataclass
class Marts:
    """The marts of one month or period that its documents are made of (see reports.publish)."""

    what: str
    monthly: pd.DataFrame  # mart_monthly_score, the year's months up to the last one of `what`
    indicators: pd.DataFrame  # mart_indicator_score, months of `what`
    adjustments: pd.DataFrame  # mart_adjustment, months of `what`
    surveys: pd.DataFrame  # mart_survey_result, rounds reported in or over `what`
    departments: pd.DataFrame  # mart_department_score, months of `what`
    quarantine: pd.DataFrame  # month, source, reason, rows
    period: pd.DataFrame | None = None  # mart_period_score of `what` (a period, or monthly setters)
    bonus: pd.DataFrame | None = None  # mart_bonus_allocation of `what`
    refused: pd.DataFrame | None = None  # mart_nomination_refused of `what`
    roster: pd.DataFrame = field(default_factory=pd.DataFrame)  # the people's last roster rows

    @property
    def months(self) -> list[str]:
        return parse_period(self.what)[1]


@dataclass(frozen=True)
class Stage:
    """Which publication a document belongs to."""

    stage: str  # notify | final
    revision: int
    published_on: dt.date
    appeal_deadline: dt.date | None

    @property
    def draft(self) -> bool:
        return self.stage == "notify"


def _records(frame: pd.DataFrame | None) -> list[dict[str, Any]]:
    if frame is None or frame.empty:
        return []
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def _by(frame: pd.DataFrame | None, key: str) -> dict[Any, list[dict[str, Any]]]:
    """Rows grouped by `key` in one pass, each group in frame order."""
    out: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for row in _records(frame):
        out[row[key]].append(row)
    return out


def _runs(frame: pd.DataFrame, keys: list[str]) -> pd.Series:
    """In a frame sorted so that equal `keys` are adjacent: on the first row of each run of
    equal keys the run's length, 0 on the others (the rowspan of a merged cell)."""
    if frame.empty:
        return pd.Series(0, index=frame.index, dtype="int64")
    # a missing key differs from its neighbours (nullable dtypes give NA, not True, for it)
    start = frame[keys].ne(frame[keys].shift()).fillna(True).astype(bool).any(axis=1)
    run = start.cumsum()
    return run.map(run.value_counts()).where(start, 0).astype("int64")


def _names(scheme: Scheme) -> dict[str, dict[str, str]]:
    grades = {g.grade: g.name or g.grade for g in scheme.grading.grades} if scheme.grading else {}
    return {
        "category": {k: v or k for k, v in scheme.categories.items()},
        "grade": grades,
        "component": {c.id: c.name or c.id for c in scheme.components},
        "indicator": {
            (c.id, i.id): i.name or i.id for c in scheme.components for i in c.indicators
        },
        "rule": {a.rule: a.name or a.rule for a in scheme.adjustments},
        # a rate (出勤率, 服判息诉率) reads as a percentage: its measure's name says it is one
        "rate": {
            (c.id, i.id): (i.measure or "").endswith("_rate")
            for c in scheme.components
            for i in c.indicators
        },
    }


def change_rows(changes: pd.DataFrame, names: dict[str, dict[str, str]]) -> list[dict[str, Any]]:
    """What changed, in words: field, before, after (scores as numbers, the rest as text)."""

    def say(field_: str, value: Any) -> Any:
        if value is None or (isinstance(value, float) and pd.isna(value)):
            return "—"
        if field_ in ("veto", "pacesetter", "red_flag", "present"):
            return "是" if value else "否"
        if field_ == "grade":
            return names["grade"].get(value, value)
        if field_ == "category":
            return names["category"].get(value, value)
        if field_ == "amount_cents":
            return f"¥{int(value) / 100:,.2f}"
        if field_ == "score":
            return f"{float(value):.2f}"
        return str(value)

    return [
        {
            "person_id": r["person_id"],
            "name": r["name"],
            "field": FIELDS.get(r["field"], r["field"]),
            "before": say(r["field"], r["before"]),
            "after": say(r["field"], r["after"]),
        }
        for r in _records(changes)
    ]


def _header(scheme: Scheme, marts: Marts, stage: Stage) -> dict[str, Any]:
    kind, _ = parse_period(marts.what)
    names = _names(scheme)
    return {
        "grade_names": names["grade"],
        "category_names": names["category"],
        "scheme": {"id": scheme.id, "name": scheme.name},
        "what": marts.what,
        "label": label(marts.what),
        "kind": kind,
        "stage": stage.stage,
        "draft": stage.draft,
        "revision": stage.revision,
        "published_on": stage.published_on,
        "appeal_deadline": stage.appeal_deadline,
    }


def _share(weight: float) -> str:
    return f"{weight * 100:g}%"


def scoring_method(scheme: Scheme, kind: str, category: str) -> str:
    """How a period score of `kind` is made for `category`, as a notice writes it, so the score
    can be followed from the monthly totals the notice shows."""
    rules = scheme.period_rules(kind)
    names = _names(scheme)["component"]
    parts = [(names.get(c, c), rules.weight_for(c, category)) for c in rules.components]
    parts = [(n, w) for n, w in parts if w > 0]
    summed = rules.adjustments == "sum"
    text = "各月月度总分（不含加减分）的平均值" if summed else "各月月度总分的平均值"
    rest = 1.0 - sum(w for _, w in parts)
    if parts:
        terms = [f"{text} × {_share(rest)}"] if rest > 1e-9 else []
        text = " + ".join(terms + [f"{n} × {_share(w)}" for n, w in parts])
    if summed:
        text += " + 本期加减分合计"
    if parts:
        text += "（无测评结果的项目，其权重计入各月平均值）"
    return text


def _method(text: str, summed: bool, result: dict[str, Any], months: list[dict[str, Any]]) -> dict:
    """The period score's making (`text`, scoring_method's) and the figures it starts from, as
    the person's notice shows them: the mean monthly total, or where adjustments add up over the
    period (`summed`), the mean without them and their sum."""
    adjustments = [m["adjustment_total"] for m in months]
    base = result.get("mean_monthly")
    if summed and months:
        base = sum(m["total_score"] - a for m, a in zip(months, adjustments, strict=True))
        base /= len(months)
    return {
        "text": text,
        "summed": summed,
        "base": base,
        "points": sum(adjustments) if summed else None,
    }


def _results(marts: Marts, scheme: Scheme, kind: str, from_period: list[str]) -> pd.DataFrame:
    """Each person's result of `what`: the period's, or the last month's, which takes the
    `from_period` columns of a month closed as a pacesetter period; with the size of each
    person's grading scope."""
    if kind != "month" and marts.period is not None:
        results = marts.period.rename(columns={"period_score": "score"})
    else:
        results = marts.monthly[marts.monthly["month"] == marts.months[-1]].rename(
            columns={"total_score": "score"}
        )
        if marts.period is not None:
            extra = marts.period[["person_id", *from_period]]
            results = results.merge(extra, on="person_id", how="left")
    return results.assign(scope_size=_scope_sizes(results, scheme))


def _ranked_among(people: pd.DataFrame) -> int | None:
    """How many are ranked in the scope of a unit's people of one category, where that scope is
    wider than the unit (grading by category across the scheme); None where it is the unit."""
    sizes = people["scope_size"].dropna()
    here = int(people["rank_in_scope"].notna().sum())
    return int(sizes.max()) if len(sizes) and sizes.max() > here else None


def _scope_sizes(results: pd.DataFrame, scheme: Scheme) -> pd.Series:
    """How many people are ranked in each person's grading scope (a count, no one's details)."""
    scope = ["category"]
    if scheme.grading is not None and scheme.grading.scope == "unit_category":
        scope = ["unit_id", "category"]
    ranked = results["rank_in_scope"].notna()
    return results.groupby(scope)["rank_in_scope"].transform("count").where(ranked)


SUITES = Path(__file__).resolve().parent.parent / "expectations"


@functools.cache
def _reasons_of(source: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A source's fixed rule texts (its suite's reasons that quote nothing) and its columns
    (whose unreadable values are quoted as `column: '<cell>' …`)."""
    from etl.sources import column_names

    path = SUITES / f"{source}.json"
    suite = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    fixed = tuple(
        e["meta"]["reason"]
        for e in suite.get("expectations", [])
        if e.get("meta", {}).get("reason") and not e["meta"].get("reason_from_values")
    )
    return fixed, tuple(column_names(source)) if source in SOURCE_NAMES else ()


def _reason_labels(source: str, reason: str) -> list[str]:
    """What a quarantine reason says, in words that quote no cell: the rule texts it contains
    and the columns whose values could not be read."""
    fixed, columns = _reasons_of(source)
    labels = [f for f in fixed if f in reason]
    labels += [
        f"{c}: 取值无法识别或不合规"
        for c in columns
        if re.search(rf"(?:^|; ){re.escape(c)}: '", reason)
    ]
    return labels or ["其他原因（详见校验报告）"]


def quality_rows(quarantine: pd.DataFrame) -> pd.DataFrame:
    """Rows set aside per month, source and reason, the reasons in words that quote no cell: a
    bulletin goes to one unit's leaders, and a quarantined cell may be another unit's data. A
    row with two reasons counts under both."""
    if quarantine.empty:
        return pd.DataFrame(columns=["month", "source", "reason", "rows"])
    labelled = quarantine.assign(
        reason=[
            _reason_labels(src, str(r))
            for src, r in zip(quarantine["source"], quarantine["reason"], strict=True)
        ]
    ).explode("reason")
    return (
        labelled.groupby(["month", "source", "reason"], as_index=False)["rows"]
        .sum()
        .sort_values(["month", "source", "reason"], ignore_index=True)
    )


def _unit_trend(monthly: pd.DataFrame, unit_id: str) -> list[dict[str, Any]]:
    rows = monthly[monthly["unit_id"] == unit_id]
    trend = rows.groupby("month")["total_score"].agg(["mean", "count"]).reset_index()
    return [
        {"month": m, "label": month_label(m), "mean": float(v), "people": int(n)}
        for m, v, n in trend.itertuples(index=False)
    ]


def _over_period(indicators: pd.DataFrame) -> pd.DataFrame:
    """A period notice shows each indicator once: the months it was assessed in, the mean actual
    value of the months with a basis, the mean score (each month's own rows are in that month's
    notice, and the period score is the mean of the monthly totals, not of these)."""
    rows = indicators.assign(with_basis=~indicators["no_basis"].astype(bool))
    out = (
        rows.groupby(["person_id", "component_id", "indicator_id"], sort=True)
        .agg(
            months=("month", "size"),
            basis_months=("with_basis", "sum"),
            actual=("actual", "mean"),
            target=("target", "last"),
            points=("points", "last"),
            score=("score", "mean"),
        )
        .reset_index()
    )
    out["no_basis"] = out["basis_months"].eq(0)
    out["month"] = None
    return out


def bulletin_contexts(
    scheme: Scheme,
    marts: Marts,
    stage: Stage,
    changes: pd.DataFrame,
    links: dict[str, dict[str, str]] | None = None,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(unit_id, context) per unit of the month or period. `changes` are the corrections since
    the last final publication (empty for the first); `links` the unit's bonus table URLs."""
    names = _names(scheme)
    header = _header(scheme, marts, stage)
    results = _results(marts, scheme, header["kind"], ["pacesetter", "pacesetter_route"])
    results = results.sort_values(["category", "rank_in_scope", "person_id"], na_position="last")
    units = marts.roster.drop_duplicates("unit_id").set_index("unit_id")["unit_name"]
    depts = marts.roster.drop_duplicates("dept_id").set_index("dept_id")["dept_name"]
    flags = marts.monthly[marts.monthly["month"].isin(marts.months) & marts.monthly["red_flag"]]
    dept_flags = marts.departments[marts.departments["red_flag"]]
    bonus_units = set() if marts.bonus is None else set(marts.bonus["unit_id"])
    by_person_changes = (
        changes
        if "unit_id" in changes.columns
        else changes.merge(results[["person_id", "unit_id"]], on="person_id", how="left")
    )
    quality = _records(quality_rows(marts.quarantine))
    for q in quality:
        q["source_name"] = SOURCES.get(q["source"], q["source"])
    refused = marts.refused if marts.refused is not None else pd.DataFrame(columns=["unit_id"])
    who = dict(zip(marts.roster["person_id"], marts.roster["name"], strict=True))
    grades = list(names["grade"].items())
    for unit_id, rows in results.groupby("unit_id", sort=True):
        categories = []
        for cat, people in rows.groupby("category", sort=False):
            categories.append(
                {
                    "id": cat,
                    "name": names["category"].get(cat, cat),
                    # ranked among the scheme's whole category, not the unit's: say so
                    "ranked_among": _ranked_among(people),
                    "rows": [
                        r | {"dept_name": depts.get(r["dept_id"], r["dept_id"])}
                        for r in _records(people)
                    ],
                }
            )
        grade_table = None
        if "grade" in rows and rows["grade"].notna().any():
            counts = rows.groupby(["category", "grade"]).size()
            graded = rows.groupby("category")["grade"].count()
            grade_table = {
                "grades": [n for _, n in grades],
                "rows": [
                    {
                        "category": names["category"].get(c["id"], c["id"]),
                        "counts": [int(counts.get((c["id"], g), 0)) for g, _ in grades],
                        "not_graded": len(c["rows"]) - int(graded.get(c["id"], 0)),
                        "total": len(c["rows"]),
                    }
                    for c in categories
                ],
            }
        setters = []
        if "pacesetter" in rows:
            picked = rows[rows["pacesetter"].fillna(False).astype(bool)]
            setters = [
                r
                | {
                    "route_name": ROUTES.get(r["pacesetter_route"], r["pacesetter_route"]),
                    "category_name": names["category"].get(r["category"], r["category"]),
                }
                for r in _records(picked)
            ]
        people = set(rows["person_id"])
        unit_flags = flags[flags["person_id"].isin(people)]
        ctx = header | {
            "unit": {"id": unit_id, "name": units.get(unit_id, unit_id)},
            "categories": categories,
            "grade_table": grade_table,
            "pacesetters": setters,
            "red_flags": [
                r | {"month_label": month_label(r["month"])}
                for r in _records(unit_flags.sort_values(["month", "category", "person_id"]))
            ],
            "department_flags": [
                r
                | {
                    "month_label": month_label(r["month"]),
                    "dept_name": depts.get(r["dept_id"], r["dept_id"]),
                }
                for r in _records(dept_flags[dept_flags["dept_id"].isin(set(rows["dept_id"]))])
            ],
            "trend": _unit_trend(marts.monthly, unit_id),
            "scores": [float(s) for s in rows["score"].dropna()],
            "quality": quality,
            "refused": [
                n
                | {
                    "name": who.get(n["person_id"], n["person_id"]),
                    "month_label": month_label(n["month"]) if n["month"] else None,
                    "reason_name": REFUSALS.get(n["reason_refused"], n["reason_refused"]),
                }
                for n in _records(refused[refused["unit_id"] == unit_id])
            ],
            "bonus": (links or {}).get(unit_id) if unit_id in bonus_units else None,
            "changes": change_rows(
                by_person_changes[by_person_changes["unit_id"] == unit_id], names
            ),
        }
        yield unit_id, ctx


def notice_contexts(
    scheme: Scheme, marts: Marts, stage: Stage, changes: pd.DataFrame
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(person_id, context) per person of the month or period: that person's rows only."""
    names = _names(scheme)
    header = _header(scheme, marts, stage)
    kind = header["kind"]
    months = marts.months
    monthly = marts.monthly[
        marts.monthly["month"].isin(months)
        if kind != "month"
        else marts.monthly["month"] <= months[-1]
    ]
    monthly = monthly.sort_values(["person_id", "month"])
    results = _results(marts, scheme, kind, ["grade", "pacesetter", "pacesetter_route"])
    # once per category, not per person
    summed = kind != "month" and scheme.period_rules(kind).adjustments == "sum"
    methods = (
        {}
        if kind == "month"
        else {c: scoring_method(scheme, kind, c) for c in results["category"].unique()}
    )
    bonus = (
        marts.bonus.groupby("person_id")["amount_cents"].sum()
        if marts.bonus is not None and len(marts.bonus)
        else pd.Series(dtype="int64")
    )
    roster = marts.roster.set_index("person_id")
    ind = marts.indicators.sort_values(["person_id", "month", "component_id", "indicator_id"])
    if kind != "month":
        ind = _over_period(ind)
    # 考核项目 is one merged cell over a component's indicators
    ind = ind.assign(
        component_rows=_runs(ind, ["person_id", "component_id"] + ["month"] * (kind == "month"))
    )
    adj = marts.adjustments.sort_values(["person_id", "month", "source_file", "source_line"])
    sur = marts.surveys.sort_values(["person_id", "survey_period", "component_id", "relation"])
    sur = sur.assign(
        round_rows=_runs(sur, ["person_id", "survey_period"]),
        component_rows=_runs(sur, ["person_id", "survey_period", "component_id"]),
    )
    per_month, per_ind = _by(monthly, "person_id"), _by(ind, "person_id")
    per_adj, per_sur = _by(adj, "person_id"), _by(sur, "person_id")
    per_change = defaultdict(list)
    for row in change_rows(changes, names):
        per_change[row["person_id"]].append(row)
    for r in _records(results.sort_values("person_id")):
        pid = r["person_id"]
        person = roster.loc[pid] if pid in roster.index else None
        trend, previous = [], None
        for m in per_month.get(pid, []):
            total = m["total_score"]
            trend.append(
                m
                | {
                    "label": month_label(m["month"]),
                    # as printed: the change between the two totals rounded to 2 decimals
                    "delta": None
                    if previous is None
                    else float(half_up(total, 2) - half_up(previous, 2)),
                }
            )
            previous = total
        indicators = [
            i
            | {
                "month_label": month_label(i["month"]) if i["month"] else None,
                "component_name": names["component"].get(i["component_id"], i["component_id"]),
                "indicator_name": names["indicator"].get(
                    (i["component_id"], i["indicator_id"]), i["indicator_id"]
                ),
                "rate": names["rate"].get((i["component_id"], i["indicator_id"]), False),
            }
            for i in per_ind.get(pid, [])
        ]
        adjustments = [
            a
            | {
                "month_label": month_label(a["month"]),
                "rule_name": names["rule"].get(a["rule"], a["rule"]),
            }
            for a in per_adj.get(pid, [])
        ]
        surveys = [
            {
                "round": s["survey_period"],
                "round_label": label(s["survey_period"]),
                "round_rows": s["round_rows"],
                "component_rows": s["component_rows"],
                "component_name": names["component"].get(s["component_id"], s["component_id"]),
                "relation_name": RELATIONS.get(s["relation"], s["relation"]),
                "suppressed": bool(s["suppressed"]),
                # a suppressed group shows neither score nor count: nothing that narrows raters
                "score": None if s["suppressed"] else s["score"],
                "score_raw": None if s["suppressed"] else s["score_raw"],
                "corrected": (not s["suppressed"]) and s["score"] != s["score_raw"],
            }
            for s in per_sur.get(pid, [])
        ]
        ctx = header | {
            "person": {
                "id": pid,
                "name": r["name"],
                "unit_name": None if person is None else person["unit_name"],
                "dept_name": None if person is None else person["dept_name"],
                "category_name": names["category"].get(r["category"], r["category"]),
            },
            "result": RESULT_DEFAULTS
            | r
            | {
                "grade_name": names["grade"].get(r.get("grade"), r.get("grade")),
                "route_name": ROUTES.get(r.get("pacesetter_route"), r.get("pacesetter_route")),
            },
            "months": trend,
            # columns of the month table shown only where they hold something for this person
            "with_adjustments": bool(adjustments) or any(m["adjustment_total"] for m in trend),
            "with_red_flags": any(m["red_flag"] for m in trend),
            "indicators": indicators,
            "adjustments": adjustments,
            "surveys": surveys,
            "bonus_cents": None if pid not in bonus.index else int(bonus[pid]),
            "changes": per_change.get(pid, []),
            "method": None
            if kind == "month"
            else _method(methods[r["category"]], summed, r, trend),
        }
        yield pid, ctx
