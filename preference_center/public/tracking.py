"""The recipient's own choice about open and click tracking, on the preference page."""
from __future__ import annotations

from flask import flash, redirect, request, url_for
from flask_babel import gettext as _

from .. import links
from ..commands import tracking
from ..extensions import db
from ..limits import PAGE_VIEWS, limiter
from . import bp, choices
from .forms import ActionForm
from .routes import _link, _person, _submitted


@bp.post("/p/<token>/tracking")
@limiter.limit(PAGE_VIEWS)
def save_tracking(token: str):
    contact = _link(links.PREFERENCES, token).contact
    _submitted(ActionForm())
    allowed = request.form.get("tracking") == "yes"
    if tracking.choose(_person(choices.PREFERENCES_PAGE), contact, allowed):
        db.session.commit()
    flash(_("Saved: we may see whether you open our email and which links you click.") if allowed
          else _("Saved: we do not see whether you open our email or which links you click."))
    return redirect(url_for("public.preferences", token=token), 303)
