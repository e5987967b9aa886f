"""The CJK font the PDFs are drawn with: WenQuanYi Micro Hei's common characters, reordered
once for fast subsetting.

    python -m reports.fonts [--source FILE] [TARGET]

Every PDF embeds a subset of its font. WeasyPrint copies the whole font file into memory for each
document and subsets it with HarfBuzz keeping the glyph ids, so a subset costs in proportion to the
size of the file and to the highest glyph id a document uses, not to the glyphs it uses. WenQuanYi
Micro Hei (Debian's fonts-wqy-microhei) is a 5 MB file of 49,531 glyphs ordered by code point,
full-width punctuation last: the comma of any Chinese sentence is glyph 34,429, and every notice
paid for copying and subsetting nearly the whole font, a tenth of its rendering time.

The file made here holds the characters of GB 2312 (its 6,763 ideographs and its symbols), Latin,
general punctuation, CJK punctuation and full-width forms, with the same outlines, advance widths
and kerning, in another order: first every glyph that comes before the ideographs (where the
kerning lives), then full-width forms and the 3,755 ideographs of GB 2312 level 1, then the rest.
It has no glyph names, no vertical metrics and no FontForge timestamp. kaohe.css names it first
in every font list; a character outside it (a rarer ideograph in a name) is drawn from the
installed WenQuanYi Micro Hei, or Noto Sans CJK, as before, and a machine without the file (no
`make`, no fonts-wqy-microhei) draws everything from the installed fonts.
"""

from __future__ import annotations

import argparse
import functools
import io
import sys
from collections.abc import Iterable
from pathlib import Path

from fontTools import subset
from fontTools.ttLib import TTFont
from fontTools.ttLib.reorderGlyphs import reorderGlyphs
from fontTools.ttLib.tables import ttProgram
from fontTools.ttLib.tables._g_l_y_f import Glyph

from reports.render import ASSETS

SOURCE = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
TARGET = ASSETS / "fonts" / "kaohe-wqy-microhei.ttf"
DROPPED = ["vhea", "vmtx", "FFTM"]
FULL_WIDTH = range(0xFF00, 0xFFF0)
# besides GB 2312: Latin, general punctuation, CJK punctuation, full-width forms
BLOCKS = (range(0x20, 0x250), range(0x2000, 0x2070), range(0x3000, 0x3040), FULL_WIDTH)


def _gb2312_level(char: str) -> int | None:
    """1 or 2 for the ideographs of GB 2312's two levels, 0 for its other characters."""
    try:
        code = char.encode("gb2312")
    except UnicodeEncodeError:
        return None
    if len(code) < 2:
        return 0
    row = code[0] - 0xA0
    return 1 if 16 <= row <= 55 else 2 if row >= 56 else 0


@functools.cache
def common_characters() -> frozenset[int]:
    """The code points the prepared font keeps: GB 2312 and the BLOCKS."""
    return frozenset(
        cp
        for cp in range(0x20, 0x10000)
        if not 0xD800 <= cp < 0xE000
        and (any(cp in block for block in BLOCKS) or _gb2312_level(chr(cp)) is not None)
    )


def glyph_order(order: list[str], cmap: dict[int, str]) -> list[str]:
    """`order` with the glyphs Chinese documents use most moved forward, each group keeping its
    original order (so coverage tables, sorted by glyph id, stay sorted)."""
    index = {name: i for i, name in enumerate(order)}
    first_ideograph = min(
        (index[g] for cp, g in cmap.items() if 0x4E00 <= cp <= 0x9FFF), default=len(order)
    )
    rank = dict.fromkeys(order, 3)
    for name in order[:first_ideograph]:
        rank[name] = 0
    for cp, name in cmap.items():
        if rank[name] == 0:
            continue
        level = 1 if cp in FULL_WIDTH else _gb2312_level(chr(cp))
        if level is not None:
            rank[name] = min(rank[name], 1 if level == 1 else 2)
    return sorted(order, key=lambda name: (rank[name], index[name]))


def prepare(source: Path, target: Path, *, font_number: int = 0) -> Path:
    """Write the prepared font made from `source` (a TTF, or the `font_number`th font of a
    TTC), and check it against `source` before it replaces `target`."""
    options = subset.Options(
        glyph_names=False,  # post format 3: half a megabyte of names HarfBuzz no longer reads
        notdef_outline=True,
        name_IDs=["*"],
        name_languages=["*"],
        layout_features=["*"],
        drop_tables=[*subset.Options().drop_tables, *DROPPED],
        recalc_timestamp=False,
    )
    font = TTFont(source, fontNumber=font_number, recalcTimestamp=False)
    _flatten(font, common_characters())
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=common_characters())
    subsetter.subset(font)
    # fontTools' own reordering (it keeps GDEF and GPOS coverage sorted), on the subset read
    # back, so that every table is decompiled in the subset's glyph order
    font = _reloaded(font)
    reorderGlyphs(font, glyph_order(font.getGlyphOrder(), font.getBestCmap()))
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    font.save(partial, reorderTables=True)
    try:
        _check(TTFont(source, fontNumber=font_number), TTFont(partial))
    except Exception:
        partial.unlink()
        raise
    partial.replace(target)
    return target


def _flatten(font: TTFont, characters: Iterable[int]) -> None:
    """Draw the glyphs of `characters` that are built of other glyphs (most of the font's
    ideographs are, from shared strokes and radicals) as plain outlines, point for point. Their
    parts, unmapped glyphs at the far end of the font, then leave the subset, and a document
    no longer reaches them. A glyph with hinting instructions in it or its parts stays as it is
    (238 of them, accented Latin and the like, whose parts come before the ideographs anyway)."""
    glyf, cmap = font["glyf"], font.getBestCmap()
    for name in {cmap[cp] for cp in characters if cp in cmap}:
        glyph = glyf[name]
        if not glyph.isComposite() or _instructions(glyf, name):
            continue
        coordinates, ends, flags = glyph.getCoordinates(glyf)
        plain = Glyph()
        plain.numberOfContours = len(ends)
        plain.coordinates, plain.endPtsOfContours, plain.flags = coordinates, ends, flags
        plain.program = ttProgram.Program()
        plain.program.fromBytecode(b"")
        plain.recalcBounds(glyf)
        glyf[name] = plain


def _reloaded(font: TTFont) -> TTFont:
    data = io.BytesIO()
    font.save(data)
    data.seek(0)
    return TTFont(data, recalcTimestamp=False)


def _instructions(glyf: object, name: str) -> tuple[bytes, ...]:
    """A glyph's hinting programs, its parts' included, the empty ones left out."""
    glyph = glyf[name]  # type: ignore[index]
    own = glyph.program.getBytecode() if hasattr(glyph, "program") else b""
    parts = [p for c in getattr(glyph, "components", []) for p in _instructions(glyf, c.glyphName)]
    return tuple(p for p in (own, *parts) if p)


def _drawn(font: TTFont, name: str) -> tuple[object, ...]:
    glyf = font["glyf"]
    coordinates, ends, flags = glyf[name].getCoordinates(glyf)
    return (
        font["hmtx"][name],
        list(coordinates),
        ends,
        bytes(flags),
        _instructions(glyf, name),
    )


def _check(source: TTFont, copy: TTFont) -> None:
    """Every common character drawn as in `source`: the same points, advance, side bearing and
    hinting, and the same kerning between them."""
    theirs, ours = source.getBestCmap(), copy.getBestCmap()
    # (the subsetter also keeps a few code points that share a glyph with a common one)
    if not theirs.keys() & common_characters() <= ours.keys() <= theirs.keys():
        raise RuntimeError("the prepared font maps other characters than its source's common ones")
    theirs = {cp: name for cp, name in theirs.items() if cp in ours}
    for cp in sorted(ours):
        if _drawn(source, theirs[cp]) != _drawn(copy, ours[cp]):
            raise RuntimeError(f"the prepared font draws U+{cp:04X} differently")
    kerned = [_kerning(font, cmap) for font, cmap in ((source, theirs), (copy, ours))]
    if kerned[0] != kerned[1]:
        raise RuntimeError("the prepared font kerns differently from its source")


def _kerning(font: TTFont, cmap: dict[int, str]) -> set[tuple[int, int, object]]:
    """The pair adjustments of the font's GPOS, by character."""
    chars: dict[str, list[int]] = {}
    for cp, name in cmap.items():
        chars.setdefault(name, []).append(cp)
    pairs = set()
    for lookup in font["GPOS"].table.LookupList.Lookup if "GPOS" in font else []:
        for sub in lookup.SubTable:
            if lookup.LookupType != 2 or sub.Format != 1:
                raise RuntimeError("the source font has kerning this check does not read")
            for first, pair_set in zip(sub.Coverage.glyphs, sub.PairSet, strict=True):
                for record in pair_set.PairValueRecord:
                    value = getattr(record.Value1, "XAdvance", 0)
                    for a in chars.get(first, []):
                        for b in chars.get(record.SecondGlyph, []):
                            pairs.add((a, b, value))
    return pairs


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", nargs="?", type=Path, default=TARGET)
    parser.add_argument("--source", type=Path, default=SOURCE)
    args = parser.parse_args(None if argv is None else list(argv))
    if not args.source.is_file():
        print(
            f"kaohe: {args.source} is missing (Debian's fonts-wqy-microhei): PDFs use the "
            "installed fonts, and subsetting them costs a notice about a tenth more time",
            file=sys.stderr,
        )
        return 0
    prepare(args.source, args.target)
    print(f"kaohe: prepared {args.target} from {args.source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
