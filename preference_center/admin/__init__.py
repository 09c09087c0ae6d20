"""The staff side: /admin pages for topics, contacts, imports, campaigns, data requests and the audit log."""
from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin")

from . import views  # noqa: E402,F401  (registers the views)
