"""The floors for the web paths, on the same gunicorn settings: a bare Flask app importing nothing of the project.

- `POST /u/<token>` (one-click's floor) inserts one row;
- `GET /p/<id>` (the preference page's floor) reads one contact row and
  renders a Jinja template of the same size as the product's page
  (PC_BENCH_PAGE_BYTES, measured by the benchmark on a real page).
"""
import os

from flask import Flask, abort, render_template_string, request
from sqlalchemy import create_engine, text

engine = create_engine(os.environ["PC_DATABASE_URL"], pool_size=5)
app = Flask(__name__)

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Your preferences</title></head>
<body><main><h1>Hello {{ name }}</h1><p>{{ email }}</p><ul>{% for topic in topics %}
<li><label><input type="checkbox" name="topic" value="{{ topic }}" checked> {{ topic }}</label></li>{% endfor %}
</ul><p>{{ filler }}</p></main></body></html>"""
with app.app_context():  # the filler that brings the page to the product page's size
    _base = len(render_template_string(PAGE, name="User 1", email="user1@bench.example.com", topics=["News"],
                                       filler="").encode())
FILLER = "x" * max(0, int(os.environ.get("PC_BENCH_PAGE_BYTES", "4000")) - _base)


@app.post("/u/<token>")
def hit(token):
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO floor_hits (token, body) VALUES (:t, :b)"),
                     {"t": token, "b": request.get_data(as_text=True)})
    return "ok"


@app.get("/p/<int:contact_id>")
def page(contact_id):
    with engine.connect() as conn:
        row = conn.execute(text("SELECT name, email FROM contacts WHERE id = :i"), {"i": contact_id}).one_or_none()
    if row is None:
        abort(404)
    return render_template_string(PAGE, name=row.name, email=row.email, topics=["News"], filler=FILLER)
