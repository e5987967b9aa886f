"""The documents' markup: what the templates write is well-formed XML that expat parses into the
tree WeasyPrint's HTML parser makes, so the PDF comes out byte for byte the same on the fast path;
markup expat cannot read still renders; and the notice's tables read as designed (merged cells,
the months an indicator was assessed in)."""

from __future__ import annotations

import datetime as dt
import io
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pandas as pd
import pytest
import tinyhtml5
from defusedxml import ElementTree as DefusedET
from markupsafe import Markup
from pypdf import PdfReader

from bench.render import marts as quarter_marts
from reports import render
from reports.charts import distribution_svg, trend_svg
from reports.documents import Marts, Stage, bulletin_contexts, notice_contexts
from reports.parsed import ParsedHTML, tree
from reports.render import INLINED, html_to_pdf, render_html
from scoring.revisions import CHANGE

NOTIFY = Stage("notify", 1, dt.date(2026, 4, 6), dt.date(2026, 4, 11))
FINAL = Stage("final", 2, dt.date(2026, 4, 20), None)
NONE = pd.DataFrame(columns=CHANGE)


def _month(marts: Marts) -> Marts:
    """The quarter's last month as a month's marts."""
    month = "2026-03"
    pick = {
        name: getattr(marts, name)[getattr(marts, name)["month"] == month]
        for name in ("indicators", "adjustments", "departments", "quarantine")
    }
    return Marts(
        what=month,
        monthly=marts.monthly,
        surveys=marts.surveys,
        roster=marts.roster,
        **pick,
    )


def _with_charts(ctx: dict) -> dict:
    labels, means = [t["label"] for t in ctx["trend"]], [t["mean"] for t in ctx["trend"]]
    trend = trend_svg(labels, means, title="单位月度平均分")
    scores = distribution_svg(ctx["scores"], title="得分分布")
    return ctx | {"trend_svg": Markup(trend), "distribution_svg": Markup(scores)}  # noqa: S704


def documents() -> Iterator[tuple[str, str]]:
    """(what, html) for every kind of document the templates write."""
    scheme, quarter = quarter_marts(40)
    first = quarter.roster["person_id"].iloc[0]
    quarter.departments = pd.DataFrame(
        {"month": ["2026-03"], "dept_id": [quarter.roster["dept_id"].iloc[0]], "red_flag": [True]}
    )
    quarter.quarantine = pd.DataFrame(
        {"month": ["2026-03"], "source": ["attendance"], "reason": ["日期不在本月"], "rows": [2]}
    )
    month = _month(quarter)
    correction = pd.DataFrame(
        [{"person_id": first, "name": "改", "field": "score", "before": 80.0, "after": 81.5}]
    )
    for what, marts in (("quarter", quarter), ("month", month)):
        for stage, changes in ((NOTIFY, NONE), (FINAL, correction)):
            notices = dict(notice_contexts(scheme, marts, stage, changes))
            # the first person has the correction; the eighth a name outside GBK (bench.render)
            for pid in list(notices)[:1] + list(notices)[7:8]:
                yield (
                    f"{what} notice {pid} ({stage.stage})",
                    render_html("notice.html", notices[pid]),
                )
            unit, ctx = next(iter(bulletin_contexts(scheme, marts, stage, changes)))
            yield (
                f"{what} bulletin {unit} ({stage.stage})",
                render_html("bulletin.html", _with_charts(ctx)),
            )


DOCUMENTS = dict(documents())


def _tree(element: ET.Element) -> tuple:
    return (
        element.tag,
        sorted(element.attrib.items()),
        element.text,
        element.tail,
        [_tree(child) for child in element],
    )


NOTICES = sorted(what for what in DOCUMENTS if " notice " in what)
BULLETINS = sorted(what for what in DOCUMENTS if " bulletin " in what)


@pytest.mark.parametrize("what", NOTICES)
def test_a_notice_takes_the_fast_parse_to_the_html_parsers_tree_and_pdf(what, monkeypatch):
    html = DOCUMENTS[what]
    markup = INLINED.sub("", html, count=1)
    document = render._parsed(markup)
    # notices are the thousands: they must take the fast path
    assert isinstance(document, ParsedHTML), "a notice's markup no longer takes the fast path"
    html_tree = tinyhtml5.parse(markup, namespace_html_elements=False)
    assert _tree(document.etree_element) == _tree(html_tree)
    fast = html_to_pdf(html)
    monkeypatch.setattr("reports.parsed.tree", lambda markup: None)
    assert not isinstance(render._parsed(markup), ParsedHTML)
    assert html_to_pdf(html) == fast  # tinyhtml5's document, byte for byte


@pytest.mark.parametrize("what", BULLETINS)
def test_a_bulletins_charts_send_it_to_the_html_parser(what):
    # inline SVG is namespaced differently by the two parsers (UNLIKE below)
    html = DOCUMENTS[what]
    assert "<svg" in html
    assert not isinstance(render._parsed(INLINED.sub("", html, count=1)), ParsedHTML)


def _page(body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="zh-CN"><head>\n<meta charset="utf-8" />\n<title>t</title>'
        f"\n</head>\n<body>\n{body}\n</body></html>"
    )


# well-formed XML that an HTML parser builds into another tree
UNLIKE = {
    "comment": "<p>王<!-- x -->五</p>",
    "CDATA": "<p><![CDATA[王五]]></p>",
    "processing instruction": "<p><?x y ?>王五</p>",
    "pre and its first newline": "<pre>\n王五</pre>",
    "C1 reference (cp1252 in HTML)": "<p>&#128;</p>",
    "row outside a row group": "<table><tr><td>王五</td></tr></table>",
    "table in a paragraph": "<p><table><tbody><tr><td>王五</td></tr></tbody></table></p>",
    "self-closed div": "<div/><p>王五</p>",
    "end tag of a void element": "<p>王<br></br>五</p>",
    "upper-case tag": "<P>王五</P>",
    "upper-case attribute": '<p Title="x">王五</p>',
    "xml:lang": '<p xml:lang="en">王五</p>',
    "svg without xmlns": '<svg width="10" height="10"><rect width="5" height="5"/></svg>',
    "svg": '<svg xmlns="http://www.w3.org/2000/svg" width="10"><rect width="5"/></svg>',
    "newline in an attribute": '<p title="a\nb">王五</p>',
    "text in a table": "<table>王五<tbody><tr><td>x</td></tr></tbody></table>",
    "link in a link": '<p><a href="#x">王<a href="#y">五</a></a></p>',
    "reference in a style": "<style>p::after { content: '&amp;' }</style><p>王五</p>",
}


@pytest.mark.parametrize("what", sorted(UNLIKE))
def test_markup_the_parsers_read_differently_goes_to_the_html_parser(what):
    html = _page(UNLIKE[what])
    as_xml = DefusedET.fromstring(html)
    assert _tree(as_xml) != _tree(tinyhtml5.parse(html, namespace_html_elements=False))
    assert tree(html) is None
    assert not isinstance(render._parsed(html), ParsedHTML)


def test_the_markup_the_templates_use_takes_the_fast_path():
    html = _page(
        '<h1>标题<br />第二行</h1><p class="who">王五 <strong>x</strong> <span>y</span></p>'
        '<table class="t"><thead><tr><th class="w16">a</th><th>b</th></tr></thead>'
        '<tbody class="group">\n<tr><td rowspan="2">c</td><td>&lt;d&gt; &amp; &#34;e&#39;</td></tr>'
        "\n<tr><td>f</td></tr>\n</tbody></table>"
    )
    root = tree(html)
    assert root is not None
    assert _tree(root) == _tree(tinyhtml5.parse(html, namespace_html_elements=False))


def test_markup_expat_cannot_read_is_parsed_as_html():
    # void elements left open, as HTML allows, and a control character (from a roster, say),
    # which XML does not: both documents render, through WeasyPrint's HTML parser
    head = '<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8"><title>t</title></head>'
    for body, text in (
        ("<h1>考核结果反馈单</h1><p>王五 98.50<br>第二行</p>", "考核结果反馈单"),
        ("<h1>反馈单</h1><p>王\x0b五 98.50</p>", None),  # a glyph-less character: no text layer
    ):
        html = f"{head}<body>{body}</body></html>"
        with pytest.raises(ET.ParseError):
            DefusedET.fromstring(html)
        assert not isinstance(render._parsed(html), ParsedHTML)
        pdf = PdfReader(io.BytesIO(html_to_pdf(html)))
        assert len(pdf.pages) == 1
        assert text is None or text in pdf.pages[0].extract_text()


def _cells(html: str, table: str) -> list[list[tuple[str, int]]]:
    """A table's body rows (of all its row groups) as (text, rowspan) per cell."""
    root = DefusedET.fromstring(INLINED.sub("", html, count=1))
    rows = root.findall(f".//table[@class='{table}']/tbody/tr")
    return [
        [("".join(cell.itertext()), int(cell.get("rowspan", 1))) for cell in row] for row in rows
    ]


def _groups(html: str, table: str) -> list[int]:
    """The number of rows in each of a table's row groups."""
    root = DefusedET.fromstring(INLINED.sub("", html, count=1))
    return [len(body) for body in root.findall(f".//table[@class='{table}']/tbody")]


def test_a_components_indicators_share_one_merged_cell_and_short_months_are_named():
    scheme, quarter = quarter_marts(40)
    pid = quarter.roster["person_id"].iloc[0]
    # one indicator of this person assessed in two of the quarter's three months
    mine = quarter.indicators[quarter.indicators["person_id"] == pid]
    first = mine.iloc[0]
    drop = mine.index[
        (mine["component_id"] == first["component_id"])
        & (mine["indicator_id"] == first["indicator_id"])
        & (mine["month"] == "2026-02")
    ]
    quarter.indicators = quarter.indicators.drop(drop)
    ctx = dict(notice_contexts(scheme, quarter, NOTIFY, NONE))[pid]
    rows = _cells(render_html("notice.html", ctx), "indicators")
    assert len(rows) == len(ctx["indicators"]) > 3
    # 考核项目 once per component, merged over its indicators' rows
    heads = [row[0] for row in rows if len(row) == 6]
    assert [text for text, _ in heads] == list(
        dict.fromkeys(i["component_name"] for i in ctx["indicators"])
    )
    assert sum(span for _, span in heads) == len(rows)
    assert all(len(row) == 5 for row in rows if len(row) != 6)
    # each component's rows are a row group of their own, kept on one page
    html = render_html("notice.html", ctx)
    assert _groups(html, "indicators") == [span for _, span in heads]
    # the indicator assessed in two months says so after its name; no other does
    names = [row[len(row) - 5][0] for row in rows]
    (short,) = [i["indicator_name"] for i in ctx["indicators"] if i["months"] == 2]
    assert [n for n in names if "个月" in n] == [f"{short}（2个月）"]
    # a survey round and its item merged over the relations' rows
    surveys = _cells(render_html("notice.html", ctx), "surveys")
    assert len(surveys) == len(ctx["surveys"]) > 1
    assert surveys[0][:2] == [(ctx["surveys"][0]["round_label"], len(surveys))] * 1 + [
        (ctx["surveys"][0]["component_name"], len(surveys))
    ]
    assert all(len(row) == 2 for row in surveys[1:])


def test_a_month_notice_merges_its_components_and_heads_its_columns_as_one_months():
    for what, html in DOCUMENTS.items():
        if " notice " not in what:
            continue
        root = DefusedET.fromstring(INLINED.sub("", html, count=1))
        head = [th.text for th in root.findall(".//table[@class='indicators']/thead/tr/th")]
        mean = "" if what.startswith("month") else "平均"
        assert head == ["考核项目", "指标", f"{mean}实际值", "目标值", "分值", f"{mean}得分"], what
        rows = _cells(html, "indicators")
        spans = [row[0][1] for row in rows if len(row) == 6]
        assert _groups(html, "indicators") == spans and sum(spans) == len(rows), what
        if what.startswith("month"):  # a month's notice names no months after an indicator
            assert not [text for row in rows for text, _ in row if "个月" in text], what


def test_no_page_starts_with_rows_whose_merged_cell_is_on_the_page_before():
    # the benchmark's quarter notices break their indicator table across two pages
    (html,) = [h for what, h in DOCUMENTS.items() if what.startswith("quarter notice")][:1]
    components = {text for row in _cells(html, "indicators") for text, span in row[:1] if span > 1}
    pages = PdfReader(io.BytesIO(html_to_pdf(html))).pages
    assert len(pages) == 2
    starts = []
    for page in pages:
        lines = page.extract_text().split("\n")
        heads = [n for n, line in enumerate(lines) if line.startswith("考核项目")]
        starts += [lines[n + 1] for n in heads]
    assert len(starts) == 2  # the header again on the second page, as table headers repeat
    assert all(any(line.startswith(c) for c in components) for line in starts), starts
