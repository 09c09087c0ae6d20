"""A plain-text part written from an HTML part, for staff who only wrote the HTML.

Block elements become paragraphs and line breaks, list items get a dash, a link keeps its text and
shows its address after it ("Shop (https://…)"), images show their alt text, scripts and styles
vanish. Template tags (`{{ contact.name }}`, `{% if %}`) are text to the HTML parser, so they come
through unchanged and the result is itself a template.
"""
from __future__ import annotations

import re
from html.parser import HTMLParser

BLOCKS = frozenset({"p", "div", "section", "article", "header", "footer", "table", "tr", "ul", "ol", "h1", "h2",
                    "h3", "h4", "h5", "h6", "blockquote", "hr", "center"})
SKIPPED = frozenset({"script", "style", "head", "title"})


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.links: list[str | None] = []
        self.skipping = 0

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag in SKIPPED:
            self.skipping += 1
        elif tag in BLOCKS:
            self.out.append("\n\n")
        elif tag == "br":
            self.out.append("\n")
        elif tag == "li":
            self.out.append("\n- ")
        elif tag in ("td", "th"):
            self.out.append(" ")
        elif tag == "img" and attributes.get("alt"):
            self.out.append(attributes["alt"])
        if tag == "a":
            self.links.append(attributes.get("href"))

    def handle_endtag(self, tag):
        if tag in SKIPPED:
            self.skipping = max(0, self.skipping - 1)
        elif tag in BLOCKS:
            self.out.append("\n\n")
        elif tag == "a" and self.links:
            href = self.links.pop()
            if href and not href.startswith(("#", "mailto:")):
                self.out.append(f" ({href})")

    def handle_data(self, data):
        if not self.skipping:
            self.out.append(re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    """The text version of an HTML body (see the module docstring)."""
    parser = _Text()
    parser.feed(html or "")
    parser.close()
    text = "".join(parser.out)
    lines = [line.strip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"
