"""Reusable layouts: created and previewed in the admin, checked like campaign HTML, applied in the compose
form by wrapping the HTML body (the campaign keeps its own copy)."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from preference_center.extensions import db
from preference_center.models import AuditLog, MailTemplate

from .helpers import csrf_token, factories, text_of

LAYOUT = ('<div class="frame"><p>Acme news for {{ contact.first_name|default("you") }}</p>{{ content }}'
          '<p><a href="{{ preferences_url }}">Preferences</a></p></div>')


@pytest.fixture
def news(ctx):
    topic = factories.topic("news")
    db.session.commit()
    return topic


def test_a_layout_is_saved_previewed_and_audited(news, as_marketer):
    response = as_marketer.post("/admin/layouts/new", {"name": "Monthly frame", "html": LAYOUT, "action": "save"})
    assert response.status_code == 302
    layout = db.session.scalar(select(MailTemplate))
    page = as_marketer.get(f"/admin/layouts/{layout.id}")
    assert page.status_code == 200
    assert "Acme news for Sample" in page.text and "content goes here" in page.text  # the preview frame
    assert db.session.scalar(select(AuditLog.action).where(AuditLog.action == "layout.create"))
    assert "Monthly frame" in text_of(as_marketer.get("/admin/layouts").text)


@pytest.mark.parametrize("html, problem", [
    ("<div>no marker</div>", "exactly once"),
    ("{{ content }}{{ content }}", "exactly once"),
    ("<p>{{ contact.shoe }}</p>{{ content }}", "unknown variable"),
    ("{% for %}{{ content }}", "syntax error"),
])
def test_a_bad_layout_is_a_form_error_and_nothing_is_stored(news, as_marketer, html, problem):
    response = as_marketer.post("/admin/layouts/new", {"name": "Bad", "html": html, "action": "save"})
    assert response.status_code == 422 and problem in text_of(response.text)
    assert db.session.scalar(select(func.count(MailTemplate.id))) == 0


def test_two_layouts_cannot_share_a_name(news, as_marketer):
    as_marketer.post("/admin/layouts/new", {"name": "Frame", "html": LAYOUT, "action": "save"})
    again = as_marketer.post("/admin/layouts/new", {"name": "Frame", "html": LAYOUT, "action": "save"})
    assert again.status_code == 409 and "another layout has this name" in text_of(again.text)


def test_applying_a_layout_wraps_the_html_body_in_the_compose_form(news, as_marketer):
    as_marketer.post("/admin/layouts/new", {"name": "Frame", "html": LAYOUT, "action": "save"})
    layout = db.session.scalar(select(MailTemplate))
    page = as_marketer.get("/admin/campaigns/new")
    assert "Apply layout to the HTML body" in page.text
    response = as_marketer.post("/admin/campaigns/new", {
        "csrf_token": csrf_token(page.text), "name": "W", "topic": "news", "subject": "Hi",
        "html": "<h1>Winter</h1>", "text": "Hi", "layout": str(layout.id), "action": "apply_layout"})
    assert response.status_code == 200
    assert "{{ content }}" not in response.text
    assert ("&lt;div class=&#34;frame&#34;&gt;&lt;p&gt;Acme news for" in response.text
            and "&lt;h1&gt;Winter&lt;/h1&gt;" in response.text)
    assert "wrapped in the layout" in text_of(response.text)
