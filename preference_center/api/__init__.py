"""The JSON API under /api/v1."""
from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")

# The route modules register on bp: the core API, privacy (consent proof), and consent as a service
# (eligibility, feed, webhooks).
from . import privacy, routes, service_routes  # noqa: E402,F401
