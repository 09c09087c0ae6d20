"""The text version written from the HTML on request: readable, links kept, template tags untouched."""
from __future__ import annotations

from sqlalchemy import func, select

from preference_center.extensions import db
from preference_center.mail.plaintext import html_to_text
from preference_center.models import Campaign

from .helpers import csrf_token, factories, text_of

HTML = ('<h1>Hi {{ contact.name|title }}</h1><p>Our <b>winter</b> &amp; spring news.<br>Line two</p>'
        '<ul><li>One</li><li>Two</li></ul><p><a href="https://example.com/shop">Shop now</a> '
        '<a href="#top">top</a></p><style>p { color: red }</style><script>alert(1)</script><img alt="Logo">')


def test_blocks_lists_links_and_template_tags_come_through():
    assert html_to_text(HTML) == ("Hi {{ contact.name|title }}\n\nOur winter & spring news.\nLine two\n\n- One\n"
                                  "- Two\n\nShop now (https://example.com/shop) top\n\nLogo\n")


def test_nothing_in_gives_an_empty_line():
    assert html_to_text("") == "\n"


def test_the_compose_form_writes_the_text_version_without_saving(as_marketer, ctx):
    factories.topic("news")
    db.session.commit()
    page = as_marketer.get("/admin/campaigns/new")
    response = as_marketer.post("/admin/campaigns/new", {
        "csrf_token": csrf_token(page.text), "name": "W", "topic": "news", "subject": "Hi", "html": HTML,
        "text": "", "action": "text_from_html"})
    assert response.status_code == 200
    assert "Shop now (https://example.com/shop)" in response.text and "{{ contact.name|title }}" in response.text
    assert "The text version was written from the HTML" in text_of(response.text)
    assert db.session.scalar(select(func.count(Campaign.id))) == 0
