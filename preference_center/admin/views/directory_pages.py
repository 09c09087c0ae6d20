"""The contact list: filters and search, pages with a total, CSV export, bulk actions; adding and editing one contact."""
from __future__ import annotations

from flask import Response, abort, flash, redirect, render_template, request, stream_with_context, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext

from ... import directory, topics
from ...commands import DomainError
from ...commands import directory as directory_commands
from ...extensions import db
from ...i18n import localized
from ...models import Contact
from .. import auth, bp
from ..directory_forms import BulkForm, ContactForm, ListFilterForm
from ..labels import label
from .common import _field_error, _get


def _filter_form() -> ListFilterForm:
    form = ListFilterForm(request.args)
    form.topic.choices = [("", _l("any"))] + [(t.key, t.name) for t in topics.all_topics(include_retired=True)]
    return form


def _bulk_form(formdata=None) -> BulkForm:
    form = BulkForm(formdata=formdata)
    form.topic.choices = [(t.key, t.name) for t in topics.all_topics(include_retired=False)
                          if t.kind == "marketing" and t.legal_basis == "consent"]
    return form


def _before() -> int | None:
    raw = request.args.get("before", "")
    if not raw:
        return None
    if not raw.isdigit() or not 0 < int(raw) < 2**63:
        abort(404)
    return int(raw)


@bp.get("/contacts")
def contact_list():
    form = _filter_form()
    if request.args and not form.validate():
        problems = "; ".join(f"{form[name].label.text}: {' '.join(errors)}" for name, errors in form.errors.items())
        flash(_("Filters: %(problems)s", problems=problems), "error")
        return render_template("admin/contacts.html", form=form, page=None, filters=directory.Filters(),
                               bulk=_bulk_form()), 422
    filters = form.filters()
    page = directory.page(filters, _before())
    return render_template("admin/contacts.html", form=form, page=page, filters=filters, bulk=_bulk_form(),
                           first=_before() is None)


@bp.get("/contacts/export.csv")
@auth.role_required("admin", "marketer")
def contact_export():
    form = _filter_form()
    if not form.validate():
        abort(422)
    filters = form.filters()
    directory_commands.note_export(auth.current_actor(), filters)
    db.session.commit()
    response = Response(stream_with_context(directory.export_csv(filters)), mimetype="text/csv")
    response.headers["Content-Disposition"] = 'attachment; filename="contacts.csv"'
    return response


def _chosen_ids(filters: directory.Filters) -> list[int]:
    if request.form.get("scope") == "matching":
        return directory.ids(filters, directory_commands.BULK_LIMIT + 1)
    raw = request.form.getlist("id") or [x for x in request.form.get("ids", "").split(",") if x]
    try:
        return sorted({int(x) for x in raw if 0 < int(x) < 2**63})
    except ValueError:
        abort(422)


@bp.post("/contacts/bulk")
def contact_bulk():
    form = _bulk_form(request.form)
    filter_form = ListFilterForm(request.form)
    filter_form.topic.choices = [("", _l("any"))] + [(t.key, t.name) for t in topics.all_topics(include_retired=True)]
    back = url_for("admin.contact_list", **(filter_form.filters().query_args() if filter_form.validate() else {}))
    if not form.validate_on_submit():
        flash(_("Bulk action: %(problems)s", problems="; ".join(" ".join(e) for e in form.errors.values())), "error")
        return redirect(back, 303)
    ids = _chosen_ids(filter_form.filters())
    action = form.action.data
    if action.startswith("suppress") and not (form.reason.data or "").strip():
        flash(_("Bulk action: say why these addresses are suppressed (the reason is kept with each)."), "error")
        return redirect(back, 303)
    if request.form.get("confirm") != "1":
        topic = topics.get(form.topic.data or "")
        count = format(len(ids), ",")
        if action == "suppress_marketing":
            heading = ngettext("Stop marketing mail to %(count)s contact?", "Stop marketing mail to %(count)s contacts?",
                               len(ids), count=count)
        elif action == "suppress_all":
            heading = ngettext("Stop all mail to %(count)s contact?", "Stop all mail to %(count)s contacts?",
                               len(ids), count=count)
        else:
            heading = ngettext("Ask for consent to %(topic)s from %(count)s contact?",
                               "Ask for consent to %(topic)s from %(count)s contacts?", len(ids),
                               topic=topic.name if topic else "?", count=count)
        return render_template(
            "admin/confirm.html", heading=heading,
            summary=None, warning=None if ids else _("No contact is chosen."),
            lines=[_("Each contact gets its own ledger event and audit entry; contacts the action does not apply to "
                     "are skipped and counted.")] + ([_("Each gets the double opt-in mail now.")]
                                                     if action == "ask" else []),
            action=url_for("admin.contact_bulk"),
            hidden={"action": action, "topic": form.topic.data or "", "reason": form.reason.data or "",
                    "ids": ",".join(map(str, ids))},
            confirm_label=_("Yes, do it"), button_class="danger" if action != "ask" else "", back=back,
            back_label=_("Contacts"), cancel_label=_("No, go back"))
    try:
        if action == "ask":
            outcome = directory_commands.ask_many(auth.current_actor(), ids, topics.get(form.topic.data or ""))
        else:
            scope = "all" if action == "suppress_all" else "marketing"
            outcome = directory_commands.suppress_many(auth.current_actor(), ids, scope, form.reason.data or "")
    except DomainError as exc:
        db.session.rollback()
        flash(localized(exc), "error")
        return redirect(back, 303)
    db.session.commit()
    count = format(outcome.done, ",")
    done = ngettext("Done for %(count)s contact.", "Done for %(count)s contacts.", outcome.done, count=count)
    skipped = ", ".join(f"{n} {label(localized(why), 'skip_reason')}" for why, n in outcome.skipped.items())
    flash(_("%(done)s Skipped: %(skipped)s.", done=done, skipped=skipped) if skipped else done)
    return redirect(back, 303)


@bp.route("/contacts/new", methods=["GET", "POST"])
def contact_new():
    form = ContactForm(request.form if request.method == "POST" else None)
    status = 200
    if request.method == "POST":
        if form.validate():
            try:
                contact = directory_commands.add(auth.current_actor(), form.email.data, form.profile())
            except DomainError as exc:
                db.session.rollback()
                _field_error(form, exc)
                status = exc.status
            else:
                db.session.commit()
                flash(_("Contact %(email)s added. It has no subscription: ask for consent from its page.",
                        email=contact.email))
                return redirect(url_for("admin.contact_detail", contact_id=contact.id))
        else:
            status = 422
    return render_template("admin/contact_form.html", form=form, contact=None), status


@bp.route("/contacts/<int:contact_id>/edit", methods=["GET", "POST"])
def contact_edit(contact_id: int):
    contact: Contact = _get(Contact, contact_id)
    if contact.status == "erased":
        flash(_("An erased contact has nothing left to edit."), "error")
        return redirect(url_for("admin.contact_detail", contact_id=contact.id), 303)
    if request.method == "POST":
        form = ContactForm(request.form)
        form.email.data = contact.email  # the address is who the contact is: not edited here
    else:
        form = ContactForm(None, obj=contact)
        form.show_attributes(contact)
    status = 200
    if request.method == "POST":
        if form.validate():
            try:
                changed = directory_commands.edit(auth.current_actor(), contact, form.profile())
            except DomainError as exc:
                db.session.rollback()
                _field_error(form, exc)
                status = exc.status
            else:
                db.session.commit()
                flash(_("Saved: %(fields)s.", fields=", ".join(changed)) if changed else _("Nothing changed."))
                return redirect(url_for("admin.contact_detail", contact_id=contact.id))
        else:
            status = 422
    return render_template("admin/contact_form.html", form=form, contact=contact), status
