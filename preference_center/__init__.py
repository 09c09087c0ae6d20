"""Preference Center: the application factory."""
from __future__ import annotations

from pathlib import Path

from flask import Flask, jsonify, render_template, request
from flask.sessions import SecureCookieSessionInterface
from flask_babel import gettext as _
from sqlalchemy import event
from sqlalchemy.engine import Engine
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from . import config as settings
from . import inputs, logs
from .errors import DomainError
from .extensions import csrf, db, migrate
from .i18n import localized

PACKAGE = Path(__file__).resolve().parent


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, with the signing serializer built once per set of keys, not per request
    (Flask opens the session of every request, one-click posts without cookies included)."""

    _built: tuple = (None, None)

    def get_signing_serializer(self, app: Flask):
        keys = (app.secret_key, tuple(app.config["SECRET_KEY_FALLBACKS"] or ()))
        built_for, serializer = self._built
        if built_for != keys:
            serializer = super().get_signing_serializer(app)
            self._built = (keys, serializer)
        return serializer


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app: config from PC_* variables, then `test_config` on top."""
    instance = Path((test_config or {}).get("PC_INSTANCE_PATH") or settings.instance_path())
    app = Flask(
        __name__,
        instance_path=str(instance),
        template_folder=str(settings.PROJECT_ROOT / "templates"),
        static_folder=str(settings.PROJECT_ROOT / "static"),
    )
    app.session_interface = SessionInterface()
    app.config.update(settings.load(instance))
    if test_config:
        app.config.update(test_config)
        if "PC_SECRET_KEYS" in test_config:
            app.config["SECRET_KEY"] = test_config["PC_SECRET_KEYS"][-1]
    settings.check_production(app.config)
    if app.config["PC_PROXY_HOPS"] > 0:
        # Behind a reverse proxy the peer is the proxy: the client's address comes from its headers.
        hops = app.config["PC_PROXY_HOPS"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)
    settings.warn_unknown_variables()  # once per process
    from .privacy_logging import install as mask_logs

    mask_logs()  # log lines carry ids, never addresses or tokens
    instance.mkdir(parents=True, exist_ok=True)
    register_input_rules(app)  # first: routes bind their converters, and its hook runs before every other
    logs.init_app(app)  # before even that one: every answer carries its request id

    db.init_app(app)
    migrate.init_app(app, db, directory=str(PACKAGE / "migrations"), render_as_batch=True)
    csrf.init_app(app)
    from .i18n import init_babel
    from .limits import init_limits

    init_babel(app)
    init_limits(app)

    from .api import bp as api_bp
    from .public import bp as public_bp
    from .webhooks import bp as webhooks_bp

    csrf.exempt(api_bp)
    csrf.exempt(webhooks_bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(public_bp)
    app.register_blueprint(webhooks_bp)
    from .admin import bp as admin_bp

    app.register_blueprint(admin_bp)
    from . import branding
    from .public.brand import bp as brand_bp

    app.register_blueprint(brand_bp)
    app.add_template_global(branding.current, "brand")
    app.add_template_filter(branding.mask, "masked")
    app.add_template_filter(branding.page_topic_name, "topic_name")
    app.add_template_filter(branding.page_topic_description, "topic_description")
    if app.config["PC_ENV"] != "production":
        from .mail.views import bp as outbox_bp

        app.register_blueprint(outbox_bp)

    from worker import celery_init_app

    celery_init_app(app)
    register_health(app)
    register_errors(app)
    register_security_headers(app)
    from . import cli

    cli.register(app)
    return app


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record):
    # WAL lets the web process read while the worker writes; the busy timeout
    # makes writers queue instead of failing with "database is locked".
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


def register_health(app: Flask) -> None:
    """/healthz, /healthz/live, /healthz/ready (health.py) and /metrics (metrics.py)."""
    from . import health, metrics

    app.register_blueprint(health.bp)
    metrics.init_app(app)


def wants_json() -> bool:
    return request.path.startswith(("/api/", "/webhooks/", "/healthz", "/metrics"))


def register_input_rules(app: Flask) -> None:
    """Hostile input (see inputs.py): the request class, bounded ids in paths, and the pages' input hook."""
    app.request_class = inputs.Request
    app.url_map.converters["int"] = inputs.IdConverter

    def refuse_hostile_input():
        # The JSON doors check their own input and answer in their own shape.
        if wants_json():
            return None
        inputs.check_query_string()
        inputs.check_path()
        return None

    # First of all hooks, before Flask-WTF's CSRF check, the rate limiter and the staff sign-in check (which
    # reads the query string): a refused address is refused for what it is, and counts against no limit.
    app.before_request_funcs.setdefault(None, []).insert(0, refuse_hostile_input)


def register_errors(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def domain_error(error: DomainError):
        # A door that did not map a refusal itself: the same status, never a 500.
        db.session.rollback()
        if wants_json():
            return jsonify({"error": {"code": error.code, "message": error.message}}), error.status
        return render_template("error.html", status=error.status, title=_("Not possible"),
                               message=localized(error)), error.status

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        db.session.rollback()
        if wants_json():
            code = (error.name or "error").lower().replace(" ", "_")
            if error.code == 413:
                code = "payload_too_large"
            # The exception's own headers (Allow on a 405, Retry-After on a 429), not its HTML body's type.
            headers = [(k, v) for k, v in error.get_headers() if k.lower() != "content-type"]
            return jsonify({"error": {"code": code, "message": error.description}}), error.code, headers
        return render_template("error.html", status=error.code, title=error.name,
                               message=error.description), error.code


def register_security_headers(app: Flask) -> None:
    # The same for every answer: built once, each added only where the view did not set its own.
    always = (
        # Links carry signed tokens in the path: no Referer may leak them.
        ("Referrer-Policy", "no-referrer"),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Content-Security-Policy",
         "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
         "frame-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    )
    no_store = (("Cache-Control", "no-store"),)
    # Production is served over HTTPS only (secure cookies): browsers must never try plain HTTP.
    https_only = (("Strict-Transport-Security", "max-age=31536000; includeSubDomains"),)
    # (carries tokens, production) -> the headers every such answer gets
    sets = {(tokens, production): always + (no_store if tokens else ()) + (https_only if production else ())
            for tokens in (False, True) for production in (False, True)}

    @app.after_request
    def security_headers(response):
        headers = response.headers
        wanted = sets[(request.path.startswith(("/p/", "/u/", "/confirm/", "/api/")),
                       app.config["PC_ENV"] == "production")]
        present = {name.lower() for name, _ in headers}
        for name, value in wanted:
            if name.lower() not in present:
                headers.add(name, value)
        return response
