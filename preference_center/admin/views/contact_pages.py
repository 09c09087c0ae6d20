"""Contacts: the contact page (with the deliveries it received), suppressing and lifting a suppression.

The list, search, export, bulk actions, adding and editing live in directory_pages.
"""
from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from ... import contacts, directory, rights, topics
from ...commands import DomainError, consent, people, requests
from ...errors import N_
from ...extensions import db
from ...i18n import localized
from ...models import Contact
from .. import auth, bp, history
from ..forms import LiftSuppressionForm, SuppressForm
from ..labels import label
from .common import _get


def _contact_page(contact: Contact, form: SuppressForm, status: int = 200,
                  lift_form: LiftSuppressionForm | None = None):
    blocks = contacts.suppression_rows(contact)
    lift_form = lift_form or LiftSuppressionForm(formdata=None)
    liftable = [b for b in blocks if b.reason not in contacts.KEPT_FOR_THE_PERSON]
    lift_form.scope.choices = [(b.scope, _("%(scope)s (%(reason)s)", scope=label(b.scope, "suppression_scope"),
                                          reason=label(b.reason, "suppression_reason"))) for b in liftable]
    return render_template(
        "admin/contact.html", contact=contact, form=form, lift_form=lift_form, blocks=blocks, liftable=liftable,
        kept=contacts.KEPT_FOR_THE_PERSON,
        subscriptions=contacts.subscriptions_view(contact) if contact.status != "erased" else [],
        suppressions=sorted(b.scope for b in blocks), timeline=history.timeline(contact),
        deliveries=directory.deliveries(contact),
        ask_topics=[t for t in topics.all_topics(include_retired=False)
                    if t.kind == "marketing" and t.legal_basis == "consent"],
        request_kinds=rights.KINDS, request_channels=requests.CHANNELS,
    ), status


@bp.get("/contacts/<int:contact_id>")
def contact_detail(contact_id: int):
    return _contact_page(_contact(contact_id), SuppressForm(formdata=None))


def _contact(contact_id: int) -> Contact:
    """The contact, settled (the timeline and state include one-click opt-outs still waiting)."""
    return people.settled(_get(Contact, contact_id))


@bp.post("/contacts/<int:contact_id>/suppress")
def contact_suppress(contact_id: int):
    contact = _contact(contact_id)
    form = SuppressForm()
    if not form.validate_on_submit():
        return _contact_page(contact, form, 422)
    try:
        people.suppress(auth.current_actor(), form.scope.data, form.reason.data, contact=contact)
    except DomainError as exc:
        db.session.rollback()
        form.reason.errors = [localized(exc)]
        return _contact_page(contact, form, exc.status)
    db.session.commit()
    flash(_("The address is suppressed.") if form.scope.data == "all"
          else _("Marketing mail to this address is stopped."))
    return redirect(url_for("admin.contact_detail", contact_id=contact.id))


@bp.post("/contacts/<int:contact_id>/ask")
def contact_ask(contact_id: int):
    """Staff ask the person to confirm a topic themselves: a pending grant and the double opt-in mail."""
    contact = _contact(contact_id)
    topic = topics.get(request.form.get("topic", ""))
    try:
        if topic is None:
            raise DomainError(N_("choose a topic"), "topic")
        consent.grant(auth.current_actor(), contact, topic, confirmed=False)
    except DomainError as exc:
        db.session.rollback()
        flash(localized(exc), "error")
        return redirect(url_for("admin.contact_detail", contact_id=contact.id), 303)
    db.session.commit()
    flash(_("A link to confirm %(topic)s is on its way to %(email)s.", topic=topic.name, email=contact.email))
    return redirect(url_for("admin.contact_detail", contact_id=contact.id), 303)


@bp.post("/contacts/<int:contact_id>/lift-suppression")
@auth.role_required("admin")
def contact_lift_suppression(contact_id: int):
    contact = _contact(contact_id)
    form = LiftSuppressionForm()
    form.scope.choices = [("marketing", "marketing"), ("all", "all")]
    if not form.validate_on_submit():
        return _contact_page(contact, SuppressForm(formdata=None), 422, lift_form=form)
    try:
        lifted = people.lift_suppression(auth.current_actor(), contact, form.scope.data, form.why.data)
    except DomainError as error:
        db.session.rollback()
        form.scope.errors = [localized(error)]
        return _contact_page(contact, SuppressForm(formdata=None), error.status, lift_form=form)
    db.session.commit()
    flash(_("The suppression of %(scope)s (%(reason)s) is lifted.", scope=label(lifted.scope, "suppression_scope"),
            reason=label(lifted.reason, "suppression_reason")))
    return redirect(url_for("admin.contact_detail", contact_id=contact.id))
