"""Outgoing webhooks (admins only): endpoints, their delivery log, enabling again and retrying by hand."""
from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from wtforms import StringField
from wtforms.validators import DataRequired, Length, Regexp

from ... import change_feed
from ...commands import DomainError
from ...commands import webhooks as webhook_commands
from ...extensions import db
from ...i18n import localized
from ...inputs import Form
from ...models import WebhookEndpoint, WebhookMessage
from ...outbound import delivery, endpoints
from .. import auth, bp
from ..forms import CheckboxesField
from .common import _get

ADMIN_ROLES = ("admin",)
LOG_ROWS = 200


class WebhookForm(Form):
    name = StringField(_l("Name (which system receives it)"), validators=[
        DataRequired(), Length(max=64),
        Regexp(r"^[a-z0-9][a-z0-9_.-]{0,63}$", message=_l("1-64 of a-z, 0-9, '_', '.', '-'"))])
    url = StringField(_l("URL (https://…)"), validators=[DataRequired(), Length(max=endpoints.URL_MAX)])
    events = CheckboxesField(_l("Changes to send"), choices=list(change_feed.TYPES),
                             validators=[DataRequired(message=_l("choose at least one change"))])


def _list(form: WebhookForm, secret: str | None = None, created: WebhookEndpoint | None = None):
    rows = [(e, delivery.pending_count(e.id)) for e in endpoints.all_endpoints()]
    return render_template("admin/webhooks.html", rows=rows, form=form, secret=secret, created=created)


@bp.get("/webhooks")
@auth.role_required(*ADMIN_ROLES)
def webhook_list():
    return _list(WebhookForm(formdata=None))


@bp.post("/webhooks")
@auth.role_required(*ADMIN_ROLES)
def webhook_create():
    form = WebhookForm()
    if form.validate_on_submit():
        if endpoints.get(form.name.data) is not None:
            form.name.errors = [_("a webhook with that name exists; change it on its own page or pick another name")]
        else:
            try:
                endpoint, secret = webhook_commands.put(auth.current_actor(), form.name.data, form.url.data,
                                                        list(form.events.data))
            except DomainError as exc:
                db.session.rollback()
                (form.events if exc.field == "events" else form.url).errors = [localized(exc)]
            else:
                db.session.commit()
                return _list(WebhookForm(formdata=None), secret, endpoint)
    return _list(form), 422


@bp.get("/webhooks/<int:endpoint_id>")
@auth.role_required(*ADMIN_ROLES)
def webhook_detail(endpoint_id: int):
    endpoint = _get(WebhookEndpoint, endpoint_id)
    log = db.session.scalars(select(WebhookMessage).where(WebhookMessage.endpoint_id == endpoint.id)
                             .order_by(WebhookMessage.id.desc()).limit(LOG_ROWS)).all()
    return render_template("admin/webhook.html", endpoint=endpoint, log=log,
                           pending=delivery.pending_count(endpoint.id))


@bp.post("/webhooks/<int:endpoint_id>/enable")
@auth.role_required(*ADMIN_ROLES)
def webhook_enable(endpoint_id: int):
    endpoint = _get(WebhookEndpoint, endpoint_id)
    if webhook_commands.enable(auth.current_actor(), endpoint):
        db.session.commit()
        flash(_("%(name)s is enabled again; its waiting messages go out now, in order.", name=endpoint.name))
    return redirect(url_for("admin.webhook_detail", endpoint_id=endpoint_id))


@bp.post("/webhooks/<int:endpoint_id>/messages/<int:message_id>/retry")
@auth.role_required(*ADMIN_ROLES)
def webhook_retry(endpoint_id: int, message_id: int):
    endpoint = _get(WebhookEndpoint, endpoint_id)
    try:
        webhook_commands.retry(auth.current_actor(), endpoint, message_id)
    except DomainError as exc:
        db.session.rollback()
        flash(f"{localized(exc)}.", "error")
    else:
        db.session.commit()
        flash(_("The message will be attempted again now (after this person's earlier messages)."))
    return redirect(url_for("admin.webhook_detail", endpoint_id=endpoint_id))


@bp.post("/webhooks/<int:endpoint_id>/delete")
@auth.role_required(*ADMIN_ROLES)
def webhook_delete(endpoint_id: int):
    endpoint = _get(WebhookEndpoint, endpoint_id)
    name = endpoint.name
    webhook_commands.delete(auth.current_actor(), endpoint)
    db.session.commit()
    flash(_("%(name)s is deleted, with the messages it had not received.", name=name))
    return redirect(url_for("admin.webhook_list"))
