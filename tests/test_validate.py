"""Row rules and verdicts, without a database: what bad input gets (sources.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from etl.validate import validate_month
from scoring.scheme import SCHEME_DIR as ROOT_SCHEMES
from scoring.scheme import load_scheme

ROSTER = "工号,姓名,单位编码,单位名称,部门编码,部门,人员类别\n" + "".join(
    f"{i:04d},人员{i},u1,单位,d1,科室,staff\n" for i in range(1, 41)
)


def _files(tmp: Path, **extracts: str) -> list[dict]:
    out = []
    for name, text in extracts.items():
        p = tmp / f"{name}.csv"
        p.write_text(text, encoding="utf-8")
        out.append({"source": name.split("-")[0], "name": p.name, "sha256": name, "path": str(p)})
    return out


def _validate(tmp: Path, **extracts: str):
    """Validate March with the 40-person roster and clean attendance unless a test gives its own."""
    extracts = {"roster": ROSTER, "attendance": _attendance([]), **extracts}
    return validate_month(_files(tmp, **extracts), "2026-03", load_scheme("demo"), b"k")


def _attendance(rows: list[str]) -> str:
    good = [f"{i:04d},2026-03-0{d},present,1,1" for d in (2, 3) for i in range(1, 41)]
    return "person_id,date,status,duty_filed,duty_reviewed\n" + "\n".join(good + rows) + "\n"


def test_bad_rows_are_quarantined_with_line_and_reason(tmp_path):
    att = _attendance(
        [
            "9999,2026-03-03,present,1,1",  # line 82: unknown person
            "0001,2026-03-04,sleeping,1,1",  # line 83: bad status
            "0001,2026-03-02,late,1,1",  # line 84: duplicate of line 2
        ]
    )
    v = _validate(tmp_path, attendance=att)
    rep = v.reports["attendance"]
    assert (rep.status, rep.rows_in, rep.rows_quarantined) == ("quarantined", 83, 3)
    q = v.quarantine.set_index("line")["reason"].to_dict()
    assert "unknown person" in q[82] and "bad status" in q[83] and "duplicate" in q[84]
    assert len(v.accepted["attendance"]) == 80  # the first of the duplicated key is kept
    assert 2 in v.accepted["attendance"]["source_line"].tolist()


def test_more_than_the_share_rejects_the_source_and_names_the_rule(tmp_path):
    att = _attendance([f"{i:04d},2026-04-01,present,1,1" for i in range(1, 6)])  # 5/85 > 5%
    v = _validate(tmp_path, attendance=att)
    rep = v.reports["attendance"]
    assert rep.status == "rejected"
    assert "attendance.csv (5): 5 of 85" in rep.problems[0]
    assert "date outside the month" in rep.problems[0]


def test_survey_score_out_of_range_and_rater_keys_never_leave(tmp_path):
    head = "survey_id,period,rater_key,relation,ratee_id,item,score\n"
    rows = [f"s1,2026-Q1,secret-rater-{i},peer,{i:04d},de,{80 + i % 10}" for i in range(1, 41)]
    rows.append("s1,2026-Q1,secret-rater-x,上级,0001,de,101")  # line 42: out of range
    rows.append("s1,2026-Q1,secret-rater-y,peer,0002,neng,称职")  # a level: 80 points
    v = _validate(tmp_path, surveys=head + "\n".join(rows) + "\n")
    q = v.quarantine[v.quarantine.source == "surveys"]
    assert q["line"].tolist() == [42] and "score out of range" in q["reason"].iloc[0]
    assert "secret-rater" not in json.dumps(q["raw"].tolist())
    acc = v.accepted["surveys"]
    assert "rater_key" not in acc.columns and not acc["rater_hash"].str.contains("secret").any()
    assert acc.loc[acc.item == "neng", ["score", "level"]].values.tolist() == [[80.0, "称职"]]


@pytest.mark.parametrize(
    "row,reason",
    [
        ("0001,2026-03-05,no_such_rule,,1", "unknown rule"),
        ("0001,2026-03-05,assessment_loss,,1", "points do not fit"),
        ("0001,2026-03-05,assessment_loss,-3,1", "points do not fit"),
        ("0001,2026-03-05,praise_city,2,1", "points do not fit"),
        ("0001,2026-03-05,praise_city,1,0", "count below 1"),
    ],
)
def test_adjustment_rows_must_fit_the_scheme(tmp_path, row, reason):
    ok = "".join(f"{i:04d},2026-03-05,praise_city,,1\n" for i in range(1, 41))
    adj = "person_id,date,rule,points,count\n" + ok + row + "\n"
    v = _validate(tmp_path, adjustments=adj)
    q = v.quarantine[v.quarantine.source == "adjustments"]
    assert q["line"].tolist() == [42] and reason in q["reason"].iloc[0]


def test_missing_roster_rejects_the_month(tmp_path):
    v = validate_month(
        _files(tmp_path, attendance=_attendance([])), "2026-03", load_scheme("demo"), b"k"
    )
    assert v.reports["roster"].status == "rejected"
    assert "required every month" in v.reports["roster"].problems[0]


def test_nomination_period_must_be_a_calendar_period(tmp_path):
    head = "person_id,period,reason,approved_by\n"
    rows = ["0001,2026-H1,理由,党组会", "0002,2026-Q5,理由,党组会", "0003,2026-06,理由,党组会"]
    rows += [f"{i:04d},2026,理由,党组会" for i in range(4, 41)]
    v = _validate(tmp_path, nominations=head + "\n".join(rows) + "\n")
    q = v.quarantine[v.quarantine.source == "nominations"]
    assert q["line"].tolist() == [3] and "bad period" in q["reason"].iloc[0]


def test_case_rules_across_columns_quarantine_the_right_lines(tmp_path):
    head = "case_id,dept_id,judge_id,panel_ids,filed_on,closed_on,procedure,outcome\n"
    ok = [f"c{i},d1,0001,0001;0002;0003,2026-01-05,,ordinary," for i in range(1, 40)]
    bad = [
        "x1,d1,0001,0001;0002;9999,2026-01-05,,ordinary,",  # line 41: unknown panel member
        "x2,d1,0001,0001;0002;0003,2026-03-05,2026-03-01,ordinary,judgment",  # closed < filed
        "x3,d1,0001,,2026-01-05,2026-03-01,summary,",  # line 43: closed without an outcome
    ]
    v = _validate(tmp_path, cases=head + "\n".join(ok + bad) + "\n")
    q = v.quarantine[v.quarantine.source == "cases"].set_index("line")["reason"]
    assert q.index.tolist() == [41, 42, 43]
    assert "unknown panel member" in q[41] and "unknown panel member" not in q[42]
    assert len(v.accepted["cases"]) == 39


@pytest.mark.parametrize("kind,ref", [("court", "court"), ("office", "office"), ("mixed", "demo")])
def test_each_demo_scheme_takes_its_generated_organisation_whole(tmp_path, kind, ref):
    from etl.generate import generate
    from etl.sources import source_of

    generate(tmp_path, 60, "2026-03", 1, seed=5, kind=kind, scheme=load_scheme(ref))
    files = [
        {"source": source_of(p.name), "name": p.name, "sha256": p.name, "path": str(p)}
        for p in sorted((tmp_path / "2026-03").iterdir())
    ]
    v = validate_month(files, "2026-03", load_scheme(ref), b"k")
    assert {s: r.status for s, r in v.reports.items() if r.status != "absent"} == {
        s: "accepted" for s in ("roster", "attendance", "surveys", "adjustments")
    } | ({"cases": "accepted"} if kind != "office" else {})
    assert v.quarantine.empty


def test_accepted_rows_carry_text_as_objects_with_none_for_blanks(tmp_path):
    roster = ROSTER.replace("人员类别\n", "人员类别,邮箱\n").replace(",staff\n", ",staff,\n")
    first = "0001,人员1,u1,单位,d1,科室,staff,"
    roster = roster.replace(first, first + "a@b.cn")
    head = "survey_id,period,rater_key,relation,ratee_id,item,score\n"
    surveys = head + "".join(f"s1,2026-Q1,k{i},peer,{i:04d},de,80\n" for i in range(1, 41))
    v = _validate(tmp_path, roster=roster, surveys=surveys)
    acc = v.accepted["roster"]
    assert acc["email"].dtype == object and acc["email"].tolist()[:2] == ["a@b.cn", None]
    assert acc["active_from"].dtype == object and acc["active_from"].isna().all()
    assert v.accepted["attendance"]["status"].dtype == object
    assert v.accepted["surveys"]["rater_hash"].dtype == "str"


def test_panel_members_are_stripped_and_every_one_must_be_known(tmp_path):
    head = "case_id,dept_id,judge_id,panel_ids,filed_on,closed_on,procedure,outcome\n"
    ok = [f"c{i},d1,0001,0001; 0002 ;;0003,2026-01-05,,ordinary," for i in range(1, 40)]
    bad = ["x1,d1,0001,0002;0001\u30009999,2026-01-05,,ordinary,"]  # line 41
    v = _validate(tmp_path, cases=head + "\n".join(ok + bad) + "\n")
    q = v.quarantine[v.quarantine.source == "cases"]
    assert q["line"].tolist() == [41] and "unknown panel member" in q["reason"].iloc[0]


def test_a_key_repeated_across_two_files_is_quarantined_where_it_repeats(tmp_path):
    # files are read in name order: attendance-b.csv, then attendance.csv (line 4: 0003, 3-02)
    second = "工号,日期,状态,履职填报\n0003,2026-03-02,迟到,1\n0004,2026年3月9日,休息日,\n"
    v = _validate(tmp_path, **{"attendance-b": second})
    q = v.quarantine[v.quarantine.source == "attendance"]
    assert q[["file", "line"]].values.tolist() == [["attendance.csv", 4]]
    assert "duplicate" in q["reason"].iloc[0]
    acc = v.accepted["attendance"]
    dates = acc.loc[acc.source_file == "attendance-b.csv", "date"].tolist()
    assert dates == ["2026-03-02", "2026-03-09"]


def test_every_unreadable_cell_of_a_row_is_quoted_in_one_reason(tmp_path):
    att = _attendance(["0001,2026-03-40,present,2,1"])  # line 82: bad date and bad flag
    v = _validate(tmp_path, attendance=att)
    q = v.quarantine.set_index("line")["reason"]
    assert q[82].startswith("date: '2026-03-40' is not a date; duty_filed: '2' is not 0 or 1")


def test_the_whitespace_panel_members_are_stripped_of_is_pythons():
    import sys

    from etl.validate import _WHITESPACE

    assert _WHITESPACE == "".join(c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace())


def test_a_rule_that_only_bars_from_honours_takes_rows_without_points(tmp_path):
    # points.yaml's efficiency_upper (取消评先评优) carries no points: a blank row is taken,
    # a row that gives points is set aside
    scheme = load_scheme("points")
    roster = ROSTER.replace(",staff\n", ",一般干部\n")
    ok = "".join(f"{i:04d},2026-03-05,efficiency_upper,,1\n" for i in range(1, 41))
    adj = "person_id,date,rule,points,count\n" + ok + "0001,2026-03-06,efficiency_upper,-1,1\n"
    files = _files(tmp_path, roster=roster, attendance=_attendance([]), adjustments=adj)
    v = validate_month(files, "2026-03", scheme, b"k")
    q = v.quarantine[v.quarantine.source == "adjustments"]
    assert q["line"].tolist() == [42] and "points do not fit" in q["reason"].iloc[0]
    assert len(v.accepted["adjustments"]) == 40


def test_a_scheme_without_fixed_point_rules_still_checks_its_rows(tmp_path):
    # only a range rule, a veto rule and a rule that bars from honours: no rule has fixed points
    from scoring.scheme import parse_scheme

    text = (ROOT_SCHEMES / "demo.yaml").read_text(encoding="utf-8")
    head, _, tail = text.partition("adjustments:\n")
    rules = (
        "  - {rule: assessment_loss, points: [-2, -0.5]}\n"
        "  - {rule: upper_finding, no_honours: true}\n"
        "  - {rule: disciplinary, veto: true}\n"
    )
    tail = tail[tail.index("adjustment_caps:") :]
    scheme = parse_scheme(head + "adjustments:\n" + rules + tail)
    ok = "".join(f"{i:04d},2026-03-05,upper_finding,,1\n" for i in range(1, 41))
    adj = "person_id,date,rule,points,count\n" + ok + "0001,2026-03-06,assessment_loss,-3,1\n"
    files = _files(tmp_path, roster=ROSTER, attendance=_attendance([]), adjustments=adj)
    v = validate_month(files, "2026-03", scheme, b"k")
    q = v.quarantine[v.quarantine.source == "adjustments"]
    assert q["line"].tolist() == [42] and "points do not fit" in q["reason"].iloc[0]


def test_an_odd_rater_key_is_hashed_like_any_other_and_never_quoted(tmp_path):
    # Excel error texts and over-long cells are quarantined quoting the cell, in every column
    # but the rater key: it is opaque, only ever hashed, and no reason may show it
    head = "survey_id,period,rater_key,relation,ratee_id,item,score\n"
    rows = [f"s1,2026-Q1,k{i},peer,{i:04d},de,80" for i in range(1, 39)]
    rows += ["s1,2026-Q1,#N/A,peer,0039,de,80", "s1,2026-Q1," + "秘" * 3000 + ",peer,0040,de,80"]
    rows.append("s1,2026-Q1,k41,peer,0001,neng,#N/A")  # line 42: a failed formula as the score
    v = _validate(tmp_path, surveys=head + "\n".join(rows) + "\n")
    q = v.quarantine[v.quarantine.source == "surveys"]
    assert q["line"].tolist() == [42]
    assert q["reason"].iloc[0].startswith("score: '#N/A' is an Excel error value, not data")
    assert len(v.accepted["surveys"]) == 40
    assert "秘" not in json.dumps(v.summary(), ensure_ascii=False) + "".join(q["raw"])
