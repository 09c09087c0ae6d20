"""Privacy pages for staff: one person's printable consent proof (readable by every role that reads the contact)."""
from __future__ import annotations

import datetime as dt
import json

from flask import Response, abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from wtforms import DateField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length

from ... import assessments, proof, rights, topics
from ...commands import DomainError, requests
from ...commands import assessments as assessment_commands
from ...commands import proof as proof_commands
from ...extensions import db
from ...i18n import localized
from ...inputs import Form
from ...models import Topic, utcnow
from .. import auth, bp
from ..forms import options
from ..labels import choices, label
from .common import _field_error
from .contact_pages import _contact


@bp.get("/contacts/<int:contact_id>/proof")
def contact_proof(contact_id: int):
    """The proof as a printable page, or (?format=json) the same document the API serves, as a download."""
    contact = _contact(contact_id)
    document = proof_commands.export(auth.current_actor(), proof.subject_of_contact(contact))
    db.session.commit()
    if request.args.get("format") == "json":
        return Response(json.dumps(document, indent=2, ensure_ascii=False), mimetype="application/json",
                        headers={"Content-Disposition": f'attachment; filename="consent-proof-{contact.id}.json"'})
    return render_template("admin/proof.html", contact=contact, proof=document)


class LogRequestForm(Form):
    """A request a person made by phone, letter or in person, logged by staff."""

    kind = SelectField(_l("What the person asked for"), choices=options(choices("request_kind", rights.KINDS)),
                       validators=[DataRequired()])
    channel = SelectField(_l("How it reached us"), choices=options(choices("request_channel", requests.CHANNELS)),
                          validators=[DataRequired()])
    received = DateField(_l("Received on (UTC)"), validators=[DataRequired()])
    note = StringField(_l("Note (no email addresses: it is kept after an erasure)"), validators=[Length(max=500)])


@bp.post("/contacts/<int:contact_id>/requests")
@auth.role_required("admin")
def contact_log_request(contact_id: int):
    """Log a request received outside the links; it joins the data-request list with its one-month deadline."""
    contact = _contact(contact_id)
    form = LogRequestForm()
    if not form.validate_on_submit():
        flash(_("Log a request: %(problems)s", problems="; ".join(f"{form[name].label.text}: {' '.join(errors)}"
                                                                  for name, errors in form.errors.items())), "error")
        return redirect(url_for("admin.contact_detail", contact_id=contact.id), 303), 422
    # A day, not a time: today's request counts from now, an earlier one from that day's noon.
    now = utcnow()
    received = now if form.received.data == now.date() else dt.datetime.combine(form.received.data, dt.time(12),
                                                                                 dt.UTC)
    try:
        logged = requests.log_received(auth.current_actor(), contact, form.kind.data, form.channel.data,
                                       received, form.note.data)
    except DomainError as exc:
        db.session.rollback()
        flash(localized(exc), "error")
        response = redirect(url_for("admin.contact_detail", contact_id=contact.id), 303)
        response.status_code = exc.status
        return response
    db.session.commit()
    due = logged.due_at.strftime("%Y-%m-%d")
    flash(_("The %(kind)s request is logged, due %(date)s.", kind=label(logged.kind, "request_kind"), date=due))
    return redirect(url_for("admin.request_list"), 303)


class AssessmentForm(Form):
    purpose = StringField(_l("Why we write, in one line (recipients read it in every mail of the topic)"),
                          validators=[DataRequired(), Length(max=300)])
    text = TextAreaField(_l("The assessment: purpose, necessity, balance against the person's interests, safeguards"),
                         validators=[DataRequired(), Length(max=20_000)])


def _li_topic(key: str) -> Topic:
    topic = topics.get(key)
    if topic is None or topic.kind != "marketing" or topic.legal_basis != "legitimate_interest":
        abort(404)
    return topic


@bp.route("/topics/<key>/assessment", methods=["GET", "POST"])
def topic_assessment(key: str):
    """A legitimate-interest topic's recorded assessment, every version; admins record a new one (they approve it)."""
    topic = _li_topic(key)
    form = AssessmentForm()
    status = 200
    if request.method == "POST":
        if g.staff.role != "admin":
            abort(403, _("Only admins approve an assessment."))
        if form.validate_on_submit():
            try:
                row = assessment_commands.record(auth.current_actor(), topic, form.purpose.data, form.text.data)
            except DomainError as exc:
                db.session.rollback()
                _field_error(form, exc)
                status = exc.status
            else:
                db.session.commit()
                flash(_("Assessment version %(version)s is recorded, approved by you.", version=row.version))
                return redirect(url_for("admin.topic_assessment", key=topic.key), 303)
        else:
            status = 422
    return render_template("admin/assessment.html", topic=topic, form=form,
                           versions=assessments.history(topic)), status
