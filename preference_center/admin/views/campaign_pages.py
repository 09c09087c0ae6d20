"""Campaigns: compose with a live preview, test send, schedule, cancel, report."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from flask import current_app, flash, g, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import ngettext

from ... import audiences, campaigns, contacts, engagement, layouts, segments, topics
from ...commands import DomainError as ValidationError
from ...commands import campaigns as campaign_commands
from ...emails import InvalidEmail
from ...extensions import db
from ...i18n import localized
from ...mail.plaintext import html_to_text
from ...models import Campaign, Contact, Topic, utcnow
from ...tasks import enqueue
from .. import auth, bp, preview, queries
from ..forms import CampaignForm, ScheduleForm, TestSendForm
from ..labels import label
from ..segment_values import segment_values
from .common import _field_error, _get, grouped, staff_time

# The preview iframe inherits the page's policy: staff HTML mail uses inline
# styles and remote images. Scripts stay forbidden and the frame is sandboxed.
PREVIEW_CSP = ("default-src 'self'; img-src 'self' data: https:; style-src 'self' 'unsafe-inline'; "
               "script-src 'self'; frame-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")


def _preview_contact(email: str | None) -> Contact | None:
    if not email:
        return None
    try:
        return contacts.find(email)
    except InvalidEmail:
        return None


def _with_preview_csp(response_tuple):
    body, status = response_tuple
    response = current_app.make_response((body, status))
    response.headers["Content-Security-Policy"] = PREVIEW_CSP
    return response


def _campaign_form(formdata=None, **kwargs) -> CampaignForm:
    form = CampaignForm(formdata=formdata, **kwargs)
    form.topic.choices = [(t.key, f"{t.name} ({label(t.legal_basis, 'legal_basis')})")
                          for t in topics.all_topics(include_retired=False) if t.kind == "marketing"]
    return form


@bp.get("/campaigns/audience-count")
def campaign_audience_count():
    """The live eligible count for the compose form's topic and audience filter (JSON, for its script)."""
    topic = topics.get(request.args.get("topic", ""))
    if topic is None or topic.kind != "marketing":
        return jsonify({"error": _("choose a marketing topic")}), 422
    form = _campaign_form(request.args, meta={"csrf": False})
    try:
        count = audiences.count(topic, form.data_for_domain()["audience"])
    except ValidationError as exc:
        return jsonify({"error": localized(exc)}), 422
    return jsonify({"count": count})


def _editor_count(form: CampaignForm) -> int | None:
    topic = topics.get(form.topic.data or "") if form.topic.data else None
    if topic is None and form.topic.choices:
        topic = topics.get(form.topic.choices[0][0])
    if topic is None or topic.kind != "marketing":
        return None
    try:
        return audiences.count(topic, form.data_for_domain()["audience"])
    except ValidationError:
        return None


@bp.route("/campaigns/new", methods=["GET", "POST"])
def campaign_new():
    return _campaign_editor(None)


@bp.route("/campaigns/<int:campaign_id>/edit", methods=["GET", "POST"])
def campaign_edit(campaign_id: int):
    campaign = _get(Campaign, campaign_id)
    if campaign.status not in campaigns.EDITABLE:
        flash(_("A %(status)s campaign cannot be changed.", status=label(campaign.status, "campaign_status")), "error")
        return redirect(url_for("admin.campaign_detail", campaign_id=campaign.id), 303)
    return _campaign_editor(campaign)


def _campaign_values(campaign: Campaign) -> dict:
    return {"name": campaign.name, "subject": campaign.subject, "html": campaign.html, "text": campaign.text,
            **segment_values(db.session.get(Topic, campaign.topic_id).key, campaign.audience or {})}


def _campaign_editor(campaign: Campaign | None):
    """The compose form: a new draft, or changes to a draft or scheduled campaign."""
    if request.method == "POST":
        form = _campaign_form(request.form)
    else:
        form = _campaign_form(None, **(_campaign_values(campaign) if campaign else {}))
    rendered, problem, status = None, None, 200
    if request.method == "POST" and request.form.get("action") == "apply_segment":
        # Copies a saved segment's topic and filters in (before the rest of the form is complete).
        raw = request.form.get("segment") or ""
        segment = segments.get(int(raw)) if raw.isdigit() else None
        if segment is None:
            form.topic.errors = [_("choose a segment")]
            status = 422
        else:
            topic = db.session.get(Topic, segment.topic_id)
            form = _campaign_form(None, **{**{k: form[k].data for k in ("name", "subject", "html", "text")},
                                          **segment_values(topic.key, segment.filters or {})})
            flash(_("Topic and filters of the segment “%(name)s” are in: check them, then save.", name=segment.name))
    elif request.method == "POST" and form.validate():
        data = form.data_for_domain()
        if request.form.get("action") == "apply_layout":
            layout = layouts.get(int(request.form.get("layout") or 0)) if (request.form.get("layout") or "").isdigit() \
                else None
            if layout is None:
                form.html.errors = [_("choose a layout to wrap the HTML body in")]
                status = 422
            else:
                form.html.data = layouts.wrap(layout, data["html"])
                flash(_("The HTML body is wrapped in the layout “%(name)s”: check it, then save.", name=layout.name))
        elif request.form.get("action") == "text_from_html":
            # Written from the HTML on request, shown for staff to check; nothing is saved yet.
            form.text.data = html_to_text(data["html"])
            flash(_("The text version was written from the HTML: check it, then save."))
        elif request.form.get("action") == "preview":
            topic = topics.get(data["topic"])
            contact = _preview_contact(form.preview_email.data)
            if form.preview_email.data and contact is None:
                form.preview_email.errors = [_("no contact with that address; showing a sample recipient")]
            try:
                rendered = preview.render_for(topic, data["subject"], data["html"], data["text"], contact)
            except preview.PreviewError as exc:
                problem = str(exc)
        else:
            try:
                if campaign is None:
                    campaign = campaign_commands.create(auth.current_actor(), data)
                    message = _("Draft saved. Preview it, send yourself a test, then schedule it.")
                else:
                    campaign_commands.edit(auth.current_actor(), campaign, data)
                    message = _("Changes saved.")
            except ValidationError as exc:
                db.session.rollback()
                _field_error(form, exc)
                status = exc.status
            else:
                db.session.commit()
                flash(message)
                return redirect(url_for("admin.campaign_detail", campaign_id=campaign.id))
    elif request.method == "POST":
        status = 422
    return _with_preview_csp((render_template("admin/campaign_form.html", form=form, rendered=rendered,
                                              problem=problem, campaign=campaign, audience=_editor_count(form),
                                              layouts=layouts.all_layouts(), segments=segments.all_segments()),
                              status))


def _campaign_page(campaign: Campaign, *, schedule_form=None, test_form=None, status: int = 200):
    topic = db.session.get(Topic, campaign.topic_id)
    email = request.args.get("contact") or (test_form.preview_email.data if test_form else None)
    contact = _preview_contact(email)
    rendered, problem = None, None
    try:
        rendered = preview.render_for(topic, campaign.subject, campaign.html, campaign.text, contact, campaign.id)
    except preview.PreviewError as exc:
        problem = str(exc)
    if schedule_form is None:
        zone = campaign.timezone or "UTC"
        # Rescheduling starts from the current time: an untouched form never turns into "now".
        at = (campaign.scheduled_at.astimezone(ZoneInfo(zone)).replace(tzinfo=None, second=0, microsecond=0)
              if campaign.status == "scheduled" and campaign.scheduled_at else None)
        schedule_form = ScheduleForm(formdata=None, zone=zone, at=at)
    try:
        audience = audiences.of_campaign(campaign) if campaign.status in campaigns.EDITABLE else None
    except ValidationError:
        audience = None
    return _with_preview_csp((render_template(
        "admin/campaign.html", campaign=campaign, topic=topic, rendered=rendered, problem=problem,
        preview_contact=contact, preview_email=email or "", schedule_form=schedule_form, audience=audience,
        test_form=test_form or TestSendForm(formdata=None, preview_email=email or ""),
    ), status))


@bp.get("/campaigns/<int:campaign_id>")
def campaign_detail(campaign_id: int):
    return _campaign_page(_get(Campaign, campaign_id))


@bp.post("/campaigns/<int:campaign_id>/test")
def campaign_test(campaign_id: int):
    campaign = _get(Campaign, campaign_id)
    form = TestSendForm()
    if not form.validate_on_submit():
        return _campaign_page(campaign, test_form=form, status=422)
    topic = db.session.get(Topic, campaign.topic_id)
    try:
        message_id = preview.send_test(topic, campaign.subject, campaign.html, campaign.text, to=g.staff.email,
                                       contact=_preview_contact(form.preview_email.data), campaign_id=campaign.id)
    except preview.PreviewError as exc:
        flash(str(exc), "error")
        return redirect(url_for("admin.campaign_detail", campaign_id=campaign.id))
    campaign_commands.record_test_send(auth.current_actor(), campaign, g.staff.email, message_id)
    db.session.commit()
    flash(_("Test sent to %(address)s.", address=g.staff.email))
    return redirect(url_for("admin.campaign_detail", campaign_id=campaign.id))


@bp.post("/campaigns/<int:campaign_id>/schedule")
def campaign_schedule(campaign_id: int):
    campaign = _get(Campaign, campaign_id)
    form = ScheduleForm()
    if not form.validate_on_submit():
        return _campaign_page(campaign, schedule_form=form, status=422)
    try:
        moment = form.moment()
    except ValueError as exc:
        form.at.errors = [str(exc)]
        return _campaign_page(campaign, schedule_form=form, status=422)
    if moment is not None and moment < utcnow() - dt.timedelta(minutes=1):
        form.at.errors = [_("that moment has passed; leave the time empty to send now")]
        return _campaign_page(campaign, schedule_form=form, status=422)
    try:
        count = audiences.of_campaign(campaign)
    except ValidationError as exc:
        flash(localized(exc), "error")
        return redirect(url_for("admin.campaign_detail", campaign_id=campaign.id))
    if request.form.get("confirm") != "1" or request.form.get("count") != str(count):
        # Nothing is scheduled before staff have seen how many and when, and confirmed that.
        return _confirm_schedule(campaign, form, moment, count, changed=request.form.get("confirm") == "1")
    try:
        campaign_commands.schedule(auth.current_actor(), campaign, moment, form.zone.data)
    except ValidationError as exc:
        db.session.rollback()
        flash(localized(exc), "error")
        return redirect(url_for("admin.campaign_detail", campaign_id=campaign.id))
    db.session.commit()
    if campaign.scheduled_at <= utcnow():
        enqueue("tick")
    local = campaign.scheduled_at.astimezone(ZoneInfo(form.zone.data))
    if moment is None:
        flash(ngettext("Scheduled now (%(utc)s) to %(shown)s recipient.", "Scheduled now (%(utc)s) to %(shown)s recipients.",
                       count, shown=grouped(count), utc=staff_time(campaign.scheduled_at)))
    else:
        chosen = f"{local:%Y-%m-%d %H:%M} {form.zone.data}"
        flash(ngettext("Scheduled for %(moment)s (%(utc)s) to %(shown)s recipient.",
                       "Scheduled for %(moment)s (%(utc)s) to %(shown)s recipients.", count, shown=grouped(count),
                       moment=chosen, utc=staff_time(campaign.scheduled_at)))
    return redirect(url_for("admin.campaign_detail", campaign_id=campaign.id))


def _confirm_schedule(campaign: Campaign, form: ScheduleForm, moment: dt.datetime | None, count: int,
                      changed: bool):
    """The confirmation step: how many people and when, in words, before anything is scheduled."""
    zone = form.zone.data
    num = grouped(count)
    if moment is None:
        summary = ngettext("%(shown)s recipient, now", "%(shown)s recipients, now", count, shown=num)
        confirm_label = ngettext("Yes, send now to %(shown)s recipient", "Yes, send now to %(shown)s recipients", count,
                                 shown=num)
    else:
        local = moment.astimezone(ZoneInfo(zone))
        at = f"{local:%Y-%m-%d %H:%M} {zone}" + ("" if zone == "UTC" else f" ({moment:%H:%M} UTC)")
        summary = ngettext("%(shown)s recipient, at %(moment)s", "%(shown)s recipients, at %(moment)s", count, shown=num,
                           moment=at)
        confirm_label = ngettext("Yes, schedule for %(shown)s recipient", "Yes, schedule for %(shown)s recipients", count,
                                 shown=num)
    warning = None
    if changed:
        warning = ngettext("The audience changed since you looked: it is now %(shown)s recipient. Check again, then confirm.",
                           "The audience changed since you looked: it is now %(shown)s recipients. Check again, then "
                           "confirm.", count, shown=num)
    elif count == 0:
        warning = _("Nobody would receive this campaign now: check the topic and the audience filter.")
    lines = [_("Campaign “%(name)s”, subject “%(subject)s”.", name=campaign.name, subject=campaign.subject)]
    if moment is None:
        lines.append(_("No time was given, so it starts as soon as you confirm."))
    else:
        lines.append(_("The count is who is eligible now; people who opt out before then are skipped."))
    return render_template(
        "admin/confirm.html", heading=_("Confirm sending"), summary=summary, lines=lines,
        warning=warning, action=url_for("admin.campaign_schedule", campaign_id=campaign.id),
        hidden={"at": request.form.get("at", ""), "zone": zone, "count": str(count)},
        confirm_label=confirm_label, button_class="", back=url_for("admin.campaign_detail", campaign_id=campaign.id),
        back_label=campaign.name, cancel_label=_("No, go back")), 409 if changed else 200


@bp.post("/campaigns/<int:campaign_id>/cancel")
def campaign_cancel(campaign_id: int):
    campaign = _get(Campaign, campaign_id)
    if request.form.get("confirm") != "1":
        back = url_for("admin.campaign_detail", campaign_id=campaign.id)
        return render_template(
            "admin/confirm.html", heading=_("Cancel “%(name)s”?", name=campaign.name), summary=None, warning=None,
            lines=[_("Nothing more is sent once cancelled; messages already handed to the provider stay sent. "
                     "A cancelled campaign cannot be scheduled again.")],
            action=url_for("admin.campaign_cancel", campaign_id=campaign.id), hidden={},
            confirm_label=_("Yes, cancel the campaign"), button_class="danger", back=back, back_label=campaign.name,
            cancel_label=_("No, keep it"))
    try:
        campaign_commands.cancel(auth.current_actor(), campaign)
    except ValidationError as exc:
        db.session.rollback()
        flash(localized(exc), "error")
        return redirect(url_for("admin.campaign_detail", campaign_id=campaign.id))
    db.session.commit()
    flash(_("Campaign cancelled; nothing more will be sent."))
    return redirect(url_for("admin.campaign_detail", campaign_id=campaign.id))


@bp.get("/campaigns/<int:campaign_id>/report")
def campaign_report(campaign_id: int):
    campaign = _get(Campaign, campaign_id)
    bars, minutes = queries.deliveries_over_time(campaign)
    return render_template("admin/report.html", campaign=campaign, topic=db.session.get(Topic, campaign.topic_id),
                           report=campaigns.report(campaign), chart=queries.chart(bars), minutes=minutes,
                           statuses=queries.CHART_STATUSES, engagement=engagement.report(campaign.id),
                           topic_tracks=engagement.topic_tracks(db.session.get(Topic, campaign.topic_id)))
