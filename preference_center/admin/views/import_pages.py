"""CSV imports: upload, settings and preview, run (inline or in the worker), retry, discard."""
from __future__ import annotations

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from ... import imports, topics
from ...commands import DomainError as ValidationError
from ...commands import imports as import_commands
from ...extensions import csrf, db
from ...i18n import localized
from ...imports.settings import ATTRIBUTE
from ...models import ImportJob, Topic
from ...tasks import enqueue
from .. import auth, bp
from ..forms import UploadForm, import_settings_form
from .common import _field_error, _get


@bp.get("/imports")
def import_list():
    return render_template("admin/imports.html", form=UploadForm(formdata=None), jobs=imports.jobs())


@bp.post("/imports")
@csrf.exempt  # UploadForm checks the token itself, after the larger upload limit is set
def import_upload():
    request.max_content_length = current_app.config["PC_IMPORT_MAX_BYTES"]
    form = UploadForm()
    if not form.validate_on_submit():
        return render_template("admin/imports.html", form=form, jobs=imports.jobs()), 422
    upload = form.file.data
    try:
        job = import_commands.upload(auth.current_actor(), upload.stream, upload.filename)
    except ValidationError as exc:
        db.session.rollback()
        _field_error(form, exc)
        return render_template("admin/imports.html", form=form, jobs=imports.jobs()), 422
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
        form.attribute_columns.data = [str(index) for name, index in (job.mapping or {}).items()
                                       if name.startswith(ATTRIBUTE)]
    form.topic.choices = [c for c in form.topic.choices if c.value == "" or topics.get(c.value).kind == "marketing"]
    return form


def _import_page(job: ImportJob, form=None, status: int = 200):
    if form is None and job.status in ("uploaded", "previewed"):
        form = _settings_form(job)
    running = job.status in ("queued", "running")
    return render_template(
        "admin/import.html", job=job, form=form, running=running,
        topic=db.session.get(Topic, job.topic_id) if job.topic_id else None,
        sample=imports.sample(job) if job.status == "previewed" else [],
        inline_limit=imports.inline_limit(),
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
        has_header=form.has_header.data, third_party=form.third_party.data, share_evidence=form.share_evidence.data,
    )
    try:
        import_commands.preview(auth.current_actor(), job, settings)
    except ValidationError as exc:
        db.session.rollback()
        job = _get(ImportJob, job_id)
        _field_error(form, exc)
        return _import_page(job, form, 422)
    db.session.commit()
    return redirect(url_for("admin.import_detail", job_id=job.id) + "#preview")


def _import_refused(job_id: int, exc: ValidationError):
    """Back to the import's page with the reason; the refused step changed nothing."""
    db.session.rollback()
    flash(localized(exc), "error")
    return redirect(url_for("admin.import_detail", job_id=job_id))


@bp.post("/imports/<int:job_id>/run")
def import_run(job_id: int):
    job = _get(ImportJob, job_id)
    try:
        import_commands.start(auth.current_actor(), job)
    except ValidationError as exc:
        return _import_refused(job_id, exc)
    db.session.commit()
    if job.total <= imports.inline_limit():
        job = imports.run(job.id)
        flash(_("Import finished: %(new)s new, %(updated)s updated.", new=job.created_count,
                updated=job.updated_count)
              if job.status == "done" else _("Import failed: %(error)s", error=job.error),
              "error" if job.status != "done" else "ok")
    else:
        enqueue("import_csv", job.id)
    return redirect(url_for("admin.import_detail", job_id=job_id))


@bp.post("/imports/<int:job_id>/retry")
def import_retry(job_id: int):
    job = _get(ImportJob, job_id)
    try:
        import_commands.retry(auth.current_actor(), job)
    except ValidationError as exc:
        return _import_refused(job_id, exc)
    db.session.commit()
    enqueue("import_csv", job.id)
    return redirect(url_for("admin.import_detail", job_id=job_id))


@bp.post("/imports/<int:job_id>/discard")
def import_discard(job_id: int):
    job = _get(ImportJob, job_id)
    try:
        import_commands.discard(auth.current_actor(), job)
    except ValidationError as exc:
        return _import_refused(job_id, exc)
    db.session.commit()
    flash(_("Import discarded and its file deleted."))
    return redirect(url_for("admin.import_list"))
