"""Data requests: the list with deadlines; carrying one out, refusing it, extending it once (admins)."""
from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from ...commands import DomainError, requests
from ...errors import N_
from ...extensions import db
from ...i18n import localized
from ...models import DataRequest, utcnow
from .. import auth, bp, queries
from ..forms import ExtendForm, RefuseForm, RequestFilterForm
from .common import _get

# Who may end or change a request: people's rights are not a marketing task.
HANDLERS = ("admin",)


@bp.get("/requests")
def request_list():
    form = RequestFilterForm(request.args)
    status = form.status.data if form.status.data in ("open", "completed", "refused", "all") else "open"
    return render_template("admin/requests.html", form=form, status=status, rows=queries.data_requests(status),
                           now=utcnow())


def _done(message: str, status: int = 303):
    if status >= 400:
        flash(message, "error")
        return redirect(url_for("admin.request_list"), 303), status
    flash(message)
    return redirect(url_for("admin.request_list"), 303)


def _refused(exc: DomainError):
    """The command said no: nothing changed; back to the list with why, and the status that says it."""
    db.session.rollback()
    flash(localized(exc), "error")
    response = redirect(url_for("admin.request_list"), 303)
    response.status_code = exc.status
    return response


@bp.post("/requests/<int:request_id>/complete")
@auth.role_required(*HANDLERS)
def request_complete(request_id: int):
    """Carry the request out: an erasure erases the contact now; others only close once done."""
    data_request = _get(DataRequest, request_id)
    try:
        requests.carry_out(auth.current_actor(), data_request)
    except DomainError as exc:
        return _refused(exc)
    db.session.commit()
    return _done(_("The contact is erased and the request completed.") if data_request.kind == "erasure"
                 else _("Request completed."))


@bp.post("/requests/<int:request_id>/resend")
@auth.role_required(*HANDLERS)
def request_resend(request_id: int):
    try:
        requests.resend_link(auth.current_actor(), _get(DataRequest, request_id))
    except DomainError as exc:
        return _refused(exc)
    db.session.commit()
    return _done(_("A fresh link is on its way to the person."))


@bp.post("/requests/<int:request_id>/refuse")
@auth.role_required(*HANDLERS)
def request_refuse(request_id: int):
    data_request = _get(DataRequest, request_id)
    form = RefuseForm()
    if not form.validate_on_submit():
        return _refused(DomainError(N_("say why the request is refused: the person is shown the reason"), "reason"))
    try:
        requests.refuse(auth.current_actor(), data_request, form.reason.data)
    except DomainError as exc:
        return _refused(exc)
    db.session.commit()
    return _done(_("Request refused; the person is told why."))


@bp.post("/requests/<int:request_id>/extend")
@auth.role_required(*HANDLERS)
def request_extend(request_id: int):
    data_request = _get(DataRequest, request_id)
    form = ExtendForm()
    if not form.validate_on_submit():
        problem = "; ".join(f"{form[name].label.text}: {', '.join(errors)}" for name, errors in form.errors.items())
        return _refused(DomainError(N_("a deadline is extended by one or two months, with a reason (%(problem)s)",
                                      problem=problem), "months"))
    try:
        requests.extend(auth.current_actor(), data_request, int(form.months.data), form.reason.data)
    except DomainError as exc:
        return _refused(exc)
    db.session.commit()
    due = data_request.due_at.strftime("%Y-%m-%d")
    return _done(_("Deadline extended to %(date)s; the person is told why.", date=due))
