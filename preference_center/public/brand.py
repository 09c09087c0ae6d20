"""The organisation's logo and accent colour, served to every page (the policy allows no inline style)."""
from __future__ import annotations

from flask import Blueprint, Response, abort

from .. import branding

bp = Blueprint("brand", __name__, url_prefix="/brand")


@bp.get("/logo")
def logo() -> Response:
    found = branding.logo()
    if found is None:
        abort(404)
    data, kind = found
    response = Response(data, mimetype=kind)
    response.headers["Cache-Control"] = "public, max-age=300"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


@bp.get("/theme.css")
def theme() -> Response:
    accent = branding.current().accent  # checked as #rrggbb when saved
    response = Response(f":root {{ --accent: {accent}; }}\n", mimetype="text/css")
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
