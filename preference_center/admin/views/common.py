"""What every staff page shares: sign-in check, no caching, template helpers, form-error and 404 helpers."""
from __future__ import annotations

import datetime as dt
from urllib.parse import urlencode

from flask import abort, g, request, url_for
from flask_babel import format_decimal

from ... import inputs
from ...errors import DomainError as ValidationError
from ...extensions import db
from ...i18n import localized
from ...models import utcnow
from ...public.forms import LANGUAGE_NAMES
from .. import auth, bp, history

bp.before_request(auth.load_staff)


@bp.after_request
def no_store(response):
    # Staff pages show personal data: never keep them in shared caches.
    response.headers.setdefault("Cache-Control", "no-store")
    return response


@bp.app_template_filter("staff_time")
def staff_time(moment: dt.datetime | None) -> str:
    return history.when(moment) if moment else "—"


@bp.app_template_filter("grouped")
def grouped(count: int) -> str:
    """A count grouped in thousands the page language's way (1,234 / 12.345), as the confirmation step writes it."""
    return format_decimal(count)


def language_url(code: str) -> str:
    """This page in another language: a GET keeps its query; after a POST, the dashboard (a form is not re-sent)."""
    if request.method != "GET":
        return url_for("admin.dashboard", lang=code)
    args = {k: v for k, v in request.args.to_dict(flat=False).items() if k != "lang"}
    return f"{request.path}?{urlencode({**args, 'lang': [code]}, doseq=True)}"


@bp.app_context_processor
def staff_globals():
    return {"staff_user": g.get("staff"), "now_utc": utcnow(), "staff_language_url": language_url,
            "staff_language_names": LANGUAGE_NAMES}


def _field_error(form, exc: ValidationError) -> None:
    """Show a domain error next to the field it names (or on top of the form)."""
    name = exc.field if exc.field in form else None
    if name is None and exc.field and f"map_{exc.field}" in form:
        name = f"map_{exc.field}"
    if name:
        form[name].errors = list(form[name].errors) + [localized(exc)]
    else:
        form.form_errors.append(localized(exc))


def _get(model, ident):
    """The row, or a 404 (also for an id the model's column cannot hold: PostgreSQL's INTEGER is 32 bits)."""
    row = db.session.get(model, ident) if inputs.fits(ident, model) else None
    if row is None:
        abort(404)
    return row
