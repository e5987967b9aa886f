"""A WeasyPrint document from a tree that is already parsed (see reports.render._parsed).

Imported only where a PDF is made: importing WeasyPrint costs half a second.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import cssselect2
from weasyprint import HTML
from weasyprint.urls import URLFetcher


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
