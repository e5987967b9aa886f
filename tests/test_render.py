"""Rendering: what a reader of the PDFs and a security reviewer care about. Chinese text (also
outside GBK) is in the PDF as text with the font embedded as a subset, charts are drawn into it,
numbers are formatted as published, data is escaped, rendering never touches the network, and
the worker pool writes each document to its own file."""

from __future__ import annotations

import base64
import gc
import io
import re
import shutil
import subprocess
import time

import jinja2
import pytest
from pypdf import PdfReader

from reports import render
from reports.charts import distribution_svg, trend_svg
from reports.render import (
    ASSETS,
    BASE_URL,
    AssetRefused,
    Renderer,
    RenderError,
    environment,
    fetch_asset,
    html_to_pdf,
    write_pdfs,
    write_text,
)


def page(body: str, head: str = "") -> str:
    return (
        '<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">'
        f"{head}</head><body>{body}</body></html>"
    )


def text_of(pdf: bytes) -> str:
    return "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages)


def fonts_of(pdf: bytes) -> list[dict]:
    """Every font dictionary the pages use, with its descendant (CID) font when it has one."""
    out = []
    for pg in PdfReader(io.BytesIO(pdf)).pages:
        for ref in pg["/Resources"]["/Font"].values():
            font = ref.get_object()
            out.append(font)
            out.extend(d.get_object() for d in font.get("/DescendantFonts", []))
    return out


def to_unicode_maps(pdf: bytes) -> str:
    return "\n".join(
        f["/ToUnicode"].get_object().get_data().decode("latin-1")
        for f in fonts_of(pdf)
        if "/ToUnicode" in f
    )


# --- Chinese text, fonts, charts ---------------------------------------------------------------


def test_pdf_has_the_chinese_text_and_embeds_subset_fonts():
    html = page(
        "<h1>考核结果通知书</h1><p>张三丰 欧阳锋</p>"
        "<table><thead><tr><th>姓名</th><th>得分</th></tr></thead>"
        f"<tbody><tr><td>张三丰</td><td>{render.score(87.5)}</td></tr></tbody></table>"
    )
    pdf = html_to_pdf(html)
    text = text_of(pdf)
    assert "考核结果通知书" in text
    assert "张三丰" in text and "欧阳锋" in text
    assert "87.50" in text
    assert "第 1 页 / 共 1 页" in text  # the footer from kaohe.css

    fonts = fonts_of(pdf)
    described = [f for f in fonts if "/FontDescriptor" in f]
    assert described
    for font in described:
        descriptor = font["/FontDescriptor"].get_object()
        files = [
            descriptor[k] for k in ("/FontFile", "/FontFile2", "/FontFile3") if k in descriptor
        ]
        assert files, f"{font['/BaseFont']} is not embedded"
        assert re.fullmatch(r"/[A-Z]{6}\+.+", font["/BaseFont"]), font["/BaseFont"]
        # a subset: the whole WenQuanYi Micro Hei is ~5 MB, Noto Sans CJK ~20 MB
        assert len(files[0].get_object().get_data()) < 500_000

    assert html_to_pdf(html) == pdf  # same HTML, same bytes: no dates, no random ids


def test_every_stream_is_deflated_at_zlibs_default_level_and_reads_back():
    """The finisher compresses at level 6 what pydyf would at level 9 (3 % of a notice's time
    for 0.4 % of its size); a zlib stream's second byte names its level."""
    import zlib

    html = page(
        "<h1>考核结果通知书</h1>"
        "<table><thead><tr><th>姓名</th><th>得分</th></tr></thead>"
        "<tbody><tr><td>张三丰</td><td>87.50</td></tr></tbody></table>"
    )
    pdf = html_to_pdf(html)
    streams = re.findall(rb"<<([^\n]*?)>>\nstream\n(.*?)\nendstream", pdf, re.DOTALL)
    # the page's content, the font file and its ToUnicode map; pydyf's object and
    # cross-reference streams are made as the file is written, after the finisher
    ours = [data for head, data in streams if b"/ObjStm" not in head and b"/XRef" not in head]
    assert len(ours) == 3 and len(streams) == 5
    assert all(b"/FlateDecode" in head for head, _ in streams)
    assert [data[:2] for data in ours] == [b"\x78\x9c"] * 3  # level 6; level 9 is 78 da
    assert all(zlib.decompress(data) for _, data in streams)
    assert "张三丰" in text_of(pdf) and "87.50" in text_of(pdf)


def _installed_font_covers(char: str) -> bool:
    if not shutil.which("fc-list"):
        return False
    out = subprocess.run(
        ["fc-list", f":charset={ord(char):x}", "family"], capture_output=True, text=True
    )
    return bool(out.stdout.strip())


NAME_OUTSIDE_GBK = "欧阳䶮"


def test_a_name_outside_gbk_is_in_the_pdf_text_layer():
    pdf = html_to_pdf(page(f"<p>{NAME_OUTSIDE_GBK} 87.50</p>"))
    # 䶮 is U+4DAE: mapped back to Unicode, so viewers find and copy the name
    assert re.search(r"<4dae>", to_unicode_maps(pdf), re.I)


@pytest.mark.skipif(
    not _installed_font_covers("䶮"),
    reason="no installed font has 䶮 (U+4DAE, CJK Ext. A; WenQuanYi Micro Hei lacks it): "
    "it prints as a blank box. Install fonts-noto-cjk.",
)
def test_a_name_outside_gbk_is_drawn_and_extracted():
    # With a missing glyph WeasyPrint writes a custom encoding CMap that pypdf cannot read, so
    # this extraction also proves that no glyph was missing.
    assert NAME_OUTSIDE_GBK in text_of(html_to_pdf(page(f"<p>{NAME_OUTSIDE_GBK} 87.50</p>")))


def test_charts_are_drawn_into_the_pdf_as_text():
    dist = distribution_svg([62.5, 71, 74.25, 80, 81.5, 88, 93, 97.5], title="得分分布")
    trend = trend_svg(["1月", "2月", "3月"], [81.2, None, 84.6], title="月度平均分趋势")
    pdf = html_to_pdf(page(f'<div class="chart">{dist}</div><div class="chart">{trend}</div>'))
    text = text_of(pdf)
    for label in ("得分分布", "人数", "得分", "月度平均分趋势", "平均分", "3月"):
        assert label in text, label


def test_chart_svg_can_be_inlined_and_escapes_labels():
    evil = "<script>alert(1)</script>法院&"
    svg = distribution_svg([70, 80, 90], title=evil, xlabel="$得分$")
    assert svg.startswith("<svg") and "<?xml" not in svg and "DOCTYPE" not in svg
    assert "<script>" not in svg
    assert "&lt;script&gt;alert(1)&lt;/script&gt;法院&amp;" in svg
    assert ">$得分$<" in svg  # a dollar sign is text, not TeX
    width = float(re.search(r'width="([\d.]+)pt"', svg)[1])
    height = float(re.search(r'height="([\d.]+)pt"', svg)[1])
    assert 15.5 <= width / 72 * 2.54 <= 16.5 and 5.5 <= height / 72 * 2.54 <= 6.5
    assert distribution_svg([70, 80, 90], title=evil, xlabel="$得分$") == svg  # deterministic
    with pytest.raises(ValueError):
        trend_svg(["1月", "2月"], [80.0], title="x")


# --- filters and escaping ----------------------------------------------------------------------


def test_filters_format_as_published():
    env = environment()
    score, yuan = env.filters["score"], env.filters["yuan"]
    assert score(2.675) == "2.68"  # half-up on the written decimal, not binary 2.67499…
    assert score(0.125) == "0.13"  # half-up, not banker's 0.12
    assert score(15.000000000000002) == "15.00"
    assert score(None) == "—" and score(float("nan")) == "—"
    assert yuan(428572) == "¥4,285.72"
    assert yuan(5) == "¥0.05" and yuan(-123456789) == "-¥1,234,567.89"
    with pytest.raises(ValueError):
        yuan(12.5)
    assert env.filters["pct"](0.1234) == "12.34%"
    assert env.filters["cn_date"]("2026-04-05") == "2026年4月5日"
    assert env.filters["number"](12.0) == "12" and env.filters["number"](0.955) == "0.96"


def test_context_values_are_escaped_and_undefined_names_fail():
    env = environment()
    out = env.from_string("<td>{{ name }}</td>").render(name="<script>alert(1)</script>")
    assert out == "<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>"
    with pytest.raises(jinja2.UndefinedError):
        env.from_string("{{ nmae }}").render(name="张三")


def test_kaohe_css_survives_a_jinja_include():
    # base.html inlines the stylesheet through {% include %}: a Jinja delimiter in it would break
    included = environment().get_template("assets/kaohe.css").render()
    assert included.rstrip("\n") == (ASSETS / "kaohe.css").read_text("utf-8").rstrip("\n")


def test_the_inline_stylesheet_is_cascaded_once_and_a_documents_own_styles_stay():
    # the HTML file carries kaohe.css inline for a reader opening it alone; the PDF applies the
    # compiled kaohe.css and leaves the inline block out: a rule only that block holds does not
    # reach the PDF, while a document's own <style> still does
    body = "<h1>考核结果通知书</h1><p>张三 98.50</p>"
    inline = '<style id="kaohe-css">p { break-before: page }</style>'
    assert len(PdfReader(io.BytesIO(html_to_pdf(page(body, head=inline)))).pages) == 1
    own = page(body, head="<style>p { break-before: page }</style>")
    assert len(PdfReader(io.BytesIO(html_to_pdf(own))).pages) == 2
    # and kaohe.css is applied all the same: its page footer is on the page
    assert "第 1 页 / 共 1 页" in text_of(html_to_pdf(page(body, head=inline)))


def _alive(kind: str) -> int:
    return sum(type(o).__name__ == kind for o in gc.get_objects())


def test_nothing_of_a_document_outlives_it_and_the_collector_is_left_as_found(monkeypatch):
    # a publishing task renders thousands of notices in one process: each document's boxes and
    # styles (some in reference cycles) must be gone when its PDF is returned, not left for a
    # later collection, and the task's own cycle collector must run as before
    rows = "".join(f"<tr><td>指标{i}</td><td>{i}.00</td></tr>" for i in range(30))
    doc = page(f"<h1>考核结果通知书</h1><table><tbody>{rows}</tbody></table>")
    from weasyprint import HTML

    laid_out = HTML(string=doc).render()  # what a document is made of, while it is alive
    assert _alive("TextBox") > 0 and _alive("ComputedStyle") > 0
    del laid_out
    gc.collect()
    html_to_pdf(doc)
    for _ in range(3):
        assert "指标29" in text_of(html_to_pdf(doc))
        assert _alive("TextBox") == _alive("ComputedStyle") == 0
        assert gc.isenabled()
    gc.disable()  # a caller that manages the collector itself keeps it as it set it
    try:
        html_to_pdf(doc)
        assert not gc.isenabled()
    finally:
        gc.enable()

    def broken(*args, **kwargs):
        raise RuntimeError("layout failed")

    monkeypatch.setattr("weasyprint.HTML.write_pdf", broken)
    with pytest.raises(RuntimeError, match="layout failed"):
        html_to_pdf(doc)
    assert gc.isenabled()  # a document that fails leaves the collector running


def test_write_text_is_atomic_utf8(tmp_path):
    target = tmp_path / "通报.html"
    target.write_text("old", encoding="utf-8")
    write_text(target, "<p>欧阳䶮</p>")
    assert target.read_text(encoding="utf-8") == "<p>欧阳䶮</p>"
    assert [p.name for p in tmp_path.iterdir()] == ["通报.html"]


# --- no network --------------------------------------------------------------------------------


def test_rendering_never_opens_a_connection(listeners):
    heads, bodies = [], []
    for listener in listeners:
        base = f"http://127.0.0.1:{listener.port}"
        heads.append(
            f'<link rel="stylesheet" href="{base}/a.css">'
            f"<style>@import url({base}/i.css);"
            f"@font-face {{ font-family: Evil; src: url({base}/f.woff2) }}"
            f"body {{ background: url({base}/b.png) }} h1 {{ font-family: Evil }}</style>"
        )
        bodies.append(f'<img src="{base}/x.png"><img src="https://127.0.0.1:{listener.port}/y">')
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="120" height="30">'
        '<text x="2" y="20" font-size="14">数据图片</text></svg>'
    )
    data_img = "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()
    html = page(
        "<h1>通报</h1>"
        + "".join(bodies)
        + '<img src="file:///etc/passwd"><img src="../../render.py">'
        + f'<img src="{data_img}"><p>正文照常</p>',
        head="".join(heads),
    )
    pdf = html_to_pdf(html)
    time.sleep(0.2)  # a connection attempt would have been accepted by now
    assert all(not listener.seen for listener in listeners), [x.seen for x in listeners]
    text = text_of(pdf)
    assert "正文照常" in text
    assert "数据图片" in text  # data: URLs are still served
    assert "root:" not in text


def test_fetch_asset_serves_assets_only(tmp_path, monkeypatch):
    css = fetch_asset(BASE_URL + "kaohe.css")
    assert css.content_type == "text/css"
    assert b"@page" in css.read()
    assert fetch_asset("data:text/plain;base64,5byg5LiJ").read() == "张三".encode()

    for url in (
        "http://127.0.0.1:9/x.png",
        "https://example.org/a.css",
        "ftp://127.0.0.1/x",
        "file:///etc/passwd",
        "file://otherhost" + (ASSETS / "kaohe.css").as_posix(),
        BASE_URL + "../../render.py",
        BASE_URL + "%2e%2e/%2e%2e/render.py",
        BASE_URL + "missing.css",
        BASE_URL,  # the folder itself
    ):
        with pytest.raises(AssetRefused):
            fetch_asset(url)

    # a symlink inside the assets folder that points out of it is refused too
    assets = tmp_path / "assets"
    assets.mkdir()
    (tmp_path / "secret.txt").write_text("secret")
    (assets / "ok.css").write_text("p {}")
    (assets / "leak.css").symlink_to(tmp_path / "secret.txt")
    monkeypatch.setattr(render, "ASSETS", assets)
    assert fetch_asset((assets / "ok.css").as_uri()).read() == b"p {}"
    with pytest.raises(AssetRefused):
        fetch_asset((assets / "leak.css").as_uri())


# --- the worker pool ---------------------------------------------------------------------------

NAMES = ["张三丰", "李四光", "王五常", "赵六合", "钱七星", "孙八达"]


def test_renderer_writes_each_document_to_its_own_file(tmp_path):
    jobs = [
        (page(f"<h1>反馈单</h1><p>{name}</p>"), tmp_path / f"{i}.pdf")
        for i, name in enumerate(NAMES)
    ]
    # a pool is due for replacement after 2 × 2 documents: the write spans two pools
    with Renderer(2, chunk_size=1, docs_per_child=2) as renderer:
        written = renderer.write(jobs)
        assert renderer.pools_started == 2
        assert written == [path for _, path in jobs]
        for name, path in zip(NAMES, written):
            text = text_of(path.read_bytes())
            assert name in text
            assert not any(other in text for other in NAMES if other != name)
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in written)

        # the same pool reports a failing document by name, and one without a folder
        broken = page(
            "<p>x</p>",
            head="<style>@color-profile --x { src: url(http://127.0.0.1:9/p.icc) }</style>",
        )
        with pytest.raises(RenderError, match=r"broken\.pdf"):
            renderer.write([(broken, tmp_path / "broken.pdf")])
        with pytest.raises(RenderError, match=r"nowhere.*lost\.pdf"):
            renderer.write([(jobs[0][0], tmp_path / "nowhere" / "lost.pdf")])
        assert renderer.pools_started == 2
    assert not list(tmp_path.glob(".*.tmp"))
    assert not (tmp_path / "broken.pdf").exists()


def test_write_pdfs_in_process(tmp_path):
    out = write_pdfs([(page("<p>王五常</p>"), tmp_path / "a.pdf")], workers=0)
    assert out == [tmp_path / "a.pdf"] and "王五常" in text_of(out[0].read_bytes())
    with pytest.raises(RenderError, match="lost.pdf"):
        write_pdfs([(page("<p>x</p>"), tmp_path / "nowhere" / "lost.pdf")], workers=0)
