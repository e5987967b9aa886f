"""Documents parsed by expat instead of WeasyPrint's HTML parser (see reports.render._parsed).

The templates write markup that is also well-formed XML. For the plain HTML they use, an XML
parser builds the tree an HTML parser builds; for much else it does not (a comment, a CDATA
section, `<pre>` and its first newline, a character reference that HTML maps through cp1252, a
table row outside a row group, a table inside a paragraph, inline SVG, a newline in an attribute,
…). `tree()` therefore takes a document only when every element sits where the HTML parser would
leave it (CHILDREN) and the markup holds none of those constructs; anything else goes to
WeasyPrint's own parser, as before. Data cannot change the shape: templates escape it as text.

Imported only where a PDF is made: importing WeasyPrint costs half a second.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import cssselect2
from defusedxml import DefusedXmlException
from defusedxml import ElementTree as DefusedET
from weasyprint import HTML
from weasyprint.urls import URLFetcher

PHRASING = frozenset({"span", "strong", "em", "b", "i", "small", "sub", "sup", "br", "a", "img"})
FLOW = PHRASING | {"p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol"}
# where each element may sit for the two parsers to agree (an <a> holds no <a>, a <p> no block)
CHILDREN: dict[str, frozenset[str]] = {
    "html": frozenset({"head", "body"}),
    "head": frozenset({"meta", "title", "style", "link"}),
    "body": FLOW,
    "div": FLOW,
    "li": FLOW,
    "td": FLOW,
    "th": FLOW,
    "table": frozenset({"caption", "colgroup", "thead", "tbody", "tfoot"}),
    "caption": PHRASING,
    "colgroup": frozenset({"col"}),
    "thead": frozenset({"tr"}),
    "tbody": frozenset({"tr"}),
    "tfoot": frozenset({"tr"}),
    "tr": frozenset({"td", "th"}),
    "ul": frozenset({"li"}),
    "ol": frozenset({"li"}),
    "a": PHRASING - {"a"},
    **dict.fromkeys(PHRASING - {"a"} | {"p", "h1", "h2", "h3", "h4", "h5", "h6"}, PHRASING),
    **dict.fromkeys(("meta", "title", "style", "link", "col", "br", "img"), frozenset()),
}
# raw text, where HTML keeps a character reference as written and XML decodes it
RAW = frozenset({"style"})
# where HTML moves text that is not white space out in front of the table
TABULAR = frozenset({"table", "colgroup", "thead", "tbody", "tfoot", "tr"})
VOID = "area|base|br|col|embed|hr|img|input|link|meta|source|track|wbr"
NOT_ALIKE = re.compile(
    r"<!--|<!\[|<\?"  # comments, CDATA, processing instructions
    r"|&#(?!3[49];)"  # character references other than the &#34; and &#39; Jinja writes
    rf"|<(?!(?:{VOID})\b)[a-zA-Z][^>]*/>"  # a non-void element closed by its start tag
    rf"|</(?:{VOID})\b"  # an end tag of a void element (HTML reads </br> as <br>)
    r"|<[^>]*[\t\n\r][^>]*>"  # a tag spanning lines: XML turns the breaks in values into spaces
)


def tree(markup: str) -> ET.Element | None:
    """The document tree by expat, or None where WeasyPrint's HTML parser could build another."""
    if NOT_ALIKE.search(markup):
        return None
    try:
        # defusedxml: no entity declared in markup is ever expanded
        root = DefusedET.fromstring(markup)
    except (ET.ParseError, DefusedXmlException, ValueError):  # ValueError: a lone surrogate
        return None
    # HTML drops white space before <head> and moves what follows </body> into the body
    if root.tag != "html" or root.text or any(c.tag == "body" and c.tail for c in root):
        return None
    for parent in root.iter():
        allowed = CHILDREN.get(parent.tag)
        if allowed is None or any(child.tag not in allowed for child in parent):
            return None
        if any(not name.islower() or not name.isascii() or ":" in name for name in parent.attrib):
            return None  # HTML lowercases names; xml:lang and the like are namespaced in XML
        if parent.tag in RAW and "&" in (parent.text or ""):
            return None
        if parent.tag in TABULAR and any(
            text and not text.isspace() for text in [parent.text, *(c.tail for c in parent)]
        ):
            return None
    return root


class ParsedHTML(HTML):
    """What HTML.__init__ sets once tinyhtml5 has parsed the string (weasyprint 70.0, pinned in
    the lock file), set from `root` instead. A WeasyPrint that sets more would fail the
    byte-for-byte test in test_markup rather than render differently unseen."""

    def __init__(self, root: ET.Element, base_url: str, url_fetcher: URLFetcher) -> None:
        # no super().__init__(): that is the parse this class exists to skip
        self.base_url = base_url
        self.url_fetcher = url_fetcher
        self.media_type = "print"
        self.wrapper_element = cssselect2.ElementWrapper.from_html_root(root, content_language=None)
        self.etree_element = self.wrapper_element.etree_element
