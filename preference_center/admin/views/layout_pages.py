"""Reusable mail layouts: list, create, edit with a preview."""
from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from wtforms import StringField, TextAreaField
from wtforms.validators import DataRequired, Length

from ... import layouts, topics
from ...commands import DomainError
from ...commands import layouts as layout_commands
from ...extensions import db
from ...inputs import Form
from .. import auth, bp, preview
from .campaign_pages import _with_preview_csp
from .common import _field_error


def _sample_content() -> str:
    """Stand-in for a campaign's content in the layout preview (a Jinja body, in the page's language)."""
    name = "{{ contact.first_name|default(" + repr(_("there")) + ") }}"
    greeting, content = _("Hello %(name)s", name=name), _("Your campaign's content goes here.")
    return f"<h1>{greeting}</h1><p>{content}</p>"


class LayoutForm(Form):
    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=200)])
    html = TextAreaField(_l("HTML layout (put %(marker)s where the campaign's content goes)", marker=layouts.MARKER),
                         validators=[DataRequired(), Length(max=200_000)])


def _preview(html: str):
    """The layout around sample content, as a sample recipient would get it (None without a marketing topic)."""
    topic = next((t for t in topics.all_topics(include_retired=False) if t.kind == "marketing"), None)
    if topic is None or layouts.MARKER not in html:
        return None, None
    try:
        sample = html.replace(layouts.MARKER, _sample_content(), 1)
        return preview.render_for(topic, _("Layout preview"), sample, "", None), None
    except preview.PreviewError as exc:
        return None, str(exc)


@bp.get("/layouts")
def layout_list():
    return render_template("admin/layouts.html", layouts=layouts.all_layouts())


@bp.route("/layouts/new", methods=["GET", "POST"])
@bp.route("/layouts/<int:layout_id>", methods=["GET", "POST"])
def layout_edit(layout_id: int | None = None):
    layout = None
    if layout_id is not None:
        layout = layouts.get(layout_id) or abort(404)
    form = LayoutForm(request.form if request.method == "POST" else None, obj=layout)
    if request.method == "GET" and layout is None:
        form.html.data = f"<div>\n  {layouts.MARKER}\n</div>"
    status = 200
    if request.method == "POST":
        if form.validate() and request.form.get("action") != "preview":
            try:
                layout = layout_commands.save(auth.current_actor(), form.name.data, form.html.data, layout)
            except DomainError as exc:
                db.session.rollback()
                _field_error(form, exc)
                status = exc.status
            else:
                db.session.commit()
                flash(_("Layout “%(name)s” saved.", name=layout.name))
                return redirect(url_for("admin.layout_edit", layout_id=layout.id))
        elif not form.validate():
            status = 422
    rendered, problem = _preview(form.html.data or "")
    return _with_preview_csp((render_template("admin/layout_form.html", form=form, layout=layout, rendered=rendered,
                                              problem=problem), status))
