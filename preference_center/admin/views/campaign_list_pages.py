"""The campaign list (search, status filter, pages) and the housekeeping actions: duplicate, delete a draft,
pause and resume a sending campaign."""
from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from ...commands import DomainError
from ...commands import campaigns as campaign_commands
from ...extensions import db
from ...i18n import localized
from ...models import Campaign
from ...tasks import enqueue
from .. import auth, bp, campaign_queries
from .common import _get


@bp.get("/campaigns")
def campaign_list():
    q = request.args.get("q", "")
    status = request.args.get("status", "")
    if len(q) > 200 or (status and status not in campaign_queries.STATUSES):
        flash(_("Search: at most 200 characters and a known status."), "error")
        return render_template("admin/campaigns.html", page=None, q="", status="",
                               statuses=campaign_queries.STATUSES, first=True), 422
    raw = request.args.get("before", "")
    if raw and (not raw.isdigit() or not 0 < int(raw) < 2**31):
        abort(404)
    before = int(raw) if raw else None
    return render_template("admin/campaigns.html", page=campaign_queries.page(q, status, before), q=q, status=status,
                           statuses=campaign_queries.STATUSES, first=before is None)


def _back(campaign_id: int | None = None):
    target = url_for("admin.campaign_detail", campaign_id=campaign_id) if campaign_id else url_for("admin.campaign_list")
    return redirect(target, 303)


@bp.post("/campaigns/<int:campaign_id>/duplicate")
def campaign_duplicate(campaign_id: int):
    campaign = _get(Campaign, campaign_id)
    try:
        copy = campaign_commands.duplicate(auth.current_actor(), campaign)
    except DomainError as exc:
        db.session.rollback()
        flash(_("Cannot duplicate: %(reason)s", reason=localized(exc)), "error")
        return _back(campaign.id)
    db.session.commit()
    flash(_("“%(name)s” is a new draft: change what you need, then schedule it.", name=copy.name))
    return redirect(url_for("admin.campaign_edit", campaign_id=copy.id), 303)


@bp.post("/campaigns/<int:campaign_id>/delete")
def campaign_delete(campaign_id: int):
    campaign = _get(Campaign, campaign_id)
    if request.form.get("confirm") != "1":
        return render_template(
            "admin/confirm.html", heading=_("Delete the draft “%(name)s”?", name=campaign.name), summary=None,
            warning=None, lines=[_("The draft and its content are removed; the audit log keeps that you deleted it. "
                                   "This cannot be undone.")],
            action=url_for("admin.campaign_delete", campaign_id=campaign.id), hidden={},
            confirm_label=_("Yes, delete the draft"), button_class="danger",
            back=url_for("admin.campaign_detail", campaign_id=campaign.id), back_label=campaign.name,
            cancel_label=_("No, keep it"))
    name = campaign.name
    try:
        campaign_commands.delete_draft(auth.current_actor(), campaign)
    except DomainError as exc:
        db.session.rollback()
        flash(localized(exc), "error")
        return _back(campaign_id)
    db.session.commit()
    flash(_("Draft “%(name)s” deleted.", name=name))
    return _back()


@bp.post("/campaigns/<int:campaign_id>/pause")
def campaign_pause(campaign_id: int):
    campaign = _get(Campaign, campaign_id)
    try:
        campaign_commands.pause(auth.current_actor(), campaign)
    except DomainError as exc:
        db.session.rollback()
        flash(localized(exc), "error")
        return _back(campaign.id)
    db.session.commit()
    flash(_("Paused: the batch being sent now finishes, nothing more goes out until you resume."))
    return _back(campaign.id)


@bp.post("/campaigns/<int:campaign_id>/resume")
def campaign_resume(campaign_id: int):
    campaign = _get(Campaign, campaign_id)
    try:
        queued = campaign_commands.resume(auth.current_actor(), campaign)
    except DomainError as exc:
        db.session.rollback()
        flash(localized(exc), "error")
        return _back(campaign.id)
    db.session.commit()
    for batch_id in queued:
        enqueue("send_batch", batch_id)
    enqueue("tick")  # plans what was not planned yet
    flash(_("Resumed: sending goes on where it stopped."))
    return _back(campaign.id)
