"""The local outbox page: read the .eml files the outbox transport wrote and click their links."""
from __future__ import annotations

import re
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from flask import Blueprint, Response, abort, current_app, render_template_string
from markupsafe import Markup, escape

# Its own stylesheet and script (the app's policy allows no inline style or script).
bp = Blueprint("outbox", __name__, url_prefix="/outbox", static_folder="static")

NAME = re.compile(r"[A-Za-z0-9._-]+\.eml")
URL = re.compile(r"https?://[^\s<>\"]+")
LIST_LIMIT = 200


def _folder() -> Path:
    return Path(current_app.config["PC_INSTANCE_PATH"]) / "outbox"


@bp.before_request
def _not_in_production() -> None:
    # Real recipients' mail must never be browsable from the web.
    if current_app.config.get("PC_ENV") == "production":
        abort(404)


def _read(path: Path) -> EmailMessage:
    with path.open("rb") as fh:
        return BytesParser(policy=policy.default).parse(fh)  # type: ignore[return-value]


def _part(msg: EmailMessage, subtype: str) -> str | None:
    part = msg.get_body(preferencelist=(subtype,))
    if part is None or part.get_content_subtype() != subtype:
        return None
    return part.get_content()


def linkify(text: str) -> Markup:
    """Escape plain text and turn its http(s) URLs into links that open in a new tab."""
    pieces, last = [], 0
    for match in URL.finditer(text):
        url = match.group(0).rstrip(".,;:)")
        pieces.append(escape(text[last:match.start()]))
        pieces.append(Markup('<a href="{0}" target="_blank" rel="noopener">{0}</a>').format(url))
        last = match.start() + len(url)
    pieces.append(escape(text[last:]))
    return Markup("").join(pieces)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<link rel="stylesheet" href="{{ url_for('outbox.static', filename='outbox.css') }}">
<script src="{{ url_for('outbox.static', filename='outbox.js') }}" defer></script>
</head><body>
<!-- body -->
</body></html>"""

LIST_BODY = """
<h1>Outbox</h1>
<p class="note">Development only: mail the <code>outbox</code> transport wrote instead of sending. Newest first.</p>
{% if messages %}<ul class="mail">
{% for m in messages %}<li><a href="{{ url_for('outbox.show', name=m.name) }}">
 <strong>{{ m.subject or "(no subject)" }}</strong><br><small>{{ m.date }} &middot; to {{ m.to }}</small></a></li>
{% endfor %}</ul>
{% else %}<p>No messages yet.</p>{% endif %}
"""

SHOW_BODY = """
<p><a href="{{ url_for('outbox.index') }}">&larr; Outbox</a></p>
<h1>{{ msg["Subject"] or "(no subject)" }}</h1>
<details><summary>Headers</summary><table>
{% for name, value in msg.items() %}<tr><th>{{ name }}</th><td>{{ value }}</td></tr>{% endfor %}
</table></details>
{% if has_html %}<h2>HTML</h2>
<p><small><a href="{{ url_for('outbox.html_body', name=name) }}" target="_blank" rel="noopener">Open the HTML body
 on its own</a></small></p>
<iframe class="mail-html" title="HTML body" src="{{ url_for('outbox.html_body', name=name) }}"
 sandbox="allow-same-origin allow-popups allow-popups-to-escape-sandbox allow-top-navigation-by-user-activation">
</iframe>{% endif %}
{% if text is not none %}<h2>Text</h2><pre>{{ text }}</pre>{% endif %}
"""

# The HTML body alone, in the frame: its own inline styles and remote images as a mail client shows
# them, and no script at all (the frame's sandbox has no allow-scripts, and the policy says so again).
HTML_BODY_CSP = ("default-src 'none'; img-src * data:; style-src 'unsafe-inline' *; font-src * data:; "
                 "script-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'self'; "
                 "sandbox allow-same-origin allow-popups allow-popups-to-escape-sandbox "
                 "allow-top-navigation-by-user-activation")


LIST = PAGE.replace("<!-- body -->", LIST_BODY)
SHOW = PAGE.replace("<!-- body -->", SHOW_BODY)


@bp.get("/")
def index() -> str:
    """List the newest messages: date, recipient, subject."""
    folder = _folder()
    # File names start with a UTC timestamp, so name order is age order.
    paths = sorted(folder.glob("*.eml"), reverse=True)[:LIST_LIMIT] if folder.is_dir() else []
    messages = []
    for path in paths:
        msg = _read(path)
        messages.append({"name": path.name, "date": msg["Date"], "to": msg["To"], "subject": msg["Subject"]})
    return render_template_string(LIST, title="Outbox", messages=messages)


def _message(name: str) -> EmailMessage:
    if not NAME.fullmatch(name):
        abort(404)
    path = _folder() / name
    if not path.is_file():
        abort(404)
    return _read(path)


@bp.get("/<name>")
def show(name: str) -> str:
    """One message: headers, HTML body in a sandboxed frame sized to it, text body with clickable links."""
    msg = _message(name)
    text = _part(msg, "plain")
    return render_template_string(
        SHOW, title=msg["Subject"] or name, msg=msg, name=name, has_html=_part(msg, "html") is not None,
        text=linkify(text) if text is not None else None,
    )


@bp.get("/<name>/html")
def html_body(name: str) -> Response:
    """The HTML body alone, for the frame on the message's page (no scripts; links open a new tab)."""
    html = _part(_message(name), "html")
    if html is None:
        abort(404)
    # Links in mail have no target; without this they would open inside the frame.
    response = Response('<base target="_blank">' + html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = HTML_BODY_CSP
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response
