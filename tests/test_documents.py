"""Document contexts from hand-built marts: a notice carries its person's rows and nothing of
anyone else's, a suppressed survey group shows no figure, a bulletin ranks its own unit."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from reports.documents import Marts, Stage, bulletin_contexts, label, notice_contexts
from scoring.revisions import CHANGE
from scoring.scheme import load_scheme

SCHEME = load_scheme("demo")
STAGE = Stage("notify", 1, dt.date(2026, 4, 8), dt.date(2026, 4, 13))
NONE = pd.DataFrame(columns=CHANGE)


def _marts() -> Marts:
    people = pd.DataFrame(
        {
            "person_id": ["A", "B", "C"],
            "name": ["甲一", "乙二", "丙三"],
            "unit_id": ["U1", "U1", "U2"],
            "unit_name": ["一庭", "一庭", "二庭"],
            "dept_id": ["D1", "D1", "D2"],
            "dept_name": ["立案庭", "立案庭", "执行局"],
            "category": ["judge", "judge", "judge"],
            "email": ["a@x.cn", None, "c@x.cn"],
        }
    )
    monthly = pd.DataFrame(
        {
            "month": ["2026-03"] * 3,
            "person_id": ["A", "B", "C"],
            "name": ["甲一", "乙二", "丙三"],
            "unit_id": ["U1", "U1", "U2"],
            "dept_id": ["D1", "D1", "D2"],
            "category": ["judge"] * 3,
            "total_score": [91.0, 80.5, 85.25],
            "adjustment_total": [1.0, 0.0, -0.5],
            "rank_in_scope": [1, 3, 2],
            "red_flag": [True, False, False],
            "veto": [False, False, False],
        }
    )
    indicators = pd.DataFrame(
        {
            "month": ["2026-03"] * 3,
            "person_id": ["A", "B", "C"],
            "component_id": ["casework"] * 3,
            "indicator_id": ["closed"] * 3,
            "actual": [24.0, None, 18.0],
            "target": [20.0, 20.0, 20.0],
            "points": [20.0, 20.0, 20.0],
            "score": [22.0, 20.0, 19.0],
            "no_basis": [False, True, False],
        }
    )
    surveys = pd.DataFrame(
        {
            "survey_id": ["r1"] * 4,
            "survey_period": ["2026-Q1"] * 4,
            "person_id": ["A", "A", "B", "C"],
            "component_id": ["conduct"] * 4,
            "relation": ["peer", "superior", "peer", "peer"],
            "month": ["2026-03"] * 4,
            "raters": [5, 2, 6, 7],
            "score": [88.0, None, 70.0, 90.0],
            "score_raw": [86.0, None, 70.0, 90.0],
            "suppressed": [False, True, False, False],
        }
    )
    empty = pd.DataFrame(
        columns=["month", "person_id", "source_file", "source_line", "rule", "points"]
        + ["count", "total", "veto", "note", "evidence"]
    )
    return Marts(
        what="2026-03",
        monthly=monthly,
        indicators=indicators,
        adjustments=empty,
        surveys=surveys,
        departments=pd.DataFrame({"month": ["2026-03"], "dept_id": ["D1"], "red_flag": [True]}),
        quarantine=pd.DataFrame(
            {
                "month": ["2026-03"],
                "source": ["attendance"],
                "reason": ["日期不在本月"],
                "rows": [2],
            }
        ),
        roster=people,
    )


def test_period_labels_read_as_an_assessment_office_writes_them():
    assert [label(w) for w in ("2026-03", "2026-Q1", "2026-H2", "2026")] == [
        "2026年3月",
        "2026年第一季度",
        "2026年下半年",
        "2026年度",
    ]


def test_a_notice_holds_its_own_rows_only_and_no_figure_of_a_suppressed_group():
    notices = dict(notice_contexts(SCHEME, _marts(), STAGE, NONE))
    assert sorted(notices) == ["A", "B", "C"]
    a = notices["A"]
    assert a["person"]["name"] == "甲一" and a["result"]["score"] == 91.0
    assert a["result"]["rank_in_scope"] == 1 and a["result"]["scope_size"] == 3
    assert [i["person_id"] for i in a["indicators"]] == ["A"]
    by_relation = {s["relation_name"]: s for s in a["surveys"]}
    assert by_relation["同级"]["score"] == 88.0 and by_relation["同级"]["corrected"]
    assert by_relation["上级"]["suppressed"] and by_relation["上级"]["score"] is None
    assert "raters" not in by_relation["上级"]
    assert a["appeal_deadline"] == dt.date(2026, 4, 13)
    text = repr(a)
    assert "乙二" not in text and "丙三" not in text and "80.5" not in text
    assert notices["B"]["indicators"][0]["no_basis"]


def test_a_bulletin_ranks_its_unit_with_its_flags_and_the_data_quality():
    bulletins = dict(bulletin_contexts(SCHEME, _marts(), STAGE, NONE))
    assert sorted(bulletins) == ["U1", "U2"]
    u1 = bulletins["U1"]
    assert [r["name"] for r in u1["categories"][0]["rows"]] == ["甲一", "乙二"]
    assert [f["name"] for f in u1["red_flags"]] == ["甲一"]
    assert [f["dept_name"] for f in u1["department_flags"]] == ["立案庭"]
    assert u1["quality"][0]["source_name"] == "考勤" and u1["quality"][0]["rows"] == 2
    assert "丙三" not in repr(u1["categories"]) and u1["bonus"] is None
    assert bulletins["U2"]["department_flags"] == []


def test_corrections_say_what_changed_in_words():
    changes = pd.DataFrame(
        [
            {"person_id": "A", "name": "甲一", "field": "score", "before": 90.0, "after": 91.0},
            {
                "person_id": "A",
                "name": "甲一",
                "field": "grade",
                "before": "good",
                "after": "excellent",
            },
        ]
    )
    a = dict(notice_contexts(SCHEME, _marts(), STAGE, changes))["A"]
    assert a["changes"] == [
        {"person_id": "A", "name": "甲一", "field": "得分", "before": "90.00", "after": "91.00"},
        {"person_id": "A", "name": "甲一", "field": "等次", "before": "良好", "after": "优秀"},
    ]
    u1 = dict(bulletin_contexts(SCHEME, _marts(), STAGE, changes))["U1"]
    assert [c["field"] for c in u1["changes"]] == ["得分", "等次"]


def test_a_month_notice_renders_its_figures_and_says_no_basis():
    from reports.render import render_html

    notices = dict(notice_contexts(SCHEME, _marts(), STAGE, NONE))
    html = render_html("notice.html", notices["B"])
    assert "乙二" in html and "80.50" in html and "第 3 名 / 共 3 人" in html
    assert "无考核基数" in html and "2026年4月13日" in html
    assert "甲一" not in html and "丙三" not in html
    suppressed = render_html("notice.html", notices["A"])
    assert "评价人数不足，不予公布" in suppressed and "（校正前 86.00）" in suppressed


def test_the_month_table_has_adjustment_and_flag_columns_only_for_who_has_some():
    import re

    from reports.render import render_html

    def header(ctx: dict) -> list[str]:
        html = render_html("notice.html", ctx)
        table = re.search(r'<table class="months">.*?</thead>', html, re.DOTALL).group(0)
        return re.findall(r"<th[^>]*>([^<]*)</th>", table)

    notices = dict(notice_contexts(SCHEME, _marts(), STAGE, NONE))
    # A: +1.00 and a red flag in March; B: neither; C: -0.50 and no flag
    assert header(notices["A"]) == ["月份", "月度总分", "较上月", "加减分", "名次", "流动红旗"]
    assert header(notices["B"]) == ["月份", "月度总分", "较上月", "名次"]
    assert header(notices["C"]) == ["月份", "月度总分", "较上月", "加减分", "名次"]
    assert "-0.50" in render_html("notice.html", notices["C"])


def test_file_names_of_ids_cannot_leave_the_folder_or_take_anothers_name():
    from reports.publish import keys, stem

    assert stem("notice", "P0001") == "notice-P0001"
    assert stem("notice", "a/../notice-P2") == "notice-a%2F..%2Fnotice-P2"
    assert "/" not in stem("bulletin", "../../etc") and "\n" not in stem("notice", "a\nb")
    assert stem("notice", "a/b") != stem("notice", "a%2Fb")  # percent itself is encoded
    ids = pd.Series(["P0001", "a/../notice-P2", "张三", "x~y"])
    assert keys(ids).tolist() == [stem("notice", i)[len("notice-") :] for i in ids]


def test_quarantine_reasons_in_a_bulletin_quote_no_cell():
    from reports.documents import quality_rows

    q = pd.DataFrame(
        {
            "month": ["2026-03"] * 3,
            "source": ["roster"] * 3,
            "reason": [
                "email: '张三@x' is not an address",
                "email: 'O'Brien; 13800001111 Zhang' is not an address",
                "something new",
            ],
            "rows": [1, 2, 4],
        }
    )
    got = quality_rows(q)
    assert got.to_dict("records") == [
        {
            "month": "2026-03",
            "source": "roster",
            "reason": "email: 取值无法识别或不合规",
            "rows": 3,
        },
        {"month": "2026-03", "source": "roster", "reason": "其他原因（详见校验报告）", "rows": 4},
    ]
    assert "13800001111" not in got.to_string() and "Brien" not in got.to_string()


def test_who_is_told_is_decided_by_what_reached_them():
    """P1's notice reached them with 90.00 and nothing changed; P2's reached them with 85.00
    and it is now 69.50; no notice ever reached P3 (no address then, or refused): P2 gets a
    correction, P3 a first notice without one, P1 nothing."""
    from reports.publish import _people_to_tell
    from scoring.revisions import period_results

    def results(scores: list[float]) -> pd.DataFrame:
        rows = pd.DataFrame(
            {
                "person_id": ["P1", "P2", "P3"],
                "name": ["甲", "乙", "丙"],
                "unit_id": ["U1"] * 3,
                "category": ["staff"] * 3,
                "period_score": scores,
                "rank_in_scope": [1, 2, 3],
                "grade": ["good"] * 3,
                "veto": [False] * 3,
                "pacesetter": [False] * 3,
            }
        )
        return period_results(rows, None)

    told = results([90.0, 85.0, 70.0]).iloc[:2]
    tell, found = _people_to_tell(results([90.0, 69.5, 70.0]), told)
    assert tell == {"P2", "P3"}
    assert found[["person_id", "field", "before", "after"]].values.tolist() == [
        ["P2", "score", 85.0, 69.5]
    ]
    everyone, none = _people_to_tell(results([90.0, 85.0, 70.0]), None)
    assert everyone == {"P1", "P2", "P3"} and none.empty


def test_refused_nominations_and_streak_pacesetters_read_in_chinese():
    marts = _marts()
    marts.what = "2026-Q1"
    marts.period = pd.DataFrame(
        {
            "person_id": ["A", "B", "C"],
            "name": ["甲一", "乙二", "丙三"],
            "unit_id": ["U1", "U1", "U2"],
            "dept_id": ["D1", "D1", "D2"],
            "category": ["judge"] * 3,
            "months": [3, 3, 3],
            "mean_monthly": [91.0, 80.5, 85.25],
            "period_score": [91.0, 80.5, 85.25],
            "rank_in_scope": [1, 3, 2],
            "grade": ["excellent", "good", "good"],
            "graded": [True, True, True],
            "veto": [False, False, False],
            "pacesetter": [True, True, False],
            "pacesetter_route": ["rank", "streak", None],
            "placed_by_tiebreak": [False, False, False],
        }
    )
    marts.refused = pd.DataFrame(
        {
            "person_id": ["B", "X"],
            "unit_id": ["U1", "U1"],
            "month": ["2026-03", "2026-03"],
            "reason_refused": ["already a pacesetter by first-tier streak", "over the unit's cap"],
        }
    )
    u1 = dict(bulletin_contexts(SCHEME, marts, STAGE, NONE))["U1"]
    assert [(p["name"], p["route_name"]) for p in u1["pacesetters"]] == [
        ("甲一", "排名产生"),
        ("乙二", "连续进入第一方阵"),
    ]
    assert [n["reason_name"] for n in u1["refused"]] == [
        "已因连续进入第一方阵当选",
        "超出本单位推荐名额",
    ]
    from reports.render import render_html

    charts = {"trend_svg": "", "distribution_svg": ""}  # drawn by publish
    html = render_html("bulletin.html", u1 | charts)
    # by name and month; someone not on the roster by the id the nomination gave
    assert "乙二（B，3月推荐）：已因连续进入第一方阵当选" in html
    assert "X（X，3月推荐）：超出本单位推荐名额" in html


def test_a_rate_reads_as_a_percentage_and_a_count_as_it_is():
    from reports.render import render_html

    marts = _marts()
    rate = {"component_id": "casework", "indicator_id": "acceptance", "month": "2026-03"}
    rate |= {"person_id": "A", "actual": 29 / 30, "target": 0.9, "points": 20.0, "score": 23.3}
    marts.indicators = pd.concat(
        [marts.indicators, pd.DataFrame([rate | {"no_basis": False}])], ignore_index=True
    )
    html = render_html("notice.html", dict(notice_contexts(SCHEME, marts, STAGE, NONE))["A"])
    row = html[html.index("服判息诉率") :].split("</tr>")[0]
    assert "96.67%" in row and "90.00%" in row  # 服判息诉率 29/30 against 90%
    row = html[html.index("结案数") :].split("</tr>")[0]
    assert ">24<" in row and ">20<" in row and "%" not in row


def test_a_unit_bulletin_says_its_ranks_are_among_the_whole_category():
    from reports.render import render_html

    bulletins = dict(bulletin_contexts(SCHEME, _marts(), STAGE, NONE))
    charts = {"trend_svg": "", "distribution_svg": ""}  # drawn by publish
    u1 = render_html("bulletin.html", bulletins["U1"] | charts)  # 甲一 1st, 乙二 3rd of 3 judges
    assert "名次为在本方案全部 3 名员额法官中的名次。" in u1


def test_a_period_notice_says_how_its_score_is_made():
    from reports.documents import scoring_method

    # demo.yaml: a quarter is 0.8 of the mean monthly total and 0.2 of the conduct survey
    assert scoring_method(SCHEME, "quarter", "judge") == (
        "各月月度总分的平均值 × 80% + 德能勤绩廉民主测评 × 20%"
        "（无测评结果的项目，其权重计入各月平均值）"
    )
    county = load_scheme("county")  # 积分制: the year's adjustments add up
    assert scoring_method(county, "year", next(iter(county.categories))) == (
        "各月月度总分（不含加减分）的平均值 × 70% + 年终考核测评 × 30% + 本期加减分合计"
        "（无测评结果的项目，其权重计入各月平均值）"
    )
    points = load_scheme("points")  # the base points carry the whole score
    assert scoring_method(points, "quarter", next(iter(points.categories))).startswith(
        "基本分（德能勤绩廉） × 100% + "
    )


def test_where_adjustments_add_up_the_notice_gives_the_figures_the_formula_takes():
    marts = _marts()
    months = ["2026-01", "2026-02", "2026-03"]
    marts.monthly = pd.concat(
        [marts.monthly[marts.monthly.person_id == "A"].assign(month=m) for m in months],
        ignore_index=True,
    ).assign(total_score=[90.0, 92.0, 91.0], adjustment_total=[1.0, 0.0, 2.0])
    marts.what = "2026-Q1"
    marts.period = pd.DataFrame(
        {
            "person_id": ["A"],
            "name": ["甲一"],
            "unit_id": ["U1"],
            "dept_id": ["D1"],
            "category": ["judge"],
            "months": [3],
            "mean_monthly": [91.0],
            "period_score": [92.0],
            "rank_in_scope": [1],
            "grade": ["excellent"],
            "graded": [True],
            "veto": [False],
            "pacesetter": [False],
            "pacesetter_route": [None],
            "placed_by_tiebreak": [False],
        }
    )
    quarter = SCHEME.periods["quarter"].model_copy(update={"adjustments": "sum"})
    summed = SCHEME.model_copy(update={"periods": SCHEME.periods | {"quarter": quarter}})
    method = dict(notice_contexts(summed, marts, STAGE, NONE))["A"]["method"]
    # 90 − 1, 92 − 0, 91 − 2: the mean without adjustments is 90; they add up to 3
    assert method["summed"] and method["base"] == 90.0 and method["points"] == 3.0
    plain = dict(notice_contexts(SCHEME, marts, STAGE, NONE))["A"]["method"]
    assert not plain["summed"] and plain["base"] == 91.0 and plain["points"] is None


def test_merged_cells_span_each_run_of_equal_keys_whatever_the_dtype():
    from reports.documents import _runs

    for dtype, values in (
        ("object", ["a", "a", None, None, "b"]),
        ("string[python]", ["a", "a", None, None, "b"]),
        ("string[pyarrow]", ["a", "a", None, None, "b"]),
        ("Int64", [1, 1, None, None, 2]),
    ):
        frame = pd.DataFrame({"person": ["P"] * 5, "key": pd.Series(values, dtype=dtype)})
        # a run's length on its first row; a missing key is a run of its own, never merged
        assert _runs(frame, ["person", "key"]).tolist() == [2, 0, 1, 1, 1], dtype
    two = pd.DataFrame({"person": ["P", "P", "Q"], "key": ["a", "a", "a"]})
    assert _runs(two, ["person", "key"]).tolist() == [2, 0, 1]  # not across people
    assert _runs(two.iloc[:0], ["person", "key"]).tolist() == []
