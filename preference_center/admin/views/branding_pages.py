"""Branding settings (admins), topic names and descriptions per language, and a topic's tracking setting."""
from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf.file import FileField
from wtforms import BooleanField, StringField, TextAreaField
from wtforms.validators import Length, Optional

from ... import branding, topics
from ...commands import DomainError
from ...commands import branding as branding_commands
from ...commands import tracking as tracking_commands
from ...extensions import db
from ...i18n import localized
from ...inputs import Form
from ...models import Branding
from .. import auth, bp
from .common import _field_error


class BrandingForm(Form):
    org_name = StringField(_l("Organisation name"), validators=[Optional(), Length(max=200)])
    logo = FileField(_l("Logo (PNG, JPEG, GIF or WebP, at most 200 kB)"))
    remove_logo = BooleanField(_l("Remove the logo"))
    accent = StringField(_l("Accent colour (hex, e.g. #0b5cad)"), validators=[Optional(), Length(max=7)])
    privacy_url = StringField(_l("Privacy-policy address (https://…)"), validators=[Optional(), Length(max=500)])
    postal_address = StringField(_l("Postal address (shown in every mail)"), validators=[Optional(), Length(max=500)])
    sender_name = StringField(_l("Sender name"), validators=[Optional(), Length(max=200)])
    sender_email = StringField(_l("Sender address"), validators=[Optional(), Length(max=320)])


class TranslationForm(Form):
    name = StringField(_l("Name"), validators=[Optional(), Length(max=200)])
    description = TextAreaField(_l("Description"), validators=[Optional(), Length(max=2000)])


@bp.route("/settings/branding", methods=["GET", "POST"])
@auth.role_required("admin")
def branding_settings():
    row = db.session.get(Branding, 1)
    form = BrandingForm(obj=row) if request.method == "GET" else BrandingForm()
    status = 200
    if request.method == "POST":
        if form.validate_on_submit():
            upload = form.logo.data
            data = upload.read(branding.LOGO_MAX_BYTES + 1) if upload else None
            try:
                changed = branding_commands.save(
                    auth.current_actor(), {name: form[name].data for name in branding.FIELDS}, logo_data=data,
                    logo_content_type=upload.mimetype if upload else None, remove_logo=form.remove_logo.data)
            except DomainError as exc:
                db.session.rollback()
                _field_error(form, exc)
                status = exc.status
            else:
                db.session.commit()
                flash(_("Branding saved: %(fields)s.", fields=", ".join(changed)) if changed else _("Nothing changed."))
                return redirect(url_for("admin.branding_settings"))
        else:
            status = 422
    return render_template("admin/branding.html", form=form, brand=branding.current()), status


@bp.route("/topics/<key>/translations", methods=["GET", "POST"])
def topic_translations(key: str):
    topic = topics.get(key) or abort(404)
    default = current_app.config.get("BABEL_DEFAULT_LOCALE", "en")
    languages = [code for code in current_app.config.get("PC_LOCALES") or [] if code != default]
    existing = branding.translations_of(topic)
    forms = {code: TranslationForm(prefix=code, obj=existing.get(code)) if request.method == "GET"
             else TranslationForm(prefix=code) for code in languages}
    status = 200
    if request.method == "POST":
        if all(form.validate_on_submit() for form in forms.values()):
            try:
                changed = [code for code, form in forms.items() if branding_commands.translate_topic(
                    auth.current_actor(), topic, code, form.name.data, form.description.data)]
            except DomainError as exc:
                db.session.rollback()
                flash(localized(exc), "error")
                status = exc.status
            else:
                db.session.commit()
                flash(_("Translations saved: %(languages)s.", languages=", ".join(changed)) if changed
                      else _("Nothing changed."))
                return redirect(url_for("admin.topic_translations", key=topic.key))
        else:
            status = 422
    return render_template("admin/topic_translations.html", topic=topic, forms=forms), status


@bp.post("/topics/<key>/tracking")
def topic_tracking(key: str):
    """Let the topic's campaigns track opens and clicks of the recipients who agreed (or stop it)."""
    topic = topics.get(key) or abort(404)
    enabled = request.form.get("enabled") == "1"
    try:
        tracking_commands.set_topic(auth.current_actor(), topic, enabled)
    except DomainError as exc:
        db.session.rollback()
        flash(localized(exc), "error")
        return redirect(url_for("admin.topic_edit", key=topic.key), 303)
    db.session.commit()
    flash(_("Open and click tracking is on for recipients who agreed.") if enabled
          else _("Open and click tracking is off."))
    return redirect(url_for("admin.topic_edit", key=topic.key), 303)
