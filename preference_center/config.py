"""Settings from PC_* environment variables: the one place that reads os.environ."""
from __future__ import annotations

import datetime as dt
import math
import os
from pathlib import Path

DEFAULT_SECRET = "dev-insecure-secret-change-me"
# Estimated bits a production secret must carry (a 22-character token_urlsafe carries ~130).
MIN_SECRET_BITS = 64
MAKE_ONE = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(RuntimeError):
    """The configuration cannot run safely (e.g. production without a secret)."""


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value in (None, "") else value


def _int(name: str, default: int) -> int:
    raw = _env(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from exc


def _float(name: str, default: float) -> float:
    raw = _env(name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc


def instance_path() -> Path:
    """Where SQLite, the outbox and uploads live."""
    return Path(_env("PC_INSTANCE_PATH", str(PROJECT_ROOT / "instance"))).resolve()


def load(instance: Path) -> dict:
    """Build the Flask config mapping from the environment."""
    env = _env("PC_ENV", "development")
    if env not in ("development", "production", "testing"):
        raise ConfigError("PC_ENV must be development, production or testing")
    keys = [k.strip() for k in (_env("PC_SECRET_KEYS", DEFAULT_SECRET) or "").split(",") if k.strip()]
    if not keys:
        keys = [DEFAULT_SECRET]
    database_url = _env("PC_DATABASE_URL", f"sqlite:///{instance / 'preference_center.sqlite3'}")
    broker_url = _env("PC_BROKER_URL", f"sqla+sqlite:///{instance / 'broker.sqlite3'}")
    config = {
        "PC_ENV": env,
        "SECRET_KEY": keys[-1],
        "PC_SECRET_KEYS": keys,
        # The suppression hash must outlive key rotation: it is its own key,
        # never derived from PC_SECRET_KEYS (production refuses to start without it).
        "PC_SUPPRESSION_KEY": _env("PC_SUPPRESSION_KEY", DEFAULT_SECRET),
        "PC_BASE_URL": (_env("PC_BASE_URL", "http://127.0.0.1:5000") or "").rstrip("/"),
        "PC_INSTANCE_PATH": str(instance),
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "PC_BROKER_URL": broker_url,
        "PC_MAIL_TRANSPORT": _env("PC_MAIL_TRANSPORT", "outbox"),
        "PC_FROM_EMAIL": _env("PC_FROM_EMAIL", "Preference Center <news@example.com>"),
        "PC_POSTAL_ADDRESS": _env("PC_POSTAL_ADDRESS", "Example Ltd, 1 Example Street, 00000 Example City"),
        "PC_UNSUBSCRIBE_MAILTO": _env("PC_UNSUBSCRIBE_MAILTO"),
        "PC_SENDGRID_API_KEY": _env("PC_SENDGRID_API_KEY"),
        "PC_SENDGRID_API_HOST": _env("PC_SENDGRID_API_HOST", "https://api.sendgrid.com"),
        "PC_SENDGRID_WEBHOOK_PUBLIC_KEY": _env("PC_SENDGRID_WEBHOOK_PUBLIC_KEY"),
        "PC_SENDGRID_WEBHOOK_ALLOW_UNSIGNED": _env("PC_SENDGRID_WEBHOOK_ALLOW_UNSIGNED", "0") == "1",
        "PC_SENDGRID_MAX_ATTEMPTS": _int("PC_SENDGRID_MAX_ATTEMPTS", 5),
        "PC_SENDGRID_TIMEOUT": _float("PC_SENDGRID_TIMEOUT", 10.0),
        "PC_SMTP_URL": _env("PC_SMTP_URL", "smtp://127.0.0.1:25"),
        "PC_SEND_RATE": _float("PC_SEND_RATE", 0.0),
        "PC_BATCH_SIZE": _int("PC_BATCH_SIZE", 5000),
        "PC_BATCH_LEASE_SECONDS": _int("PC_BATCH_LEASE_SECONDS", 600),
        "PC_REQUEUE_AFTER_SECONDS": _int("PC_REQUEUE_AFTER_SECONDS", 120),
        "PC_SEND_ATTEMPTS": _int("PC_SEND_ATTEMPTS", 5),
        "PC_TICK_SECONDS": _float("PC_TICK_SECONDS", 5.0),
        "PC_SETTLE_SECONDS": _float("PC_SETTLE_SECONDS", 1.0),
        "PC_RATELIMIT_STORAGE_URL": _env("PC_RATELIMIT_STORAGE_URL", "memory://"),
        "PC_RATELIMITS_ENABLED": _env("PC_RATELIMITS_ENABLED", "1") == "1",
        "MAX_CONTENT_LENGTH": _int("PC_MAX_BODY_BYTES", 1024 * 1024),
        "PC_API_MAX_BODY_BYTES": _int("PC_API_MAX_BODY_BYTES", 256 * 1024),
        "PC_LINK_MAX_AGE_DAYS": _int("PC_LINK_MAX_AGE_DAYS", 400),
        "PC_CONFIRM_MAX_AGE_HOURS": _int("PC_CONFIRM_MAX_AGE_HOURS", 48),
        "PC_STEPUP_MAX_AGE_HOURS": _int("PC_STEPUP_MAX_AGE_HOURS", 2),
        "PC_RETENTION_DAYS": _int("PC_RETENTION_DAYS", 3 * 365),
        "PC_DELIVERY_RETENTION_DAYS": _int("PC_DELIVERY_RETENTION_DAYS", 400),
        "PC_UPLOAD_RETENTION_DAYS": _int("PC_UPLOAD_RETENTION_DAYS", 7),
        "PC_SOFT_BOUNCE_LIMIT": _int("PC_SOFT_BOUNCE_LIMIT", 5),
        "PC_STAFF_SESSION_HOURS": _int("PC_STAFF_SESSION_HOURS", 8),
        "PERMANENT_SESSION_LIFETIME": dt.timedelta(hours=_int("PC_STAFF_SESSION_HOURS", 8)),
        "PC_IMPORT_MAX_BYTES": _int("PC_IMPORT_MAX_BYTES", 64 * 1024 * 1024),
        "PC_IMPORT_INLINE_MAX_ROWS": _int("PC_IMPORT_INLINE_MAX_ROWS", 1000),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": env == "production",
        "WTF_CSRF_TIME_LIMIT": None,
        # Referrer-Policy is no-referrer everywhere (tokens live in paths), so
        # browsers send no Referer on our own HTTPS posts; the CSRF token and
        # the SameSite session cookie remain the protection.
        "WTF_CSRF_SSL_STRICT": False,
        "PC_SUBSCRIBE_MIN_SECONDS": _int("PC_SUBSCRIBE_MIN_SECONDS", 3),
        "BABEL_DEFAULT_LOCALE": "en",
        "PC_LOCALES": ["en", "es"],
    }
    return config


def secret_bits(secret: str) -> float:
    """A conservative estimate of a secret's strength: its length times its per-character Shannon entropy."""
    if not secret:
        return 0.0
    counts = {c: secret.count(c) for c in set(secret)}
    per_char = -sum(n / len(secret) * math.log2(n / len(secret)) for n in counts.values())
    return per_char * len(secret)


def _weak(secret: str | None) -> bool:
    return not secret or secret == DEFAULT_SECRET or len(secret) < 16 or secret_bits(secret) < MIN_SECRET_BITS


def check_production(config: dict) -> None:
    """Refuse to run in production with a missing, default or guessable secret (one clear line, no traceback)."""
    if config.get("PC_ENV") != "production":
        return
    keys = config.get("PC_SECRET_KEYS") or []
    if not keys or any(_weak(k) for k in keys):
        raise ConfigError(
            "PC_ENV=production needs PC_SECRET_KEYS set to random secrets (comma-separated, oldest first; "
            f"16+ characters and about {MIN_SECRET_BITS}+ bits each, e.g. from {MAKE_ONE}); "
            "the development secret and guessable values are refused")
    if _weak(config.get("PC_SUPPRESSION_KEY")):
        raise ConfigError(
            "PC_ENV=production needs its own PC_SUPPRESSION_KEY, a random secret set once and never changed "
            f"(e.g. from {MAKE_ONE}): it keys the suppression list, which must outlive signing-key rotation")
    if config.get("PC_SUPPRESSION_KEY") in keys:
        raise ConfigError("PC_SUPPRESSION_KEY must not be one of PC_SECRET_KEYS: signing keys rotate, "
                          "the suppression key never does")
