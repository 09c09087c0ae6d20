"""The local outbox page: read the .eml files the outbox transport wrote and click their links."""
from __future__ import annotations

import re
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from flask import Blueprint, abort, current_app, render_template_string
from markupsafe import Markup, escape

bp = Blueprint("outbox", __name__, url_prefix="/outbox")

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
<style>
 body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 60rem; padding: 1rem; line-height: 1.4; }
 .note { background: #fff4ce; padding: .5rem .75rem; border-radius: .25rem; }
 ul.mail { list-style: none; padding: 0; } ul.mail li { border-bottom: 1px solid #ddd; padding: .5rem 0; }
 ul.mail a { display: block; text-decoration: none; color: inherit; } ul.mail a:hover strong { text-decoration: underline; }
 small { color: #555; } table { border-collapse: collapse; width: 100%; font-size: .9rem; }
 th, td { text-align: left; vertical-align: top; padding: .2rem .4rem; border-bottom: 1px solid #eee; word-break: break-all; }
 pre { white-space: pre-wrap; word-wrap: break-word; background: #f6f6f6; padding: .75rem; }
 iframe { width: 100%; height: 70vh; border: 1px solid #ccc; }
</style></head><body>
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
{% if html is not none %}<h2>HTML</h2>
<iframe title="HTML body" sandbox="allow-popups allow-popups-to-escape-sandbox allow-top-navigation-by-user-activation"
 srcdoc="{{ html }}"></iframe>{% endif %}
{% if text is not none %}<h2>Text</h2><pre>{{ text }}</pre>{% endif %}
"""


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


@bp.get("/<name>")
def show(name: str) -> str:
    """One message: headers, HTML body in a sandboxed frame, text body with clickable links."""
    if not NAME.fullmatch(name):
        abort(404)
    path = _folder() / name
    if not path.is_file():
        abort(404)
    msg = _read(path)
    html = _part(msg, "html")
    if html is not None:
        # Links in mail have no target; without this they would open inside the frame.
        html = '<base target="_blank">' + html
    text = _part(msg, "plain")
    return render_template_string(
        SHOW, title=msg["Subject"] or name, msg=msg, html=html,
        text=linkify(text) if text is not None else None,
    )
