"""Health checks: /healthz/live (the process answers), /healthz/ready (database and broker reachable), /healthz.

`/healthz` keeps its contract shape, `{"status", "database", "broker"}`, and
is the same check as `/healthz/ready`. A load balancer or orchestrator
restarts a process that fails liveness and stops routing to one that is not
ready. Neither needs a token; neither says more than "ok" or the error's type.
"""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from kombu import Connection
from sqlalchemy import text

from .extensions import db

bp = Blueprint("health", __name__)


def checks() -> dict[str, str]:
    """Reach the database and the broker; "ok" or the error's type for each."""
    result = {"database": "ok", "broker": "ok"}
    try:
        db.session.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        db.session.rollback()
        result["database"] = f"error: {type(exc).__name__}"
    try:
        with Connection(current_app.config["PC_BROKER_URL"], connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:  # noqa: BLE001
        result["broker"] = f"error: {type(exc).__name__}"
    return result


@bp.get("/healthz/live")
def live():
    """The process is up and answering (nothing else is checked)."""
    return jsonify({"status": "ok"})


@bp.get("/healthz/ready")
@bp.get("/healthz")
def ready():
    """Database and broker reachable: 200, otherwise 503 naming what failed."""
    result = checks()
    healthy = all(value == "ok" for value in result.values())
    return jsonify({"status": "ok" if healthy else "error", **result}), 200 if healthy else 503
