"""The recipient side: pages reached through signed links in email, no account needed."""
from flask import Blueprint

bp = Blueprint("public", __name__)

from . import privacy_routes, routes, tracking  # noqa: E402,F401  (registers the views on bp)
