"""The synthetic organisation: reproducible bytes, honest counts, the situations scoring needs."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
import yaml

from etl.generate import generate
from etl.sources import source_of
from etl.validate import validate_month
from scoring.scheme import SCHEME_DIR, Scheme, SchemeError, load_scheme, parse_scheme

ROOT = Path(__file__).resolve().parents[1]
SCHEME = yaml.safe_load((ROOT / "scoring" / "schemes" / "demo.yaml").read_text("utf-8"))
MONTHS = ["2026-04", "2026-05", "2026-06"]  # a quarter end and a half-year end: every source

# Chinese headers the generator writes, mapped to canonical names (sources.md)
HEADERS = {
    "工号": "person_id", "姓名": "name", "单位编码": "unit_id", "单位名称": "unit_name",
    "部门编码": "dept_id", "部门": "dept_name", "人员类别": "category",
    "岗位系数": "post_coefficient", "邮箱": "email", "入职日期": "active_from",
    "离岗日期": "active_to", "日期": "date", "考勤结果": "status", "履职填报": "duty_filed",
    "领导审阅": "duty_reviewed", "案号": "case_id", "承办部门": "dept_id", "承办法官": "judge_id",
    "合议庭成员": "panel_ids", "立案日期": "filed_on", "结案日期": "closed_on", "程序": "procedure",
    "结案方式": "outcome", "当庭宣判": "verdict_in_court", "上诉结果": "appeal_outcome",
    "二审结案日期": "appeal_decided_on", "评查过错": "fault", "事项编码": "rule", "分值": "points",
    "次数": "count", "说明": "note", "依据": "evidence",
}  # fmt: skip
STATUS_ZH = {"正常": "present", "迟到": "late", "早退": "early_leave", "旷工": "absent",
             "请假": "leave", "出差": "business_trip", "休息日": "holiday"}  # fmt: skip


def _read(path: Path) -> pd.DataFrame:
    """Every cell as text, headers canonical; the encoding is detected as the pipeline does."""
    if path.suffix == ".xlsx":
        frame = pd.read_excel(path, dtype=str, keep_default_na=False, engine="openpyxl")
    else:
        data = path.read_bytes()
        enc = "utf-8-sig" if data.startswith(b"\xef\xbb\xbf") else "utf-8"
        try:
            data.decode(enc)
        except UnicodeDecodeError:
            enc = "gb18030"
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding=enc)
    return frame.rename(columns=HEADERS)


def _source(inbox: Path, month: str, source: str) -> pd.DataFrame:
    files = sorted((inbox / month).glob(f"{source}*"))
    return pd.concat([_read(f) for f in files], ignore_index=True) if files else pd.DataFrame()


def _dates(col: pd.Series) -> pd.Series:
    """ISO, 2026/3/5, 2026年3月5日 and Excel cells read back as text, all to timestamps."""
    text = col.str.replace("年", "-").str.replace("月", "-").str.replace("日", "")
    return pd.to_datetime(text.str.replace("/", "-").str.slice(0, 10), format="mixed")


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, int]]]:
    inbox = tmp_path_factory.mktemp("inbox")
    return inbox, generate(inbox, 150, start="2026-04", months=3, seed=7)


def test_same_arguments_give_identical_bytes(tmp_path: Path) -> None:
    generate(tmp_path / "a", 80, start="2026-06", months=2, seed=3)
    generate(tmp_path / "b", 80, start="2026-06", months=2, seed=3)
    generate(tmp_path / "c", 80, start="2026-06", months=2, seed=4)
    first, second = _hashes(tmp_path / "a"), _hashes(tmp_path / "b")
    assert first == second
    assert {"2026-06/nominations.xlsx", "2026-07/adjustments.xlsx"} <= set(first)
    assert _hashes(tmp_path / "c") != first
    for book in sorted((tmp_path / "a").rglob("*.xlsx")):  # same bytes tomorrow, not only now
        with zipfile.ZipFile(book) as z:
            assert {i.date_time for i in z.infolist()} == {(2026, 1, 1, 0, 0, 0)}
            core = z.read("docProps/core.xml").decode()
        assert core.count("2026-01-01T00:00:00Z") == 2


def test_layout_and_counts_match_the_files(run: tuple[Path, dict]) -> None:
    inbox, counts = run
    assert sorted(counts) == MONTHS == sorted(p.name for p in inbox.iterdir())
    assert set(counts["2026-06"]) == {
        "roster", "attendance", "cases", "surveys", "adjustments", "nominations",
    }  # fmt: skip
    for month, per_source in counts.items():
        for source, rows in per_source.items():
            assert len(_source(inbox, month, source)) == rows, (month, source)
    assert counts["2026-04"]["roster"] == 150


def test_files_exercise_encodings_headers_and_date_styles(run: tuple[Path, dict]) -> None:
    folder = run[0] / "2026-06"
    assert (folder / "roster.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    for name in ("attendance-court.csv", "cases.csv"):
        data = (folder / name).read_bytes()
        with pytest.raises(UnicodeDecodeError):
            data.decode("utf-8")
        text = data.decode("gb18030")
        assert text.startswith("工号,日期" if name.startswith("att") else "案号,")
    court = pd.read_csv(folder / "attendance-court.csv", dtype=str, encoding="gb18030")
    assert court["日期"].str.fullmatch(r"2026/6/\d{1,2}").all()
    assert set(court["考勤结果"]) <= set(STATUS_ZH)
    office = pd.read_csv(folder / "attendance-office.csv", dtype=str)
    assert list(office.columns) == ["person_id", "date", "status", "duty_filed", "duty_reviewed"]
    assert office["date"].str.fullmatch(r"2026-06-\d\d").all()
    cases = pd.read_csv(folder / "cases.csv", dtype=str, encoding="gb18030")
    assert cases["立案日期"].str.fullmatch(r"\d{4}年\d{1,2}月\d{1,2}日").all()
    sheet = openpyxl.load_workbook(folder / "adjustments.xlsx").worksheets[0]
    assert all(row[1].is_date for row in sheet.iter_rows(min_row=2))


def test_roster_ids_categories_and_names(run: tuple[Path, dict]) -> None:
    inbox, _ = run
    ids = {str(k) for k in SCHEME["categories"]}
    names = set(SCHEME["categories"].values())
    first = _source(inbox, "2026-04", "roster")
    later = _source(inbox, "2026-05", "roster")
    assert set(first["category"]) <= names and set(later["category"]) <= ids
    assert first["person_id"].str.fullmatch(r"\d{6}").all() and first["person_id"].is_unique
    assert first["unit_id"].str.fullmatch(r"(court|office)\d\d").all()
    assert {"court01", "office01"} <= set(first["unit_id"])
    sizes = first.groupby("dept_id").size()
    assert sizes.between(5, 25).all()
    assert set(first["post_coefficient"]) <= {"0.8", "1.0", "1.2", "1.5"}
    emails = first["email"][first["email"] != ""]
    assert (emails == "p" + first.loc[emails.index, "person_id"] + "@example.gov.cn").all()

    def gbk_safe(name: str) -> bool:
        try:
            name.encode("gbk")
        except UnicodeEncodeError:
            return False
        return True

    all_names = pd.concat([_source(inbox, m, "roster")["name"] for m in MONTHS])
    assert (~all_names.map(gbk_safe)).any(), "a name that only GB18030 can encode"


def test_hires_leavers_and_transfers(run: tuple[Path, dict]) -> None:
    inbox, _ = run
    rosters = [_source(inbox, m, "roster").set_index("person_id") for m in MONTHS]
    hires = leavers = transfers = 0
    for month, before, after in zip(MONTHS[1:], rosters[:-1], rosters[1:], strict=True):
        new = after.index.difference(before.index)
        assert _dates(after.loc[new, "active_from"]).dt.strftime("%Y-%m").eq(month).all()
        hires += len(new)
        gone = before.index.difference(after.index)
        assert (before.loc[gone, "active_to"] != "").all()
        leavers += len(gone)
        both = before.index.intersection(after.index)
        transfers += (before.loc[both, "dept_id"] != after.loc[both, "dept_id"]).sum()
    assert hires >= 1 and leavers >= 1 and transfers >= 1


def test_attendance_has_one_row_per_person_and_active_day(run: tuple[Path, dict]) -> None:
    inbox, _ = run
    for month in MONTHS:
        people = _source(inbox, month, "roster").set_index("person_id")
        rows = _source(inbox, month, "attendance")
        rows["date"] = _dates(rows["date"])
        assert not rows.duplicated(["person_id", "date"]).any()
        first = pd.Timestamp(month)
        last = first + pd.offsets.MonthEnd(0)
        start = _dates(people["active_from"].replace("", month)).clip(lower=first)
        end = _dates(people["active_to"].replace("", str(last.date()))).clip(upper=last)
        expected = (end - start).dt.days + 1
        got = rows.groupby("person_id").size().reindex(people.index, fill_value=0)
        pd.testing.assert_series_equal(got, expected, check_names=False, check_dtype=False)
        assert rows["date"].between(first, last).all()


def test_duty_filing_rules_and_two_consecutive_misses(run: tuple[Path, dict]) -> None:
    inbox, _ = run
    for month in MONTHS:
        rows = _source(inbox, month, "attendance")
        rows["status"] = rows["status"].replace(STATUS_ZH)
        off = rows["status"].isin(["holiday", "leave"])
        assert (rows.loc[off, "duty_filed"] == "").all()
        assert set(rows.loc[~off, "duty_filed"]) == {"0", "1"}
        assert (rows.loc[rows["duty_filed"] != "1", "duty_reviewed"] == "").all()
        assert set(rows.loc[rows["duty_filed"] == "1", "duty_reviewed"]) == {"0", "1"}
        rows["date"] = _dates(rows["date"])
        rows = rows.sort_values(["person_id", "date"])
        miss = rows["duty_filed"] == "0"
        same = rows["person_id"] == rows["person_id"].shift()
        next_day = rows["date"] - rows["date"].shift() == pd.Timedelta(days=1)
        assert (miss & miss.shift(fill_value=False) & same & next_day).any(), month


def test_survey_round_is_unique_and_uses_the_scheme(run: tuple[Path, dict]) -> None:
    inbox, counts = run
    assert all("surveys" not in counts[m] for m in MONTHS[:2])
    rows = _source(inbox, "2026-06", "surveys")
    survey = SCHEME["components"][2]["survey"]
    assert not rows.duplicated(["survey_id", "rater_key", "ratee_id", "item"]).any()
    assert set(rows["item"]) == set(survey["items"])
    assert set(rows["relation"]) == {"self", "superior", "peer", "subordinate", "public"}
    assert (rows["period"] == "2026-Q2").all()
    assert rows["survey_id"].str.fullmatch(r"2026Q2-(court|office)\d\d").all()
    assert rows["rater_key"].str.fullmatch(r"rk-[0-9a-f]{12}").all()
    levels = rows["score"].isin(list(survey["levels"]))
    assert levels.any() and pd.to_numeric(rows.loc[~levels, "score"]).between(0, 100).all()
    roster = _source(inbox, "2026-06", "roster")
    assert set(rows["ratee_id"]) == set(roster["person_id"])
    per_person = len(rows) / len(roster)
    assert 15 <= per_person <= 40
    raters = rows.drop_duplicates(["ratee_id", "rater_key", "relation"])
    selfs = raters[raters["relation"] == "self"]
    assert selfs["ratee_id"].is_unique and len(selfs) == len(roster)


def test_adjustments_follow_the_scheme(run: tuple[Path, dict]) -> None:
    inbox, _ = run
    rules = {r["rule"]: r for r in SCHEME["adjustments"]}
    rows = pd.concat([_source(inbox, m, "adjustments").assign(month=m) for m in MONTHS])
    assert set(rows["rule"]) <= set(rules)
    points = pd.to_numeric(rows["points"].replace("", None))
    for name, rule in rules.items():
        mine = points[rows["rule"] == name]
        if isinstance(rule.get("points"), list):
            lo, hi = rule["points"]
            assert mine.notna().all() and mine.between(lo, hi).all()
        elif "points" in rule:
            assert mine.dropna().eq(rule["points"]).all()
    assert (rows["rule"] == "disciplinary").any()
    assert (_dates(rows["date"]).dt.strftime("%Y-%m") == rows["month"]).all()
    assert rows["evidence"].str.fullmatch(r".+〔2026〕\d+号").all()
    assert set(rows["count"]) <= {"1", "2", "3"}


def test_cases_are_consistent_with_the_roster(run: tuple[Path, dict]) -> None:
    inbox, _ = run
    for month in MONTHS:
        rows = _source(inbox, month, "cases")
        roster = _source(inbox, month, "roster").set_index("person_id")
        end = pd.Timestamp(month) + pd.offsets.MonthEnd(0)
        assert rows["case_id"].is_unique
        assert rows["judge_id"].isin(roster.index).all()
        assert (roster.loc[rows["judge_id"], "dept_id"].to_numpy() == rows["dept_id"]).all()
        filed = _dates(rows["filed_on"])
        closed = _dates(rows["closed_on"].replace("", None))
        assert (closed.dropna() >= filed[closed.notna()]).all() and (closed.dropna() <= end).all()
        pending = closed.isna()
        assert pending.any() and ((end - filed[pending]).dt.days > 365).any()
        assert (rows.loc[pending, "outcome"] == "").all()
        ordinary = rows["procedure"] == "普通"
        panels = rows.loc[ordinary, "panel_ids"].str.split(";")
        assert panels.map(len).eq(3).all() and panels.map(lambda p: len(set(p)) == 3).all()
        assert (panels.str[0] == rows.loc[ordinary, "judge_id"]).all()
        assert pd.Series(panels.explode()).isin(roster.index).all()
        assert (rows.loc[~ordinary, "panel_ids"] == "").all()
        assert (rows.loc[rows["fault"] == "1", "panel_ids"] != "").all()
        decided = rows["appeal_outcome"] != ""
        assert (rows.loc[decided, "closed_on"] != "").all()
        assert (_dates(rows.loc[decided, "appeal_decided_on"]) <= end).all()
    closed_now = rows[rows["closed_on"].str.startswith("2026年6月")]
    per_judge = closed_now.groupby("judge_id").size()
    assert 8 <= per_judge.mean() <= 30


def test_nominations_in_june_only(run: tuple[Path, dict]) -> None:
    inbox, counts = run
    assert "nominations" not in counts["2026-04"] and "nominations" not in counts["2026-05"]
    rows = _source(inbox, "2026-06", "nominations")
    roster = _source(inbox, "2026-06", "roster").set_index("person_id")
    assert (rows["period"] == "2026-H1").all() and rows["person_id"].isin(roster.index).all()
    per_unit = roster.loc[rows["person_id"], "unit_id"].value_counts()
    assert per_unit.between(1, 2).all() and len(per_unit) == roster["unit_id"].nunique()
    assert set(rows["approved_by"]) <= {"院党组会", "局党组会"} and (rows["reason"] != "").all()


def test_command_line_prints_the_counts(tmp_path: Path) -> None:
    args = ["--inbox", str(tmp_path / "cli"), "--people", "30", "--start", "2026-03"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "etl.generate", *args, "--months", "1", "--seed", "5"],
        capture_output=True, text=True, check=True, cwd=ROOT, env=env,
    )  # fmt: skip
    printed = json.loads(out.stdout)
    assert printed == generate(tmp_path / "api", 30, start="2026-03", months=1, seed=5)
    assert _hashes(tmp_path / "cli") == _hashes(tmp_path / "api")


# --- a scheme's own organisation ------------------------------------------------------------------
# Two schemes written here, each knob the generator reads at an unusual value: a fast-track
# category, a monthly, a quarterly and a year-end survey (with and without self ratings and
# levels, min_raters above 3), a 0.1-grid range, three veto rules, quarterly pacesetters; and an
# office with category names of its own, no veto rule and no nominations.
INLINE = {
    "inline-court": """
id: t-court
name: 测试法院
year: 2026
categories: {judge: 员额法官, fast_track: 速裁法官, assistant: 审判辅助人员, leader: 院领导}
components:
  - id: casework
    weight: {judge: 0.7, fast_track: 0.7, assistant: 0.4, leader: 0.3}
    indicators:
      - {id: closed, measure: cases.closed_count, target: 15, points: 30, coefficient: 1}
  - id: monthly_eval
    weight: {judge: 0.3, fast_track: 0.3, assistant: 0.6}
    survey:
      items: {work: 0.6, style: 0.4}
      relations: {superior: 0.6, peer: 0.4}
      min_raters: 4
  - id: quarter_eval
    survey:
      items: {de: 0.2, neng: 0.3, qin: 0.2, ji: 0.2, lian: 0.1}
      relations: {self: 0.1, superior: 0.4, peer: 0.3, subordinate: 0.2}
      levels: {好: 90, 较好: 75, 一般: 60, 差: 30}
      min_raters: 3
  - id: year_eval
    survey:
      items: {overall: 1}
      relations: {public: 0.5, superior: 0.5}
      levels: {满意: 90, 基本满意: 70, 不满意: 40}
      min_raters: 5
adjustments:
  - {rule: praise, name: 院领导表扬, points: 0.5}
  - {rule: city, name: 市级表扬, points: 1}
  - {rule: info, name: 信息采用, points: [0.1, 0.3]}
  - {rule: loss, name: 考核失分, points: [-2, -0.5]}
  - {rule: absent, name: 无故缺会, points: -0.5}
  - {rule: media, name: 媒体曝光, points: -2}
  - {rule: discipline, name: 违纪被查实, veto: true}
  - {rule: crime, name: 违法犯罪, veto: true}
  - {rule: petition, name: 引发群体性上访, veto: true}
periods:
  quarter: {components: {quarter_eval: 0.2}}
  year: {components: {year_eval: {leader: 0.3, judge: 0.1}}}
grading:
  grades: [{grade: a, share: 0.2}, {grade: b}]
pacesetters: {period: quarter, share: 0.1, nomination_cap: 0.02}
""",
    "inline-office": """
id: t-office
name: 测试机关
year: 2026
categories: {cadre: 干部, worker: 职工}
components:
  - id: duty
    weight: 1
    indicators:
      - {id: att, measure: attendance.attendance_rate, target: 1, points: 60, coefficient: 100}
  - id: eval
    survey:
      items: {de: 0.5, neng: 0.5}
      relations: {superior: 0.5, peer: 0.5}
adjustments:
  - {rule: praise, name: 局领导表扬, points: 0.5}
  - {rule: loss, name: 考核失分, points: [-1, -0.2]}
periods:
  year: {components: {eval: 0.3}}
""",
}
SCHEME_FILES = sorted(p.stem for p in SCHEME_DIR.glob("*.yaml"))
YEAR = [f"2026-{m:02d}" for m in range(1, 13)]
PERIOD_MONTHS = {"month": 1, "quarter": 3, "half": 6, "year": 12}


@pytest.fixture(scope="module", params=[*INLINE, *SCHEME_FILES])
def scheme_run(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Scheme, Path, dict[str, dict[str, int]]]:
    """A year of 150 people under each scheme: the inline ones and every file in scoring/schemes."""
    ref = request.param
    if ref in INLINE:
        scheme = parse_scheme(INLINE[ref], ref)
    else:
        try:
            scheme = load_scheme(ref)
        except SchemeError as exc:  # a file another change is still writing
            pytest.skip(f"scheme {ref} does not load: {exc}")
    inbox = tmp_path_factory.mktemp(ref)
    return scheme, inbox, generate(inbox, 150, "2026-01", 12, seed=7, scheme=scheme)


def _year_of(inbox: Path, source: str) -> pd.DataFrame:
    frames = [_source(inbox, m, source).assign(month=m) for m in YEAR]
    return pd.concat([f for f in frames if len(f.columns) > 1], ignore_index=True)


def _categories(scheme: Scheme, inbox: Path) -> pd.Series:
    """(month, person_id) -> category id, from the rosters."""
    roster = _year_of(inbox, "roster")
    cat = roster["category"].map(scheme.category_id())
    return pd.Series(cat.to_numpy(), index=pd.MultiIndex.from_frame(roster[["month", "person_id"]]))


def _cadence(scheme: Scheme, cid: str) -> str:
    c = scheme.component(cid)
    if any(c.weight_for(k) > 0 for k in scheme.categories):
        return "month"
    named = [k for k, p in scheme.periods.items() if cid in p.components]
    return "quarter" if {"quarter", "half"} & set(named) else "year"


def test_scheme_roster_uses_the_scheme_categories(scheme_run) -> None:
    scheme, inbox, _ = scheme_run
    first = _source(inbox, "2026-01", "roster")
    assert set(first["category"]) <= set(scheme.categories.values())
    cats = _categories(scheme, inbox)
    assert cats.notna().all() and set(cats) <= set(scheme.categories)
    if "fast_track" in scheme.categories and "judge" in scheme.categories:
        fast = first[first["category"] == scheme.categories["fast_track"]]
        assert len(fast) and (fast["dept_name"] == "立案庭").all()
    has_cases = any(i.measure.startswith("cases.") for c in scheme.components for i in c.indicators)
    assert (inbox / "2026-01" / "cases.csv").exists() == has_cases


def test_scheme_surveys_follow_components_and_cadence(scheme_run) -> None:
    scheme, inbox, counts = scheme_run
    components = [c for c in scheme.components if c.survey]
    if not components:
        assert not any("surveys" in n for n in counts.values())
        return
    rows = _year_of(inbox, "surveys")
    assert not rows.duplicated(["survey_id", "rater_key", "ratee_id", "item"]).any()
    of_item = scheme.survey_items()
    assert rows["item"].isin(list(of_item)).all()
    rows["component"] = rows["item"].map(of_item)
    cats = _categories(scheme, inbox)
    rows["category"] = cats.reindex(pd.MultiIndex.from_frame(rows[["month", "ratee_id"]])).values
    roster = _year_of(inbox, "roster").set_index(["month", "person_id"])["unit_id"]
    unit = roster.reindex(pd.MultiIndex.from_frame(rows[["month", "ratee_id"]])).to_numpy()
    for c in components:
        mine = rows[rows["component"] == c.id]
        rated = scheme.survey_categories(c.id)
        assert mine["category"].isin(list(rated)).all(), c.id
        weighted = {r for r, w in c.survey.relations.items() if w > 0}
        assert set(mine["relation"]) <= weighted, c.id
        assert ("self" in set(mine["relation"])) == ("self" in weighted), c.id
        step = PERIOD_MONTHS[_cadence(scheme, c.id)]
        due = [m for m in YEAR if int(m[5:]) % step == 0]
        rateable = [m for m in due if cats.loc[m].isin(list(rated)).any()]
        assert sorted(set(mine["month"])) == rateable, c.id
        label = {
            1: mine["month"],
            3: "2026-Q" + ((mine["month"].str[5:].astype(int) + 2) // 3).astype(str),
            12: pd.Series("2026", index=mine.index),
        }[step]
        assert (mine["period"] == label).all(), c.id
        prefix = label.str.replace("-Q", "Q") if step == 3 else label
        assert (mine["survey_id"] == prefix + "-" + unit[mine.index]).all(), c.id
        levels = mine["score"].isin(list(c.survey.levels))
        assert levels.any() == bool(c.survey.levels), c.id
        assert pd.to_numeric(mine.loc[~levels, "score"]).between(0, 100).all(), c.id
        groups = mine[mine["relation"] != "self"].groupby(["survey_id", "ratee_id", "relation"])
        raters = groups["rater_key"].nunique()
        assert (raters >= c.survey.min_raters).mean() >= 0.8, c.id
        if c.survey.min_raters > 1:  # a few groups below it: suppression is exercised
            assert (raters < c.survey.min_raters).any(), c.id


def test_scheme_adjustments_use_every_rule(scheme_run) -> None:
    scheme, inbox, _ = scheme_run
    rules = scheme.rules()
    if not rules:
        assert not list(inbox.rglob("adjustments*"))
        return
    rows = _year_of(inbox, "adjustments")
    assert set(rows["rule"]) == set(rules)
    assert (_dates(rows["date"]).dt.strftime("%Y-%m") == rows["month"]).all()
    assert rows["evidence"].str.fullmatch(r".+〔2026〕\d+号").all()
    assert set(rows["count"]) <= {"1", "2", "3"}
    points = pd.to_numeric(rows["points"].replace("", None))
    for name, rule in rules.items():
        mine, notes = points[rows["rule"] == name], rows.loc[rows["rule"] == name, "note"]
        assert notes.str.contains(rule.name or name, regex=False).all(), name
        if rule.veto:
            assert mine.isna().all()
        elif rule.range:
            lo, hi = rule.range
            assert mine.notna().all() and mine.between(lo, hi).all(), name
            assert ((mine * 10).round(6) % 1 == 0).all(), name  # a 0.5 or 0.1 grid
        else:
            assert mine.dropna().eq(rule.points).all(), name
    vetoes = rows[rows["rule"].map(lambda r: rules[r].veto)]
    assert vetoes["person_id"].is_unique
    assert len(vetoes) <= max(sum(r.veto for r in rules.values()), 150 * 0.02)


def test_scheme_nominations_are_over_a_cap_and_name_a_vetoed_person(scheme_run) -> None:
    scheme, inbox, counts = scheme_run
    ps = scheme.pacesetters
    if ps is None or ps.nomination_cap == 0:
        assert not any("nominations" in n for n in counts.values())
        return
    step = PERIOD_MONTHS[ps.period]
    assert [m for m in YEAR if "nominations" in counts[m]] == YEAR[step - 1 :: step]
    vetoed = set()
    refused = 0
    adjustments = _year_of(inbox, "adjustments")
    veto_rows = adjustments[adjustments["rule"].map(lambda r: scheme.rules()[r].veto)]
    for i, month in enumerate(YEAR[step - 1 :: step]):
        rows = _source(inbox, month, "nominations")
        label = {1: month, 3: f"2026-Q{i + 1}", 6: f"2026-H{i + 1}", 12: "2026"}[step]
        assert (rows["period"] == label).all() and (rows["reason"] != "").all()
        roster = _source(inbox, month, "roster").set_index("person_id")
        per_unit = roster.loc[rows["person_id"], "unit_id"].value_counts()
        heads = roster["unit_id"].value_counts()
        cap = (heads * ps.nomination_cap + 1e-9).astype(int).reindex(per_unit.index)
        assert (per_unit > cap).any(), month
        in_period = veto_rows["month"].between(YEAR[i * step], month)
        vetoed = set(veto_rows.loc[in_period, "person_id"])
        refused += rows["person_id"].isin(vetoed).sum()
    assert refused == (1 if len(veto_rows) else 0)


def test_scheme_extracts_pass_validation(scheme_run) -> None:
    scheme, inbox, _ = scheme_run
    for month in ("2026-03", "2026-12"):  # every survey cadence and every pacesetter period
        files = [
            {"source": source_of(p.name), "name": p.name, "sha256": p.name, "path": str(p)}
            for p in sorted((inbox / month).iterdir())
        ]
        v = validate_month(files, month, scheme, b"k")
        assert not v.rejected, [r.problems for r in v.rejected]
        assert v.quarantine.empty, v.quarantine.head().to_dict("records")


def test_scheme_runs_repeat_and_the_kind_can_be_named(tmp_path: Path) -> None:
    scheme = parse_scheme(INLINE["inline-court"])
    generate(tmp_path / "a", 60, "2026-05", 3, seed=2, scheme=scheme)
    generate(tmp_path / "b", 60, "2026-05", 3, seed=2, scheme=scheme)
    assert _hashes(tmp_path / "a") == _hashes(tmp_path / "b")
    counts = generate(tmp_path / "c", 60, "2026-05", 3, seed=2, kind="office", scheme=scheme)
    assert not any("cases" in n for n in counts.values())
    roster = _source(tmp_path / "c", "2026-06", "roster")
    assert set(roster["category"]) <= set(scheme.categories)  # a court scheme's fallbacks


def test_command_line_takes_a_scheme(tmp_path: Path) -> None:
    path = tmp_path / "office.yaml"
    path.write_text(INLINE["inline-office"], encoding="utf-8")
    args = ["--inbox", str(tmp_path / "cli"), "--people", "30", "--scheme", str(path)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "etl.generate", *args, "--months", "1", "--seed", "5"],
        capture_output=True, text=True, check=True, cwd=ROOT, env=env,
    )  # fmt: skip
    scheme = parse_scheme(INLINE["inline-office"])
    assert json.loads(out.stdout) == generate(tmp_path / "api", 30, "2026-01", 1, 5, None, scheme)
    assert _hashes(tmp_path / "cli") == _hashes(tmp_path / "api")
