"""Validation of a month's extracts: row rules, quarantine, verdict, Data Docs.

The suites in `expectations/*.json` are the one definition of the row rules. Great Expectations runs
them for the operator's report (Data Docs); the same suites are evaluated here vectorised to find
*every* failing row, because GX returns only samples and building complete results is slow at a
city's scale. Rules that span columns or tables (a person in this month's roster, a date inside the
month, points that fit the rule) are computed into `_...` flag columns the suites then check.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from etl.coerce import coerce
from etl.read import FILE, LINE, ROW_ERROR, UnreadableFile, concat, to_frame
from etl.sources import REQUIRED_SOURCES, SOURCES
from scoring.scheme import Scheme

SUITE_DIR = Path(__file__).resolve().parent.parent / "expectations"
REASON = "_reason"


@dataclass
class SourceReport:
    source: str
    status: str = "accepted"  # accepted | quarantined | rejected | absent
    files: list[dict[str, Any]] = field(default_factory=list)
    rows_in: int = 0
    rows_quarantined: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    examples: list[dict[str, Any]] = field(default_factory=list)
    gx_success: bool | None = None  # the GX checkpoint's verdict on the suite, for the report


def load_suite(source: str) -> dict[str, Any]:
    return json.loads((SUITE_DIR / f"{source}.json").read_text(encoding="utf-8"))


def suite_columns(suite: dict[str, Any]) -> list[str]:
    """The columns a suite's expectations name: all that GX needs to see of a table."""
    named = {e["kwargs"].get("column") for e in suite["expectations"]}
    named |= {c for e in suite["expectations"] for c in e["kwargs"].get("column_list", [])}
    return sorted(named - {None})


def suite_parameters(scheme: Scheme) -> dict[str, list]:
    """The scheme's value sets that the suites refer to as `$PARAMETER`."""
    return {
        "categories": sorted(scheme.category_id()),
        "rules": sorted(scheme.rules()),
        "items": sorted(scheme.survey_items()),
    }


# --- derived flags: rules across columns and tables ---------------------------------------------
def _null_or(col: pd.Series, test: Callable[[pd.Series], Any]) -> pd.Series:
    """True where a cell is null or `test` holds for its value.

    `test` gets the distinct values (an object Series) and runs once per value, spread back by
    code: the text columns of a typed table are Categoricals (etl.read), and a month holds each
    person id, date or panel ~20-30 times.
    """
    cat = col if isinstance(col.dtype, pd.CategoricalDtype) else col.astype("category")
    holds = np.asarray(test(pd.Series(cat.cat.categories, dtype=object)), dtype=bool)
    return pd.Series(np.append(holds, True)[cat.cat.codes.to_numpy()], index=col.index)


def _in_month(dates: pd.Series, month: str) -> pd.Series:
    return _null_or(dates, lambda d: d.astype(str).str.startswith(month + "-"))


def _known(ids: pd.Series, people: pd.Index) -> pd.Series:
    return _null_or(ids, lambda i: i.isin(people))


# what str.strip() strips: the characters for which str.isspace() holds
_WHITESPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680" + "".join(
    map(chr, [*range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F, 0x3000])
)


def _members_known(panels: pd.Series, people: pd.Index) -> np.ndarray:
    """Per `;`-separated panel: every member (stripped; '' is no member) in `people`.

    In Arrow, not per member in Python: a city's month has ~60,000 distinct panels.
    """
    lists = pc.split_pattern(pa.array(panels.to_numpy(dtype=object), pa.large_string()), ";")
    members = pc.utf8_trim(pc.list_flatten(lists), characters=_WHITESPACE)
    known = pa.array(people.to_numpy(dtype=object), pa.large_string())
    ok = pc.or_(pc.equal(members, ""), pc.is_in(members, value_set=known))
    out = np.ones(len(panels), dtype=bool)
    out[pc.list_parent_indices(lists).to_numpy()[~ok.to_numpy(zero_copy_only=False)]] = False
    return out


def _not_before(later: pd.Series, earlier: pd.Series) -> pd.Series:
    """True unless both dates are given and `later` is before `earlier` (ISO sorts as dates)."""
    return later.isna() | earlier.isna() | (later.astype(str) >= earlier.astype(str))


def add_flags(
    source: str, t: pd.DataFrame, month: str, people: pd.Index, scheme: Scheme
) -> pd.DataFrame:
    if source == "roster":
        t["_active_order"] = _not_before(t["active_to"], t["active_from"])
    elif source in ("attendance", "adjustments", "nominations"):
        t["_person_known"] = _known(t["person_id"], people)
        if "date" in t:
            t["_date_in_month"] = _in_month(t["date"], month)
    elif source == "surveys":
        t["_ratee_known"] = _known(t["ratee_id"], people)
    elif source == "cases":
        t["_judge_known"] = _known(t["judge_id"], people)
        t["_panel_known"] = _null_or(t["panel_ids"], lambda p: _members_known(p, people))
        t["_closed_after_filed"] = _not_before(t["closed_on"], t["filed_on"])
        t["_outcome_when_closed"] = t["closed_on"].isna() | t["outcome"].notna()
        t["_appeal_date_given"] = (
            ~t["appeal_outcome"].isin(["reversed", "remanded"]) | t["appeal_decided_on"].notna()
        )
    if source == "adjustments":
        t["_points_fit_rule"] = _points_fit(t, scheme)
    return t


def _points_fit(t: pd.DataFrame, scheme: Scheme) -> pd.Series:
    """A range rule needs points inside it; a fixed rule takes none or its own; a rule without
    points (a veto, or one that only bars from honours) none."""
    rules = scheme.rules()
    rule = t["rule"].astype(object)  # a Categorical would map to a Categorical
    lo = rule.map({k: r.range[0] for k, r in rules.items() if r.range})
    hi = rule.map({k: r.range[1] for k, r in rules.items() if r.range})
    fixed = rule.map(
        {k: r.points for k, r in rules.items() if r.points is not None and not r.range}
    ).astype(float)
    pointless = {k: r.points is None for k, r in rules.items()}
    veto = rule.map(pointless).fillna(False).astype(bool)
    p = t["points"]
    is_range = lo.notna()
    ok_range = p.notna() & (p.round(6) >= lo.round(6)) & (p.round(6) <= hi.round(6))
    ok_fixed = p.isna() | (p.round(6) == fixed.round(6))
    unknown = ~rule.isin(list(rules))  # reported by the rule's own expectation
    return unknown | (is_range & ok_range) | (fixed.notna() & ok_fixed) | (veto & p.isna())


# --- the suites, evaluated vectorised ------------------------------------------------------------
def _param(v: Any, params: dict[str, Any]) -> Any:
    return params[v["$PARAMETER"]] if isinstance(v, dict) and "$PARAMETER" in v else v


def failing_rows(exp: dict[str, Any], t: pd.DataFrame, params: dict[str, Any]) -> pd.Series:
    """True where a row breaks one expectation. Nulls pass every rule but the null rules, as in GX;
    of a duplicated key every row after the first fails (sources.md)."""
    kw = {k: _param(v, params) for k, v in exp["kwargs"].items()}
    kind = exp["type"]
    if kind == "expect_column_values_to_not_be_null":
        return t[kw["column"]].isna()
    if kind == "expect_column_values_to_be_null":
        return t[kw["column"]].notna()
    if kind == "expect_column_values_to_be_unique":
        col = t[kw["column"]]
        return col.notna() & col.duplicated(keep="first")
    if kind == "expect_compound_columns_to_be_unique":
        cols = t[kw["column_list"]]
        return cols.notna().all(axis=1) & cols.duplicated(keep="first")
    col = t[kw["column"]]
    present = col.notna()
    if kind == "expect_column_values_to_be_in_set":
        return present & ~col.isin(kw["value_set"])
    if kind == "expect_column_values_to_match_regex":
        return ~_null_or(col, lambda v: v.astype(str).str.contains(kw["regex"], regex=True))
    if kind == "expect_column_values_to_be_between":
        v = pd.to_numeric(col, errors="coerce").round(6)
        bad = pd.Series(False, index=t.index)
        if kw.get("min_value") is not None:
            bad |= v <= kw["min_value"] if kw.get("strict_min") else v < kw["min_value"]
        if kw.get("max_value") is not None:
            bad |= v >= kw["max_value"] if kw.get("strict_max") else v > kw["max_value"]
        return present & bad
    raise ValueError(f"expectation type {kind} has no row evaluation in kaohe")


def row_reasons(suite: dict[str, Any], t: pd.DataFrame, params: dict[str, Any]) -> pd.Series:
    """Every failed rule of a row, joined: '' for a clean row. Texts are built for failing rows
    only: a month of a city has a few hundred of them among a million."""
    reasons = np.full(len(t), "", dtype=object)
    for exp in suite["expectations"]:
        rows = np.flatnonzero(failing_rows(exp, t, params).to_numpy(dtype=bool))
        if not len(rows):
            continue
        meta = exp.get("meta", {})
        if meta.get("reason_from_values"):
            text = t[exp["kwargs"]["column"]].iloc[rows].astype(str).to_numpy(dtype=object)
        else:
            text = np.full(len(rows), meta["reason"], dtype=object)
        had = reasons[rows]
        reasons[rows] = np.where(had == "", text, had + "; " + text)
    return pd.Series(reasons, index=t.index, dtype=object)


# --- one month ------------------------------------------------------------------------------------
@dataclass
class MonthValidation:
    reports: dict[str, SourceReport]
    accepted: dict[str, pd.DataFrame]  # typed rows that passed, per source
    quarantine: pd.DataFrame  # source, file, line, reason, raw

    @property
    def rejected(self) -> list[SourceReport]:
        return [r for r in self.reports.values() if r.status == "rejected"]

    def summary(self) -> dict[str, Any]:
        """Per source, what the run's next tasks are told (an XCom, kept in Airflow's database):
        counts, reasons and problems, never a row's cells: the examples stay in the validation
        report (summary.json) and the rows in `mart_quarantine`."""
        return {
            s: {k: v for k, v in asdict(r).items() if k != "examples"}
            for s, r in self.reports.items()
        }

    def files_frame(self) -> pd.DataFrame:
        """The month's files with their counts, as `loaded_file` records them."""
        cols = ["source", "name", "sha256", "rows_in", "rows_quarantined"]
        rows = [
            (s, f["name"], f["sha256"], f["rows"], f["quarantined"])
            for s, r in self.reports.items()
            for f in r.files
        ]
        return pd.DataFrame(rows, columns=cols)


def validate_month(
    files: list[dict[str, Any]],
    month: str,
    scheme: Scheme,
    secret: bytes,
    docs_dir: Path | None = None,
) -> MonthValidation:
    """Validate the landed files of a month (`files`: dicts with source, name, sha256, path)."""
    reports = {s: SourceReport(s) for s in SOURCES}
    accepted: dict[str, pd.DataFrame] = {}
    typed_all: dict[str, pd.DataFrame] = {}
    quarantined: list[pd.DataFrame] = []
    people = pd.Index([])
    params = suite_parameters(scheme)
    levels = scheme.survey_levels()
    for source in SOURCES:
        rep = reports[source]
        mine = sorted((f for f in files if f["source"] == source), key=lambda f: f["name"])
        if not mine:
            rep.status = "absent"
            if source in REQUIRED_SOURCES:
                rep.status = "rejected"
                rep.problems.append(f"no {source} extract for {month}: it is required every month")
            continue
        frames = []
        for f in mine:
            info = {"name": f["name"], "sha256": f["sha256"], "rows": 0, "quarantined": 0}
            rep.files.append(info)
            try:
                frame, missing = to_frame(source, f["name"], Path(f["path"]).read_bytes())
            except UnreadableFile as exc:
                rep.problems.append(f"{f['name']}: cannot be read: {exc}")
                continue
            if missing:
                rep.problems.append(f"{f['name']}: required column missing: {', '.join(missing)}")
                continue
            info["rows"] = len(frame)
            frames.append(frame)
        if rep.problems:
            rep.status = "rejected"
            continue
        raw = concat(frames)
        typed = add_flags(source, coerce(source, raw, levels, secret), month, people, scheme)
        reasons = row_reasons(load_suite(source), typed, params)
        bad = reasons.ne("")
        rep.rows_in, rep.rows_quarantined = len(raw), int(bad.sum())
        rep.reasons = {
            k: int(v)
            for k, v in reasons[bad].str.split("; ").explode().value_counts().sort_index().items()
        }
        per_file = raw.loc[bad, FILE].value_counts()
        for info in rep.files:
            info["quarantined"] = int(per_file.get(info["name"], 0))
        if rep.rows_in == 0 and source in REQUIRED_SOURCES:
            rep.problems.append(f"{', '.join(f['name'] for f in mine)}: no data rows")
        share = scheme.max_quarantine_share
        if rep.rows_in and rep.rows_quarantined / rep.rows_in > share + 1e-12:
            where = ", ".join(
                f"{i['name']} ({i['quarantined']})" for i in rep.files if i["quarantined"]
            )
            rep.problems.append(
                f"{where}: {rep.rows_quarantined} of {rep.rows_in} rows break a row rule, more "
                f"than the scheme's max_quarantine_share {share:.0%}; most common: "
                + "; ".join(
                    f"{k} ×{v}" for k, v in sorted(rep.reasons.items(), key=lambda kv: -kv[1])[:3]
                )
            )
        q = _quarantine_rows(source, raw[bad], reasons[bad])
        rep.examples = q.head(5).to_dict("records")
        quarantined.append(q)
        typed_all[source] = typed
        rep.status = "rejected" if rep.problems else ("quarantined" if bad.any() else "accepted")
        accepted[source] = _clean(source, typed[~bad] if bad.any() else typed, scheme)
        if source == "roster":
            people = pd.Index(accepted["roster"]["person_id"].unique())
    if docs_dir is not None:
        run_data_docs(typed_all, params, docs_dir, reports)
    cols = ["source", "file", "line", "reason", "raw"]
    quarantine = (
        pd.concat(quarantined, ignore_index=True) if quarantined else pd.DataFrame(columns=cols)
    )
    return MonthValidation(reports, accepted, quarantine[cols])


def _quarantine_rows(source: str, raw: pd.DataFrame, reasons: pd.Series) -> pd.DataFrame:
    """The rows set aside, as delivered (rater keys never: they stay in the landing zone; cells
    beyond the header are quoted in the reason)."""
    hidden = [LINE, FILE, ROW_ERROR] + (["rater_key"] if source == "surveys" else [])
    shown = raw.drop(columns=hidden)
    return pd.DataFrame(
        {
            "source": source,
            "file": raw[FILE],
            "line": raw[LINE].astype(int),
            "reason": reasons,
            "raw": [json.dumps(r, ensure_ascii=False) for r in shown.to_dict("records")],
        }
    )


def _objects(col: pd.Series) -> pd.Series:
    """A Categorical text column as the warehouse takes text: object, None where null."""
    values = np.append(col.cat.categories.to_numpy(dtype=object), None)
    return pd.Series(values[col.cat.codes.to_numpy()], index=col.index, dtype=object)


def _strings(col: pd.Series) -> pd.Series:
    """A Categorical text column as pandas' `str` (Arrow), NaN where null: the distinct texts are
    converted once and taken by code in Arrow, not converted cell by cell."""
    codes = col.cat.codes.to_numpy()
    texts = pa.array(col.cat.categories.to_numpy(dtype=object), type=pa.large_string())
    taken = texts.take(pa.array(codes, mask=codes < 0))
    return pd.Series(pd.array(taken, dtype=pd.StringDtype("pyarrow", np.nan)), index=col.index)


def _clean(source: str, t: pd.DataFrame, scheme: Scheme) -> pd.DataFrame:
    """Accepted rows in warehouse shape: canonical codes, no check columns, text as object columns
    (rater hashes as pandas' str)."""
    t = t.drop(columns=[c for c in t.columns if c.startswith("_") and c not in (LINE, FILE)])
    t = t.rename(columns={LINE: "source_line", FILE: "source_file"})
    for c in t.columns:
        if isinstance(t[c].dtype, pd.CategoricalDtype):
            t[c] = _strings(t[c]) if c == "rater_hash" else _objects(t[c])
    if source == "roster":
        t["category"] = t["category"].map(scheme.category_id())
    for c in ("duty_filed", "duty_reviewed", "verdict_in_court", "fault", "count"):
        if c in t:
            t[c] = t[c].astype("Int64")
    return t.reset_index(drop=True)


# --- Great Expectations: the operator's report ---------------------------------------------------
def run_data_docs(
    typed: dict[str, pd.DataFrame],
    params: dict[str, Any],
    docs_dir: Path,
    reports: dict[str, SourceReport],
) -> None:
    """Run the suites with GX and build Data Docs into `docs_dir` (replaced, never accumulated)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    for name in ("great_expectations", "great_expectations.core", "tqdm"):
        logging.getLogger(name).setLevel(logging.WARNING)
    import great_expectations as gx
    from great_expectations.core.expectation_suite import ExpectationSuite
    from great_expectations.data_context.types.base import ProgressBarsConfig

    if docs_dir.exists():
        shutil.rmtree(docs_dir)
    docs_dir.mkdir(parents=True)
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    for name, site in dict(ctx.variables.data_docs_sites or {}).items():  # GX's own temp site
        shutil.rmtree(site["store_backend"]["base_directory"], ignore_errors=True)
        ctx.delete_data_docs_site(name)
    ctx.add_data_docs_site(
        site_name="kaohe",
        site_config={
            "class_name": "SiteBuilder",
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(docs_dir),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    ds = ctx.data_sources.add_or_update_pandas("kaohe")
    for source, frame in typed.items():  # the site is built once, after every source
        batch = ds.add_dataframe_asset(source).add_batch_definition_whole_dataframe("month")
        spec = load_suite(source)
        suite = ctx.suites.add_or_update(ExpectationSuite(**spec))
        vd = ctx.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=source, data=batch, suite=suite)
        )
        res = vd.run(
            batch_parameters={"dataframe": frame[suite_columns(spec)]},
            expectation_parameters=params,
            result_format="BASIC",  # counts and a sample per rule; the full lists are ours
        )
        reports[source].gx_success = bool(res.success)
    ctx.build_data_docs(site_names=["kaohe"])
    (docs_dir / "summary.json").write_text(
        json.dumps(
            {s: asdict(r) for s, r in reports.items()}, ensure_ascii=False, indent=1, default=str
        ),
        encoding="utf-8",
    )


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)
