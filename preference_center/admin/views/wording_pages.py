"""Consent wordings: the published versions, and publishing a new one (admins); a wording never changes."""
from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_babel import gettext as _

from ...commands import DomainError, wordings
from ...extensions import db
from .. import auth, bp
from ..forms import WordingForm
from .common import _field_error


def _page(form: WordingForm, status: int = 200):
    return render_template("admin/wordings.html", wordings=wordings.all_wordings(), form=form), status


@bp.get("/consent-texts")
def wording_list():
    return _page(WordingForm(formdata=None))


@bp.post("/consent-texts")
@auth.role_required("admin")
def wording_publish():
    form = WordingForm()
    if not form.validate_on_submit():
        return _page(form, 422)
    try:
        wording = wordings.publish(auth.current_actor(), form.locale.data, form.version.data, form.text.data)
    except DomainError as exc:
        db.session.rollback()
        _field_error(form, exc)
        return _page(form, exc.status)
    db.session.commit()
    flash(_("Version %(version)s (%(locale)s) is published; the public form shows it from now on.",
            version=wording.version, locale=wording.locale))
    return redirect(url_for("admin.wording_list"), 303)
