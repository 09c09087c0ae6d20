"""Staff pages: each view parses its form, calls one domain function, records the audit entry, renders."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from flask import abort, current_app, flash, g, redirect, render_template, request, url_for
from worker.tasks import enqueue

from .. import campaigns, contacts, imports, optouts, rights, staff, tokens, topics
from ..contacts import ValidationError
from ..emails import InvalidEmail
from ..admin_models import ImportJob
from ..extensions import csrf, db
from ..limits import limiter
from ..models import ApiToken, Campaign, Contact, DataRequest, StaffUser, Topic, utcnow
from . import auth, bp, history, preview, queries
from .forms import (CampaignForm, LiftSuppressionForm, LoginForm, RequestFilterForm, ScheduleForm, SearchForm,
                    SuppressForm, TestSendForm, TokenForm, TopicEditForm, TopicForm, UploadForm, UserForm,
                    import_settings_form)

LOGIN_LIMIT = "20/minute"
# The preview iframe inherits the page's policy: staff HTML mail uses inline
# styles and remote images. Scripts stay forbidden and the frame is sandboxed.
PREVIEW_CSP = ("default-src 'self'; img-src 'self' data: https:; style-src 'self' 'unsafe-inline'; "
               "script-src 'self'; frame-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
ADMIN_ROLES = ("admin",)

bp.before_request(auth.load_staff)


@bp.after_request
def no_store(response):
    # Staff pages show personal data: never keep them in shared caches.
    response.headers.setdefault("Cache-Control", "no-store")
    return response


@bp.app_template_filter("staff_time")
def staff_time(moment: dt.datetime | None) -> str:
    return history.when(moment) if moment else "—"


@bp.app_context_processor
def staff_globals():
    return {"staff_user": g.get("staff"), "now_utc": utcnow()}


def _field_error(form, exc: ValidationError) -> None:
    """Show a domain error next to the field it names (or on top of the form)."""
    name = exc.field if exc.field in form else None
    if name is None and exc.field and f"map_{exc.field}" in form:
        name = f"map_{exc.field}"
    if name:
        form[name].errors = list(form[name].errors) + [str(exc)]
    else:
        form.form_errors.append(str(exc))


def _get(model, ident):
    row = db.session.get(model, ident)
    if row is None:
        abort(404)
    return row


# -- signing in ---------------------------------------------------------------------

@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(LOGIN_LIMIT, methods=["POST"])
def login():
    if auth.current_user() is not None and request.method == "GET":
        return redirect(url_for("admin.dashboard"))
    form = LoginForm()
    error = None
    if form.validate_on_submit():
        user = auth.authenticate(form.email.data, form.password.data, ip=request.remote_addr)
        db.session.commit()
        if user is not None:
            auth.start_session(user)
            return redirect(auth.safe_next(request.args.get("next")))
        error = auth.FAILED
    elif request.method == "POST":
        error = auth.FAILED if not form.errors.get("csrf_token") else "The form expired; please try again."
    return render_template("admin/login.html", form=form, error=error), 401 if error else 200


@bp.post("/logout")
def logout():
    auth.record("staff.logout", target_type="staff_user", target_id=g.staff.email)
    db.session.commit()
    auth.end_session()
    flash("You are signed out.")
    return redirect(url_for("admin.login"))


@bp.get("/")
def dashboard():
    return render_template("admin/dashboard.html", counts=queries.counts())


# -- topics -------------------------------------------------------------------------

@bp.get("/topics")
def topic_list():
    return render_template("admin/topics.html", topics=topics.all_topics())


@bp.route("/topics/new", methods=["GET", "POST"])
def topic_new():
    form = TopicForm()
    status = 200
    if form.validate_on_submit():
        try:
            topic = topics.create(form.key.data.strip(), {"kind": form.kind.data, **form.data_for_domain()})
        except ValidationError as exc:
            db.session.rollback()
            _field_error(form, exc)
        else:
            auth.record("topic.create", target_type="topic", target_id=topic.key, detail=topics.as_dict(topic))
            db.session.commit()
            flash(f"Topic {topic.name} created.")
            return redirect(url_for("admin.topic_list"))
    if request.method == "POST":
        status = 422
    return render_template("admin/topic_form.html", form=form, topic=None), status


@bp.route("/topics/<key>", methods=["GET", "POST"])
def topic_edit(key: str):
    topic = topics.get(key) or abort(404)
    form = TopicEditForm(kind=topic.kind, obj=topic)
    status = 200
    if form.validate_on_submit():
        try:
            changed = topics.update(topic, form.data_for_domain())
        except ValidationError as exc:
            db.session.rollback()
            _field_error(form, exc)
        else:
            if changed:
                auth.record("topic.update", target_type="topic", target_id=topic.key,
                            detail={"changed": changed, **topics.as_dict(topic)})
            db.session.commit()
            flash(f"Topic {topic.name} saved." if changed else "Nothing changed.")
            return redirect(url_for("admin.topic_list"))
    if request.method == "POST":
        status = 422
    return render_template("admin/topic_form.html", form=form, topic=topic), status


@bp.post("/topics/<key>/retire")
def topic_retire(key: str):
    topic = topics.get(key) or abort(404)
    topics.retire(topic)
    auth.record("topic.retire", target_type="topic", target_id=topic.key)
    db.session.commit()
    flash(f"Topic {topic.name} retired: it is no longer offered or sent.")
    return redirect(url_for("admin.topic_list"))


@bp.post("/topics/<key>/restore")
def topic_restore(key: str):
    topic = topics.get(key) or abort(404)
    topics.restore(topic)
    auth.record("topic.restore", target_type="topic", target_id=topic.key)
    db.session.commit()
    flash(f"Topic {topic.name} is live again.")
    return redirect(url_for("admin.topic_list"))


# -- contacts -----------------------------------------------------------------------

@bp.get("/contacts")
def contact_list():
    form = SearchForm(request.args)
    q = form.q.data or ""
    return render_template("admin/contacts.html", form=form, q=q, results=queries.search_contacts(q))


def _contact_page(contact: Contact, form: SuppressForm, status: int = 200,
                  lift_form: LiftSuppressionForm | None = None):
    if optouts.settle([contact.id]):
        db.session.commit()  # the timeline and state include one-click opt-outs still waiting
    blocks = contacts.suppression_rows(contact)
    lift_form = lift_form or LiftSuppressionForm(formdata=None)
    liftable = [b for b in blocks if b.reason not in contacts.KEPT_FOR_THE_PERSON]
    lift_form.scope.choices = [(b.scope, f"{b.scope} ({b.reason})") for b in liftable]
    return render_template(
        "admin/contact.html", contact=contact, form=form, lift_form=lift_form, blocks=blocks, liftable=liftable,
        kept=contacts.KEPT_FOR_THE_PERSON,
        subscriptions=contacts.subscriptions_view(contact) if contact.status != "erased" else [],
        suppressions=sorted(b.scope for b in blocks), timeline=history.timeline(contact),
    ), status


@bp.get("/contacts/<int:contact_id>")
def contact_detail(contact_id: int):
    return _contact_page(_get(Contact, contact_id), SuppressForm(formdata=None))


@bp.post("/contacts/<int:contact_id>/suppress")
def contact_suppress(contact_id: int):
    contact = _get(Contact, contact_id)
    form = SuppressForm()
    if not form.validate_on_submit():
        return _contact_page(contact, form, 422)
    contacts.suppress(contact.email_hash, form.scope.data, form.reason.data.strip(), source=auth.actor(),
                      contact=contact, ip=request.remote_addr)
    auth.record("contact.suppress", target_type="contact", target_id=contact.id,
                detail={"scope": form.scope.data, "reason": form.reason.data.strip()})
    db.session.commit()
    flash("The address is suppressed." if form.scope.data == "all" else "Marketing mail to this address is stopped.")
    return redirect(url_for("admin.contact_detail", contact_id=contact.id))


@bp.post("/contacts/<int:contact_id>/lift-suppression")
@auth.role_required("admin")
def contact_lift_suppression(contact_id: int):
    contact = _get(Contact, contact_id)
    form = LiftSuppressionForm()
    form.scope.choices = [("marketing", "marketing"), ("all", "all")]
    if not form.validate_on_submit():
        return _contact_page(contact, SuppressForm(formdata=None), 422, lift_form=form)
    try:
        lifted = contacts.lift_suppression(contact, form.scope.data, why=form.why.data, source=auth.actor(),
                                           ip=request.remote_addr)
    except ValidationError as error:
        db.session.rollback()
        form.scope.errors = [str(error)]
        return _contact_page(contact, SuppressForm(formdata=None), 409 if error.code == "conflict" else 422,
                             lift_form=form)
    auth.record("contact.lift_suppression", target_type="contact", target_id=contact.id,
                detail={"scope": lifted.scope, "reason": lifted.reason, "why": form.why.data.strip()})
    db.session.commit()
    flash(f"The {lifted.scope} suppression ({lifted.reason}) is lifted.")
    return redirect(url_for("admin.contact_detail", contact_id=contact.id))


# -- CSV imports --------------------------------------------------------------------

@bp.get("/imports")
def import_list():
    return render_template("admin/imports.html", form=UploadForm(formdata=None), jobs=imports.jobs())


@bp.post("/imports")
@csrf.exempt  # UploadForm checks the token itself, after the larger upload limit is set
def import_upload():
    request.max_content_length = int(current_app.config.get("PC_IMPORT_MAX_BYTES", 64 * 1024 * 1024))
    form = UploadForm()
    if not form.validate_on_submit():
        return render_template("admin/imports.html", form=form, jobs=imports.jobs()), 422
    upload = form.file.data
    try:
        job = imports.store(upload.stream, upload.filename or "upload.csv", created_by=auth.actor())
    except ValidationError as exc:
        db.session.rollback()
        _field_error(form, exc)
        return render_template("admin/imports.html", form=form, jobs=imports.jobs()), 422
    auth.record("import.upload", target_type="import", target_id=job.id,
                detail={"filename": job.filename, "rows": job.total})
    db.session.commit()
    return redirect(url_for("admin.import_detail", job_id=job.id))


def _settings_form(job: ImportJob, formdata=None):
    form = import_settings_form(job.columns, topics.all_topics(include_retired=False), formdata=formdata)
    if formdata is None:
        form.has_header.data = job.has_header
        form.legal_basis.data = job.legal_basis or ""
        form.source_text.data = job.source_text or ""
        form.default_relationship.data = job.default_relationship or ""
        topic = db.session.get(Topic, job.topic_id) if job.topic_id else None
        form.topic.data = topic.key if topic else ""
        form.consent_collected.data = job.consent_collected
        form.confirmed_opt_in.data = job.confirmed_opt_in
        for name in imports.FIELDS:
            index = (job.mapping or {}).get(name)
            form[f"map_{name}"].data = "" if index is None else str(index)
    form.topic.choices = [c for c in form.topic.choices if c[0] == "" or topics.get(c[0]).kind == "marketing"]
    return form


def _import_page(job: ImportJob, form=None, status: int = 200):
    if form is None and job.status in ("uploaded", "previewed"):
        form = _settings_form(job)
    running = job.status in ("queued", "running")
    return render_template(
        "admin/import.html", job=job, form=form, running=running,
        topic=db.session.get(Topic, job.topic_id) if job.topic_id else None,
        sample=imports.sample(job) if job.status == "previewed" else [],
        inline_limit=imports.inline_limit(), basis_names=imports.BASIS_NAMES,
    ), status


@bp.get("/imports/<int:job_id>")
def import_detail(job_id: int):
    return _import_page(_get(ImportJob, job_id))


@bp.get("/imports/<int:job_id>/progress")
def import_progress(job_id: int):
    """A tiny JSON status for the optional progress script (the page refreshes without it)."""
    job = _get(ImportJob, job_id)
    return {"status": job.status, "processed": job.processed, "total": job.total, "percent": job.percent}


@bp.post("/imports/<int:job_id>/preview")
def import_preview(job_id: int):
    job = _get(ImportJob, job_id)
    form = _settings_form(job, request.form)
    if not form.validate():
        return _import_page(job, form, 422)
    settings = imports.Settings(
        mapping=form.mapping(), legal_basis=form.legal_basis.data, source_text=form.source_text.data,
        topic_key=form.topic.data or None, consent_collected=form.consent_collected.data,
        confirmed_opt_in=form.confirmed_opt_in.data, default_relationship=form.default_relationship.data or None,
        has_header=form.has_header.data,
    )
    try:
        imports.configure(job, settings)
        result = imports.preview(job)
    except ValidationError as exc:
        db.session.rollback()
        job = _get(ImportJob, job_id)
        _field_error(form, exc)
        return _import_page(job, form, 422)
    auth.record("import.preview", target_type="import", target_id=job.id,
                detail={"counts": result["counts"], "legal_basis": job.legal_basis, "source": job.source_text})
    db.session.commit()
    return redirect(url_for("admin.import_detail", job_id=job.id) + "#preview")


def _import_refused(job_id: int, exc: ValidationError):
    """Back to the import's page with the reason; the refused step changed nothing."""
    db.session.rollback()
    flash(str(exc), "error")
    return redirect(url_for("admin.import_detail", job_id=job_id))


@bp.post("/imports/<int:job_id>/run")
def import_run(job_id: int):
    job = _get(ImportJob, job_id)
    try:
        imports.start(job)
    except ValidationError as exc:
        return _import_refused(job_id, exc)
    topic = db.session.get(Topic, job.topic_id) if job.topic_id else None
    auth.record("import.start", target_type="import", target_id=job.id, detail={
        "rows": job.total, "legal_basis": job.legal_basis, "source": job.source_text,
        "topic": topic.key if topic else None, "consent_collected": job.consent_collected,
        "confirmed_opt_in": job.confirmed_opt_in})
    db.session.commit()
    if job.total <= imports.inline_limit():
        job = imports.run(job.id)
        flash(f"Import finished: {job.created_count} new, {job.updated_count} updated."
              if job.status == "done" else f"Import failed: {job.error}", "error" if job.status != "done" else "ok")
    else:
        enqueue("import_csv", job.id)
    return redirect(url_for("admin.import_detail", job_id=job_id))


@bp.post("/imports/<int:job_id>/retry")
def import_retry(job_id: int):
    job = _get(ImportJob, job_id)
    try:
        imports.retry(job)
    except ValidationError as exc:
        return _import_refused(job_id, exc)
    auth.record("import.retry", target_type="import", target_id=job.id)
    db.session.commit()
    enqueue("import_csv", job.id)
    return redirect(url_for("admin.import_detail", job_id=job_id))


@bp.post("/imports/<int:job_id>/discard")
def import_discard(job_id: int):
    job = _get(ImportJob, job_id)
    try:
        imports.discard(job)
    except ValidationError as exc:
        return _import_refused(job_id, exc)
    auth.record("import.discard", target_type="import", target_id=job.id)
    db.session.commit()
    flash("Import discarded and its file deleted.")
    return redirect(url_for("admin.import_list"))


# -- campaigns ----------------------------------------------------------------------

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


@bp.get("/campaigns")
def campaign_list():
    return render_template("admin/campaigns.html", rows=queries.campaign_list())


def _campaign_form(formdata=None, **kwargs) -> CampaignForm:
    form = CampaignForm(formdata=formdata, **kwargs)
    form.topic.choices = [(t.key, f"{t.name} ({t.legal_basis.replace('_', ' ')})")
                          for t in topics.all_topics(include_retired=False) if t.kind == "marketing"]
    return form


@bp.route("/campaigns/new", methods=["GET", "POST"])
def campaign_new():
    return _campaign_editor(None)


@bp.route("/campaigns/<int:campaign_id>/edit", methods=["GET", "POST"])
def campaign_edit(campaign_id: int):
    campaign = _get(Campaign, campaign_id)
    if campaign.status not in campaigns.EDITABLE:
        flash(f"A {campaign.status} campaign cannot be changed.", "error")
        return redirect(url_for("admin.campaign_detail", campaign_id=campaign.id), 303)
    return _campaign_editor(campaign)


def _campaign_values(campaign: Campaign) -> dict:
    audience = campaign.audience or {}
    return {"name": campaign.name, "topic": db.session.get(Topic, campaign.topic_id).key, "subject": campaign.subject,
            "html": campaign.html, "text": campaign.text, "relationships": audience.get("relationships") or [],
            "locales": ", ".join(audience.get("locales") or [])}


def _campaign_editor(campaign: Campaign | None):
    """The compose form: a new draft, or changes to a draft or scheduled campaign."""
    if request.method == "POST":
        form = _campaign_form(request.form)
    else:
        form = _campaign_form(None, **(_campaign_values(campaign) if campaign else {}))
    rendered, problem, status = None, None, 200
    if request.method == "POST" and form.validate():
        data = form.data_for_domain()
        if request.form.get("action") == "preview":
            topic = topics.get(data["topic"])
            contact = _preview_contact(form.preview_email.data)
            if form.preview_email.data and contact is None:
                form.preview_email.errors = ["no contact with that address; showing a sample recipient"]
            try:
                rendered = preview.render_for(topic, data["subject"], data["html"], data["text"], contact)
            except preview.PreviewError as exc:
                problem = str(exc)
        else:
            try:
                if campaign is None:
                    campaign = campaigns.create(data, created_by=auth.actor())
                    action, message = "campaign.create", "Draft saved. Preview it, send yourself a test, then schedule it."
                else:
                    campaigns.edit(campaign, data)
                    action, message = "campaign.update", "Changes saved."
            except ValidationError as exc:
                db.session.rollback()
                _field_error(form, exc)
                status = 409 if exc.code == "conflict" else 422
            else:
                auth.record(action, target_type="campaign", target_id=campaign.id,
                            detail={"name": campaign.name, "topic": data["topic"]})
                db.session.commit()
                flash(message)
                return redirect(url_for("admin.campaign_detail", campaign_id=campaign.id))
    elif request.method == "POST":
        status = 422
    return _with_preview_csp((render_template("admin/campaign_form.html", form=form, rendered=rendered,
                                              problem=problem, campaign=campaign), status))


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
        schedule_form = ScheduleForm(formdata=None, zone=campaign.timezone or "UTC")
    return _with_preview_csp((render_template(
        "admin/campaign.html", campaign=campaign, topic=topic, rendered=rendered, problem=problem,
        preview_contact=contact, preview_email=email or "", schedule_form=schedule_form,
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
    auth.record("campaign.test_send", target_type="campaign", target_id=campaign.id,
                detail={"to": g.staff.email, "message_id": message_id})
    db.session.commit()
    flash(f"Test sent to {g.staff.email}.")
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
        form.at.errors = ["that moment has passed; leave the time empty to send now"]
        return _campaign_page(campaign, schedule_form=form, status=422)
    try:
        campaigns.schedule(campaign, moment)
    except ValidationError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("admin.campaign_detail", campaign_id=campaign.id))
    campaign.timezone = form.zone.data
    auth.record("campaign.schedule", target_type="campaign", target_id=campaign.id,
                detail={"at": campaign.scheduled_at.isoformat(), "zone": form.zone.data})
    db.session.commit()
    if campaign.scheduled_at <= utcnow():
        enqueue("tick")
    local = campaign.scheduled_at.astimezone(ZoneInfo(form.zone.data))
    flash(f"Scheduled for {local:%Y-%m-%d %H:%M} {form.zone.data} ({staff_time(campaign.scheduled_at)}).")
    return redirect(url_for("admin.campaign_detail", campaign_id=campaign.id))


@bp.post("/campaigns/<int:campaign_id>/cancel")
def campaign_cancel(campaign_id: int):
    campaign = _get(Campaign, campaign_id)
    try:
        campaigns.cancel(campaign)
    except ValidationError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("admin.campaign_detail", campaign_id=campaign.id))
    auth.record("campaign.cancel", target_type="campaign", target_id=campaign.id)
    db.session.commit()
    flash("Campaign cancelled; nothing more will be sent.")
    return redirect(url_for("admin.campaign_detail", campaign_id=campaign.id))


@bp.get("/campaigns/<int:campaign_id>/report")
def campaign_report(campaign_id: int):
    campaign = _get(Campaign, campaign_id)
    bars, minutes = queries.deliveries_over_time(campaign)
    return render_template("admin/report.html", campaign=campaign, topic=db.session.get(Topic, campaign.topic_id),
                           report=campaigns.report(campaign), chart=queries.chart(bars), minutes=minutes,
                           statuses=queries.CHART_STATUSES)


# -- data requests ------------------------------------------------------------------

@bp.get("/requests")
def request_list():
    form = RequestFilterForm(request.args)
    status = form.status.data if form.status.data in ("open", "completed", "all") else "open"
    return render_template("admin/requests.html", form=form, status=status, rows=queries.data_requests(status),
                           now=utcnow())


@bp.post("/requests/<int:request_id>/complete")
def request_complete(request_id: int):
    data_request = _get(DataRequest, request_id)
    if data_request.status != "open":
        flash("That request is already completed.", "error")
        return redirect(url_for("admin.request_list"))
    rights.complete_request(data_request, detail={"completed_by": auth.actor()})
    auth.record("data_request.complete", target_type="data_request", target_id=data_request.id,
                detail={"kind": data_request.kind})
    db.session.commit()
    flash("Request marked as completed.")
    return redirect(url_for("admin.request_list"))


# -- audit --------------------------------------------------------------------------

@bp.get("/audit")
def audit_log():
    before = request.args.get("before", type=int)
    entries = queries.audit_entries(before)
    return render_template("admin/audit.html", entries=entries,
                           older=entries[-1].id if len(entries) == 100 else None)


# -- users and API tokens (admins only) ---------------------------------------------

@bp.get("/users")
@auth.role_required(*ADMIN_ROLES)
def user_list():
    return render_template("admin/users.html", users=queries.staff_users(), form=UserForm(formdata=None))


@bp.post("/users")
@auth.role_required(*ADMIN_ROLES)
def user_create():
    form = UserForm()
    if form.validate_on_submit():
        try:
            user = staff.create_user(form.email.data, form.role.data, form.password.data)
        except (ValueError, InvalidEmail) as exc:
            db.session.rollback()
            form.email.errors = [str(exc)]
        else:
            auth.record("staff.create", target_type="staff_user", target_id=user.email, detail={"role": user.role})
            db.session.commit()
            flash(f"{user.email} can now sign in as {user.role}.")
            return redirect(url_for("admin.user_list"))
    return render_template("admin/users.html", users=queries.staff_users(), form=form), 422


@bp.post("/users/<int:user_id>/deactivate")
@auth.role_required(*ADMIN_ROLES)
def user_deactivate(user_id: int):
    user = _get(StaffUser, user_id)
    if user.id == g.staff.id:
        flash("You cannot deactivate yourself.", "error")
        return redirect(url_for("admin.user_list"))
    user.active = False
    auth.record("staff.deactivate", target_type="staff_user", target_id=user.email)
    db.session.commit()
    flash(f"{user.email} is deactivated and signed out everywhere.")
    return redirect(url_for("admin.user_list"))


@bp.post("/users/<int:user_id>/activate")
@auth.role_required(*ADMIN_ROLES)
def user_activate(user_id: int):
    user = _get(StaffUser, user_id)
    user.active = True
    user.failed_logins, user.locked_until = 0, None
    auth.record("staff.activate", target_type="staff_user", target_id=user.email)
    db.session.commit()
    flash(f"{user.email} can sign in again.")
    return redirect(url_for("admin.user_list"))


@bp.get("/tokens")
@auth.role_required(*ADMIN_ROLES)
def token_list():
    return render_template("admin/tokens.html", tokens=queries.api_tokens(), form=TokenForm(formdata=None),
                           plaintext=None)


@bp.post("/tokens")
@auth.role_required(*ADMIN_ROLES)
def token_create():
    form = TokenForm()
    plaintext = None
    if form.validate_on_submit():
        try:
            token, plaintext = tokens.create(form.name.data.strip())
        except ValueError as exc:
            db.session.rollback()
            form.name.errors = [str(exc)]
        else:
            auth.record("token.create", target_type="api_token", target_id=token.name)
            db.session.commit()
            # Shown once, in this response only: never in a redirect or the session.
            return render_template("admin/tokens.html", tokens=queries.api_tokens(),
                                   form=TokenForm(formdata=None), plaintext=plaintext, created=token), 201
    return render_template("admin/tokens.html", tokens=queries.api_tokens(), form=form, plaintext=None), 422


@bp.post("/tokens/<int:token_id>/revoke")
@auth.role_required(*ADMIN_ROLES)
def token_revoke(token_id: int):
    token = _get(ApiToken, token_id)
    if tokens.revoke(token.name):
        auth.record("token.revoke", target_type="api_token", target_id=token.name)
        db.session.commit()
        flash(f"Token {token.name} revoked.")
    return redirect(url_for("admin.token_list"))

