"""The staff pages are translatable: no visible English is left outside `_()` / `{% trans %}` in their templates.

Spanish for every marked string is checked by test_translations.py; this test checks that nothing visible escaped
the marking: text between tags, the attributes people read (title, placeholder, aria-label, alt), and quoted words
printed by an expression in the text (`{{ 'Retire' if ... }}`, a macro's label argument).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STAFF_TEMPLATES = sorted((ROOT / "templates/admin").glob("*.html"))

# Words that read the same in Spanish (formats, names of things, units).
SAME_IN_SPANISH = {"CSV", "JSON", "ZIP", "API", "HTML", "URL", "UTC", "ID", "SendGrid", "Webhook", "Webhooks", "Email",
                   "OK", "CSP", "IP", "HMAC", "SHA", "Standard", "SVG", "PNG", "JPEG", "px", "ms"}

COMMENT = re.compile(r"\{#.*?#\}", re.S)
TRANS_BLOCK = re.compile(r"\{%-?\s*trans\b.*?\{%-?\s*endtrans\s*-?%\}", re.S)
CODE = re.compile(r"<(script|style)\b.*?</\1>", re.S | re.I)
STATEMENT = re.compile(r"\{%.*?%\}", re.S)
EXPRESSION = re.compile(r"\{\{.*?\}\}", re.S)
TAG = re.compile(r"<[^>]*>", re.S)
READ_ATTRIBUTE = re.compile(r"\b(title|placeholder|aria-label|alt)\s*=\s*\"([^\"]*)\"", re.I)
ENTITY = re.compile(r"&#?\w+;")
LITERAL = re.compile(r"""(?P<before>[\w.]*\(\s*)?(?P<quote>['"])(?P<text>(?:(?!(?P=quote)).)*)(?P=quote)""")
MARKERS = ("_(", "gettext(", "ngettext(", "_l(")


def _words(text: str) -> list[str]:
    return [w for w in re.findall(r"[A-Za-zÀ-ÿ]{2,}", ENTITY.sub(" ", text)) if w not in SAME_IN_SPANISH]


def _inside_tag(source: str, position: int) -> bool:
    return source.rfind("<", 0, position) > source.rfind(">", 0, position)


def _looks_like_prose(text: str) -> bool:
    # Lower-case identifiers ('admin.topic_edit', 'retired', 'btn-danger') are code, not words a person reads.
    return bool(_words(text)) and (" " in text.strip() or any(c.isupper() for c in text))


def unmarked(source: str) -> list[str]:
    """Visible English in a staff template that is not marked for translation."""
    source = CODE.sub(" ", TRANS_BLOCK.sub(" ", COMMENT.sub(" ", source)))
    found = []
    for match in EXPRESSION.finditer(source):
        if _inside_tag(source, match.start()):
            continue
        for literal in LITERAL.finditer(match.group(0)):
            before = literal.group("before") or ""
            if not before.endswith(MARKERS) and _looks_like_prose(literal.group("text")):
                found.append(f"printed literal {literal.group(0)!r}")
    plain = EXPRESSION.sub(" ", STATEMENT.sub(" ", source))
    for attribute in READ_ATTRIBUTE.finditer(plain):
        if _words(attribute.group(2)):
            found.append(f"{attribute.group(1)}={attribute.group(2)!r}")
    for text in TAG.sub("\n", plain).splitlines():
        if _words(text):
            found.append(f"text {text.strip()!r}")
    return found


@pytest.mark.parametrize("template", STAFF_TEMPLATES, ids=lambda path: path.name)
def test_a_staff_template_marks_everything_a_person_reads(template):
    left = unmarked(template.read_text(encoding="utf-8"))
    assert not left, f"{template.name}: " + "; ".join(left)


def test_the_check_finds_unmarked_text_and_accepts_marked_text():
    assert unmarked('<h1>Topics</h1><input placeholder="Search"><p>{{ button("x", "Retire") }}</p>') == [
        "printed literal '\"Retire\"'", "placeholder='Search'", "text 'Topics'"]
    assert unmarked('<h1>{{ _("Topics") }}</h1><input placeholder="{{ _(\'Search\') }}">'
                    '<p>{{ button(url_for("admin.x"), _("Retire")) }}</p><p class="{{ \'retired\' }}">CSV</p>'
                    '{% trans n=3 %}{{ n }} contacts{% endtrans %}') == []
