"""Privacy pages for staff: one person's printable consent proof (readable by every role that reads the contact)."""
from __future__ import annotations

import datetime as dt
import json

from flask import Response, flash, redirect, render_template, request, url_for
from wtforms import DateField, SelectField, StringField
from wtforms.validators import DataRequired, Length

from ... import proof, rights
from ...commands import DomainError, requests
from ...commands import proof as proof_commands
from ...extensions import db
from ...inputs import Form
from ...models import utcnow
from .. import auth, bp
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

    kind = SelectField("What the person asked for", choices=[(k, k) for k in rights.KINDS],
                       validators=[DataRequired()])
    channel = SelectField("How it reached us", choices=list(requests.CHANNELS.items()), validators=[DataRequired()])
    received = DateField("Received on (UTC)", validators=[DataRequired()])
    note = StringField("Note (no email addresses: it is kept after an erasure)", validators=[Length(max=500)])


@bp.post("/contacts/<int:contact_id>/requests")
@auth.role_required("admin")
def contact_log_request(contact_id: int):
    """Log a request received outside the links; it joins the data-request list with its one-month deadline."""
    contact = _contact(contact_id)
    form = LogRequestForm()
    if not form.validate_on_submit():
        flash("Log a request: " + "; ".join(f"{form[name].label.text}: {' '.join(errors)}"
                                            for name, errors in form.errors.items()), "error")
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
        flash(str(exc), "error")
        response = redirect(url_for("admin.contact_detail", contact_id=contact.id), 303)
        response.status_code = exc.status
        return response
    db.session.commit()
    flash(f"The {logged.kind} request is logged, due {logged.due_at:%Y-%m-%d}.")
    return redirect(url_for("admin.request_list"), 303)
