"""Rate limits for the public pages: one Limiter, configured from PC_RATELIMIT* settings."""
from __future__ import annotations

from flask import Flask, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

# Generous for people, tight enough to stop a script. One-click is limited per
# link, not per address: Gmail and Yahoo post every recipient's opt-out from a
# few shared addresses, and a limit per IP would drop real opt-outs at scale.
PAGE_VIEWS = "60/minute"
SENDS_MAIL = "10/minute"
ONE_CLICK = "30/minute"

limiter = Limiter(key_func=get_remote_address)


def per_link() -> str:
    """Rate-limit key of one signed link (the request path)."""
    return "link:" + request.path


def init_limits(app: Flask) -> None:
    """Bind the limiter to `app`; PC_RATELIMITS_ENABLED switches it, PC_RATELIMIT_STORAGE_URL stores counts."""
    app.config["RATELIMIT_ENABLED"] = bool(app.config["PC_RATELIMITS_ENABLED"])
    app.config["RATELIMIT_STORAGE_URI"] = app.config["PC_RATELIMIT_STORAGE_URL"]
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    limiter.init_app(app)
