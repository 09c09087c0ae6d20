"""The development outbox page under the app's own Content-Security-Policy.

The app forbids inline style and script, so the page takes its look from a stylesheet file and the HTML
body of a mail is its own document (a sandboxed frame without scripts, sized to the body by a script
file), shown whole: the footer links included.
"""
from __future__ import annotations

import re
from pathlib import Path

from preference_center.mail import Envelope, MessageBatch, OutboxTransport

FOOTER = '<hr><p style="font-size:12px">You get this because... <a href="https://pc.example/u/1">Unsubscribe</a></p>'


def write_mail(app) -> str:
    folder = Path(app.config["PC_INSTANCE_PATH"]) / "outbox"
    html = "<h1>Winter news</h1>" + "<p>Long paragraph.</p>" * 200 + FOOTER
    OutboxTransport(folder).send(MessageBatch(from_email="news@example.com", subject="Winter", text="Hi",
                                              html=html, envelopes=[Envelope(to="ana@example.com")]))
    return next(folder.glob("*.eml")).name


def test_the_outbox_pages_have_no_inline_style_and_link_their_stylesheet(app, client):
    name = write_mail(app)
    for path in ("/outbox/", f"/outbox/{name}"):
        page = client.get(path)
        assert page.status_code == 200
        html = page.get_data(as_text=True)
        assert "<style" not in html and not re.search(r"\sstyle=", html), path
        assert "<script>" not in html  # only script files
        assert "'unsafe-inline'" not in page.headers["Content-Security-Policy"]
        assert 'href="/outbox/static/outbox.css"' in html
    sheet = client.get("/outbox/static/outbox.css")
    assert sheet.status_code == 200 and sheet.mimetype == "text/css" and "iframe.mail-html" in sheet.get_data(as_text=True)
    assert client.get("/outbox/static/outbox.js").status_code == 200


def test_the_html_body_is_its_own_sandboxed_document_shown_whole(app, client):
    name = write_mail(app)
    page = client.get(f"/outbox/{name}").get_data(as_text=True)
    assert f'<iframe class="mail-html" title="HTML body" src="/outbox/{name}/html"' in page
    assert "srcdoc" not in page and "allow-scripts" not in page
    body = client.get(f"/outbox/{name}/html")
    assert body.status_code == 200 and body.mimetype == "text/html"
    html = body.get_data(as_text=True)
    assert html.startswith('<base target="_blank"><h1>Winter news</h1>') and html.rstrip().endswith(FOOTER)
    policy = body.headers["Content-Security-Policy"]
    assert "script-src 'none'" in policy and "sandbox" in policy and "allow-scripts" not in policy
    assert body.headers["X-Frame-Options"] == "SAMEORIGIN"


def test_a_mail_without_html_has_no_html_body_page(app, client):
    folder = Path(app.config["PC_INSTANCE_PATH"]) / "outbox"
    OutboxTransport(folder).send(MessageBatch(from_email="news@example.com", subject="Plain", text="Hi",
                                              envelopes=[Envelope(to="ana@example.com")]))
    name = next(folder.glob("*.eml")).name
    assert "iframe" not in client.get(f"/outbox/{name}").get_data(as_text=True)
    assert client.get(f"/outbox/{name}/html").status_code == 404
    assert client.get("/outbox/..%2Fx.eml/html").status_code == 404
