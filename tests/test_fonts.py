"""The prepared CJK font (reports.fonts): the common characters of WenQuanYi Micro Hei drawn and
kerned as in the installed font, in an order that puts what documents use first, and what it
lacks drawn from the installed fonts."""

from __future__ import annotations

import io

import pytest
from fontTools.ttLib import TTFont
from pypdf import PdfReader

from reports import fonts
from reports.render import html_to_pdf

needs_source = pytest.mark.skipif(
    not fonts.SOURCE.is_file(), reason=f"{fonts.SOURCE} (fonts-wqy-microhei) is not installed"
)


def test_glyph_order_puts_what_documents_use_first_and_keeps_each_groups_order():
    order = [".notdef", "A", "comma", "yi", "wang", "zhe", "rare", "fwcomma", "part"]
    cmap = {
        0x41: "A",
        0x2C: "comma",
        0x4E00: "yi",  # 一, GB 2312 level 1
        0x738B: "wang",  # 王, level 1
        0x5586: "zhe",  # 喆, not in GB 2312
        0x4E8D: "rare",  # 亍, level 2 (rows 56 on)
        0xFF0C: "fwcomma",  # ，
    }
    assert fonts.glyph_order(order, cmap) == [
        ".notdef", "A", "comma",  # before the first ideograph: kept in place, kerning and all
        "yi", "wang", "fwcomma",  # full-width forms and level 1, in their old order
        "rare",  # the rest of GB 2312
        "zhe", "part",  # everything else
    ]  # fmt: skip


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> tuple[TTFont, TTFont]:
    if not fonts.SOURCE.is_file():
        pytest.skip(f"{fonts.SOURCE} (fonts-wqy-microhei) is not installed")
    target = tmp_path_factory.mktemp("fonts") / "prepared.ttf"
    fonts.prepare(fonts.SOURCE, target)
    return TTFont(fonts.SOURCE, fontNumber=0), TTFont(target)


@needs_source
def test_the_prepared_font_draws_the_common_characters_as_the_installed_one(prepared):
    source, copy = prepared
    theirs, ours = source.getBestCmap(), copy.getBestCmap()
    common = [cp for cp in fonts.common_characters() if cp in theirs]
    assert len(common) > 7_000 and set(common) <= set(ours)
    assert 0x5586 not in ours  # 喆 is outside GB 2312: the installed font draws it
    glyf = copy["glyf"]
    composites = [name for name in copy.getGlyphOrder() if glyf[name].isComposite()]
    # drawn out in full, but for the few whose hinting would not survive it
    assert len(composites) < 300 and all(fonts._instructions(glyf, n) for n in composites)
    for char in "王伟，。：A7¥":  # same advance, same points (composites drawn out in full)
        cp = ord(char)
        assert fonts._drawn(copy, ours[cp]) == fonts._drawn(source, theirs[cp]), char
    # what a notice uses sits low: a Chinese comma or a common name is no longer glyph 30,000
    assert max(copy.getGlyphID(ours[ord(c)]) for c in "，；王伟芳（）") < 6_000
    assert copy["post"].formatType == 3.0 and "vmtx" not in copy


@needs_source
def test_the_check_refuses_a_font_whose_glyphs_moved(prepared):
    source, copy = prepared
    ours = copy.getBestCmap()
    moved = TTFont(io.BytesIO(_saved(copy)))
    glyf = moved["glyf"]
    a, b = ours[ord("王")], ours[ord("伟")]
    glyf[a], glyf[b] = glyf[b], glyf[a]
    with pytest.raises(RuntimeError, match="draws U\\+"):
        fonts._check(source, moved)


def _saved(font: TTFont) -> bytes:
    out = io.BytesIO()
    font.save(out)
    return out.getvalue()


@needs_source
def test_pdfs_draw_with_the_prepared_font_and_the_installed_one_for_the_rest():
    assert fonts.TARGET.is_file(), "`make` prepares the font before the tests"
    doc = (
        '<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8" /><title>t</title>'
        "</head><body><p>王喆 98.50，良好</p></body></html>"
    )
    pdf = PdfReader(io.BytesIO(html_to_pdf(doc)))
    used = {str(f.get_object()["/BaseFont"]) for f in pdf.pages[0]["/Resources"]["/Font"].values()}
    assert any("kaohe" in name for name in used), used  # the common characters
    assert any("WenQuanYi" in name and "kaohe" not in name for name in used), used  # 喆
    assert "王喆 98.50，良好" in pdf.pages[0].extract_text()
