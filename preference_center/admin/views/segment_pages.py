"""Saved segments: list with live counts, create and edit (topic plus audience filters)."""
from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from wtforms import DateField, SelectField, StringField
from wtforms.validators import DataRequired, Length, Optional

from ... import segments, topics
from ...commands import DomainError
from ...commands import segments as segment_commands
from ...extensions import db
from ...inputs import Form, options
from ...models import RELATIONSHIPS, Topic
from .. import auth, bp
from ..forms import AttributeFiltersField, CheckboxesField, audience_of
from ..labels import choices
from ..segment_values import segment_values
from .common import _field_error, grouped


class SegmentForm(Form):
    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=200)])
    topic = SelectField(_l("Topic"), validators=[DataRequired()])
    relationships = CheckboxesField(_l("Only these relationships (none ticked: everyone eligible)"),
                                    choices=options(choices('relationship', RELATIONSHIPS)))
    locales = StringField(_l("Only these locales (comma-separated, e.g. en, es)"),
                          validators=[Optional(), Length(max=200)])
    companies = StringField(_l("Only these companies (comma-separated; any case)"),
                            validators=[Optional(), Length(max=2000)])
    sources = StringField(_l("Only contacts from these sources (comma-separated, e.g. import:12)"),
                          validators=[Optional(), Length(max=2000)])
    created_after = DateField(_l("Created on or after"), validators=[Optional()])
    created_before = DateField(_l("Created before"), validators=[Optional()])
    interacted_after = DateField(_l("Last interaction on or after"), validators=[Optional()])
    interacted_before = DateField(_l("Last interaction before"), validators=[Optional()])
    attribute_filters = AttributeFiltersField()


def _form(formdata=None, **values) -> SegmentForm:
    form = SegmentForm(formdata=formdata, **values)
    form.topic.choices = options((t.key, t.name) for t in topics.all_topics(include_retired=False) if t.kind == "marketing")
    return form


@bp.get("/segments")
def segment_list():
    rows = [(segment, topic, segments.count(segment)) for segment, topic in segments.all_segments()]
    return render_template("admin/segments.html", rows=rows)


@bp.route("/segments/new", methods=["GET", "POST"])
@bp.route("/segments/<int:segment_id>", methods=["GET", "POST"])
def segment_edit(segment_id: int | None = None):
    segment = None
    if segment_id is not None:
        segment = segments.get(segment_id) or abort(404)
    if request.method == "POST":
        form = _form(request.form)
    elif segment is not None:
        form = _form(None, name=segment.name,
                     **segment_values(db.session.get(Topic, segment.topic_id).key, segment.filters or {}))
    else:
        form = _form(None)
    status = 200
    if request.method == "POST":
        if form.validate():
            try:
                segment = segment_commands.save(auth.current_actor(), form.name.data, form.topic.data,
                                                audience_of(form), segment)
            except DomainError as exc:
                db.session.rollback()
                _field_error(form, exc)
                status = exc.status
            else:
                db.session.commit()
                flash(_("Segment “%(name)s” saved: %(num)s eligible now.", name=segment.name, num=grouped(segments.count(segment))))
                return redirect(url_for("admin.segment_list"))
        else:
            status = 422
    count = segments.count(segment) if segment is not None and request.method == "GET" else None
    return render_template("admin/segment_form.html", form=form, segment=segment, audience=count), status
