"""Settings from PC_* environment variables: the one place that reads os.environ.

`SETTINGS` declares every setting once (name, type, default, meaning, what
production needs); `load` reads the environment through it, and the
configuration tables of README.md and docs/configuration.md are generated from
it (`preference-center settings --write`; a test fails when they differ). Code
elsewhere reads `current_app.config[...]` and never restates a default.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SECRET = "dev-insecure-secret-change-me"
# Estimated bits a production secret must carry (a 22-character token_urlsafe carries ~130).
MIN_SECRET_BITS = 64
MAKE_ONE = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'
PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Variables of the test suite and the benchmarks, never read by the application.
NOT_OURS = ("PC_TEST_", "PC_BENCH_")

log = logging.getLogger(__name__)


class ConfigError(RuntimeError):
    """The configuration cannot run safely (e.g. production without a secret)."""


@dataclass(frozen=True)
class Setting:
    """One PC_* variable: how it is parsed, its default and what it means."""

    name: str
    kind: str  # str, int, float, bool, list, cidrs
    default: str | None  # as it would be written in the environment; None: unset
    meaning: str
    production: str = ""  # what production needs, when it needs something
    shown: str | None = None  # the default as the docs show it, when it is computed
    derive: Callable[[Path], str] | None = None  # a default computed from the instance path

    def shown_default(self) -> str:
        """The default as the configuration table shows it."""
        if self.shown is not None:
            return self.shown
        return "unset" if self.default is None else f"`{self.default}`"


SETTINGS: tuple[Setting, ...] = (
    Setting("PC_ENV", "str", "development",
            "`development`, `production` or `testing`; `production` enforces real secrets and secure cookies, "
            "logs JSON lines and hides the outbox page", "`production`"),
    Setting("PC_DATABASE_URL", "str", None,
            "SQLAlchemy URL of the database", "`postgresql+psycopg://…`",
            shown="SQLite in the instance folder",
            derive=lambda instance: f"sqlite:///{instance / 'preference_center.sqlite3'}"),
    Setting("PC_BROKER_URL", "str", None,
            "Celery broker; the default needs no server", "`redis://…` or `amqp://…`",
            shown="SQLite in the instance folder",
            derive=lambda instance: f"sqla+sqlite:///{instance / 'broker.sqlite3'}"),
    Setting("PC_SECRET_KEYS", "list", DEFAULT_SECRET,
            "signing keys, comma-separated, oldest first; the last signs, all verify (rotation)",
            "required: random, 16+ characters each", shown="a development key"),
    Setting("PC_SUPPRESSION_KEY", "str", DEFAULT_SECRET,
            "HMAC key of the suppression hash; set it once and never change it",
            "required: random, not one of `PC_SECRET_KEYS`", shown="a development key"),
    Setting("PC_BASE_URL", "str", "http://127.0.0.1:5000",
            "public base URL used in every link; `run --port` and `make run PORT=` derive it when unset",
            "required: the public `https://` URL"),
    Setting("PC_INSTANCE_PATH", "str", None, "where SQLite, the outbox and uploads live",
            shown="`./instance`", derive=lambda instance: str(PROJECT_ROOT / "instance")),
    Setting("PC_MAIL_TRANSPORT", "str", "outbox", "`outbox`, `smtp` or `sendgrid`", "`sendgrid` or `smtp`"),
    Setting("PC_FROM_EMAIL", "str", "Preference Center <news@example.com>", "sender of every message",
            "your sender", shown="an example"),
    Setting("PC_POSTAL_ADDRESS", "str", "Example Ltd, 1 Example Street, 00000 Example City",
            "the physical address line in every marketing mail", "your address", shown="an example"),
    Setting("PC_UNSUBSCRIBE_MAILTO", "str", None, "adds a `mailto:` to `List-Unsubscribe`"),
    Setting("PC_SENDGRID_API_KEY", "str", None, "SendGrid API key", "with the `sendgrid` transport"),
    Setting("PC_SENDGRID_API_HOST", "str", "https://api.sendgrid.com", "SendGrid host (override for tests)"),
    Setting("PC_SENDGRID_MAX_ATTEMPTS", "int", "5", "attempts of one SendGrid request on 429/5xx"),
    Setting("PC_SENDGRID_TIMEOUT", "float", "10", "SendGrid request timeout (seconds)"),
    Setting("PC_SENDGRID_WEBHOOK_PUBLIC_KEY", "str", None,
            "base64 key shown by SendGrid for signed event webhooks", "to accept SendGrid's event webhook"),
    Setting("PC_SENDGRID_WEBHOOK_ALLOW_UNSIGNED", "bool", "0", "`1` accepts unsigned webhook posts in production"),
    Setting("PC_SMTP_URL", "str", "smtp://127.0.0.1:25",
            "SMTP server of the `smtp` transport: `smtp://user:pass@host:port`, `smtps://…`, `?starttls=1`"),
    Setting("PC_SEND_RATE", "float", "0", "messages per second to the provider, shared by every worker; `0`: no limit"),
    Setting("PC_BATCH_SIZE", "int", "5000", "recipients per batch task (planned and re-checked together; each "
            "provider request of up to 1,000 is claimed right before its call)"),
    Setting("PC_BATCH_LEASE_SECONDS", "int", "600",
            "how long a claimed batch belongs to its worker before it counts as dead"),
    Setting("PC_REQUEUE_AFTER_SECONDS", "int", "120",
            "a queued batch, system message or import older than this is handed to the broker again"),
    Setting("PC_SEND_ATTEMPTS", "int", "5", "batch attempts on retryable provider errors before deliveries fail"),
    Setting("PC_TICK_SECONDS", "float", "5", "scheduler period (starts due campaigns, finds lost work)"),
    Setting("PC_SETTLE_SECONDS", "float", "1", "how often the worker chains waiting one-click opt-outs into the ledger"),
    Setting("PC_RATELIMIT_STORAGE_URL", "str", "memory://",
            "Flask-Limiter storage of the public pages' rate limits", "`redis://…` with several web processes"),
    Setting("PC_RATELIMITS_ENABLED", "bool", "1", "`0` switches the public pages' rate limits off"),
    Setting("PC_MAX_BODY_BYTES", "int", "1048576", "larger request bodies get 413 (pages and uploads)",
            shown="`1048576` (1 MiB)"),
    Setting("PC_API_MAX_BODY_BYTES", "int", "262144", "larger API bodies get 413", shown="`262144` (256 KiB)"),
    Setting("PC_LINK_MAX_AGE_DAYS", "int", "400", "preference and unsubscribe links stay valid this long"),
    Setting("PC_CONFIRM_MAX_AGE_HOURS", "int", "48", "double opt-in confirmation links expire after this"),
    Setting("PC_STEPUP_MAX_AGE_HOURS", "int", "2", "data-rights (export, erasure) confirmation links expire after this"),
    Setting("PC_RETENTION_DAYS", "int", "1095",
            "contacts with no interaction and no active basis for this long are erased"),
    Setting("PC_DELIVERY_RETENTION_DAYS", "int", "400",
            "delivery rows older than this are folded into anonymous daily statistics, and engagement events "
            "into anonymous hourly counts per campaign"),
    Setting("PC_UPLOAD_RETENTION_DAYS", "int", "7",
            "uploaded CSV files of imports that never ran (or failed) are deleted after this"),
    Setting("PC_SOFT_BOUNCE_LIMIT", "int", "5", "soft bounces (blocked, deferred) before an address is suppressed"),
    Setting("PC_STAFF_SESSION_HOURS", "int", "8", "a staff sign-in lasts this long"),
    Setting("PC_IMPORT_MAX_BYTES", "int", "67108864", "largest CSV file staff may upload",
            shown="`67108864` (64 MiB)"),
    Setting("PC_IMPORT_INLINE_MAX_ROWS", "int", "1000",
            "imports up to this many rows run in the request; larger ones run in the worker"),
    Setting("PC_SUBSCRIBE_MIN_SECONDS", "int", "3",
            "the public form counts faster submissions as a robot's (minimum fill time)"),
    Setting("PC_LOCALES", "list", "en,es", "languages offered on the recipient pages (translations: `en`, `es`)"),
    Setting("PC_LOG_LEVEL", "str", "INFO", "`DEBUG`, `INFO`, `WARNING` or `ERROR`; routine background work logs at DEBUG"),
    Setting("PC_LOG_FORMAT", "str", None,
            "`json` (one object per line) or `text`", shown="`json` in production, `text` otherwise"),
    Setting("PC_METRICS_ALLOW", "cidrs", "127.0.0.0/8,::1/128",
            "networks (CIDRs, comma-separated) allowed to read `/metrics` without a token; `none`: token only",
            "your Prometheus's network, or `none` behind a proxy on the same host"),
    Setting("PC_PROXY_HOPS", "int", "0",
            "reverse proxies in front of the site whose `X-Forwarded-For` and `X-Forwarded-Proto` are trusted "
            "(the client address recorded in the ledger and checked by `/metrics`)",
            "`1` behind one HTTPS proxy"),
    Setting("PC_METRICS_TOKEN", "str", None,
            "bearer token that reads `/metrics` from anywhere (`Authorization: Bearer …`)"),
    Setting("PC_WEBHOOK_ALLOW_PRIVATE", "bool", "0",
            "`1` lets outgoing webhooks target loopback and private addresses (development, tests)", "`0`"),
    Setting("PC_WEBHOOK_TIMEOUT_SECONDS", "float", "10",
            "an outgoing webhook attempt that takes longer fails (and is retried)"),
    Setting("PC_WEBHOOK_RETRY_BASE_SECONDS", "float", "5", "first retry delay of an outgoing webhook, doubling"),
    Setting("PC_WEBHOOK_RETRY_MAX_SECONDS", "float", "21600", "longest delay between two outgoing webhook retries"),
    Setting("PC_WEBHOOK_DISABLE_AFTER_HOURS", "float", "72",
            "an endpoint whose every attempt failed this long is disabled (with the reason)"),
    Setting("PC_WEBHOOK_TICK_SECONDS", "float", "5",
            "how often the scheduler asks the worker to deliver due webhook messages"),
    Setting("PC_SENDGRID_SYNC", "bool", "0",
            "`1` pushes our opt-outs and suppressions into SendGrid's unsubscribe groups and global list"),
    Setting("PC_SENDGRID_SYNC_SECONDS", "float", "30", "how often the worker pushes what is queued for SendGrid"),
    Setting("PC_PORTABILITY_LINK_DAYS", "int", "7",
            "the one-time link that hands a person's access copy to another company lasts this long"),
    *(Setting(f"PC_RETENTION_{relationship.upper()}_DAYS", "int", None,
              f"retention of {relationship}s (days): prospects and candidates count from their last interaction; "
              "customers, partners and suppliers once they opted out of all marketing and got no service mail "
              "either; `0`: never", shown="`PC_RETENTION_DAYS`")
      for relationship in ("prospect", "candidate", "customer", "partner", "supplier")),
    Setting("PC_PRIVACY_CONTACT", "str", None,
            "who to write to about personal data (shown in the access copy's Art. 15(1) section)",
            "your privacy contact"),
    Setting("PC_SUPERVISORY_AUTHORITY", "str", None,
            "the supervisory authority people may complain to (access copy's Art. 15(1) section)",
            "your authority"),
)

BY_NAME = {setting.name: setting for setting in SETTINGS}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_warned: set[str] = set()


def _raw(setting: Setting, instance: Path | None = None) -> str | None:
    value = os.environ.get(setting.name)
    if value not in (None, ""):
        return value
    if setting.derive is not None and instance is not None:
        return setting.derive(instance)
    return setting.default


def parse(setting: Setting, raw: str | None):
    """The typed value of one setting's text (None stays None)."""
    if raw is None:
        return None
    try:
        if setting.kind == "int":
            return int(raw)
        if setting.kind == "float":
            return float(raw)
    except ValueError as exc:
        kind = "a whole number" if setting.kind == "int" else "a number"
        raise ConfigError(f"{setting.name} must be {kind}, got {raw!r}") from exc
    if setting.kind == "bool":
        if raw.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if raw.strip().lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{setting.name} must be 1 or 0, got {raw!r}")
    if setting.kind == "list":
        return [part.strip() for part in raw.split(",") if part.strip()]
    if setting.kind == "cidrs":
        if raw.strip().lower() == "none":
            return []
        try:
            return [str(ipaddress.ip_network(part.strip(), strict=False)) for part in raw.split(",") if part.strip()]
        except ValueError as exc:
            raise ConfigError(f"{setting.name} must be comma-separated networks such as 10.0.0.0/8: {exc}") from exc
    return raw


def instance_path() -> Path:
    """Where SQLite, the outbox and uploads live."""
    return Path(_raw(BY_NAME["PC_INSTANCE_PATH"], PROJECT_ROOT)).resolve()


def is_set(name: str) -> bool:
    """Whether the environment gives `name` a value (an empty one counts as unset)."""
    return os.environ.get(name) not in (None, "")


def environment(overrides: dict[str, str]) -> dict[str, str]:
    """The environment for a child process we start: ours, with `overrides` on top."""
    return {**os.environ, **overrides}


def prometheus_multiprocess_dir() -> str | None:
    """prometheus_client's own variable: set, every process writes its metrics there (gunicorn, workers)."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir") or None


def unknown_variables(environ=None) -> list[str]:
    """PC_* variables in the environment that no setting declares (usually a typo)."""
    environ = os.environ if environ is None else environ
    return sorted(name for name in environ
                  if name.startswith("PC_") and name not in BY_NAME and not name.startswith(NOT_OURS))


def warn_unknown_variables() -> None:
    """Log each unknown PC_* variable once per process."""
    for name in unknown_variables():
        if name not in _warned:
            _warned.add(name)
            close = [s.name for s in SETTINGS if _similar(s.name, name)]
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            log.warning("unknown setting %s is ignored%s", name, hint)


def _similar(known: str, name: str) -> bool:
    words = set(re.split(r"_+", name)) - {"PC", ""}
    return bool(words) and len(words & set(known.split("_"))) >= max(1, len(words) - 1)


def load(instance: Path) -> dict:
    """Build the Flask config mapping from the environment."""
    values = {s.name: parse(s, _raw(s, instance)) for s in SETTINGS}
    values["PC_INSTANCE_PATH"] = str(instance)
    env = values["PC_ENV"]
    if env not in ("development", "production", "testing"):
        raise ConfigError("PC_ENV must be development, production or testing")
    if values["PC_LOG_FORMAT"] is None:
        values["PC_LOG_FORMAT"] = "json" if env == "production" else "text"
    if values["PC_LOG_FORMAT"] not in ("json", "text"):
        raise ConfigError("PC_LOG_FORMAT must be json or text")
    values["PC_LOG_LEVEL"] = values["PC_LOG_LEVEL"].upper()
    if values["PC_LOG_LEVEL"] not in LOG_LEVELS:
        raise ConfigError(f"PC_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
    if not values["PC_SECRET_KEYS"]:
        values["PC_SECRET_KEYS"] = [DEFAULT_SECRET]
    values["PC_BASE_URL"] = values["PC_BASE_URL"].rstrip("/")
    values.update({
        # Flask's and its extensions' own names for some of ours.
        "SECRET_KEY": values["PC_SECRET_KEYS"][-1],
        "SQLALCHEMY_DATABASE_URI": values["PC_DATABASE_URL"],
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "MAX_CONTENT_LENGTH": values["PC_MAX_BODY_BYTES"],
        "PERMANENT_SESSION_LIFETIME": dt.timedelta(hours=values["PC_STAFF_SESSION_HOURS"]),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": env == "production",
        "WTF_CSRF_TIME_LIMIT": None,
        # Referrer-Policy is no-referrer everywhere (tokens live in paths), so
        # browsers send no Referer on our own HTTPS posts; the CSRF token and
        # the SameSite session cookie remain the protection.
        "WTF_CSRF_SSL_STRICT": False,
        "BABEL_DEFAULT_LOCALE": "en",
    })
    return values


def markdown_table() -> str:
    """The configuration table of README.md and docs/configuration.md, generated from SETTINGS."""
    lines = ["| variable | type | default | meaning | production |", "|---|---|---|---|---|"]
    for s in SETTINGS:
        lines.append(f"| `{s.name}` | {s.kind} | {s.shown_default()} | {s.meaning} | {s.production or '–'} |")
    return "\n".join(lines) + "\n"


TABLE_START = "<!-- settings table: generated by `preference-center settings --write`; edit preference_center/config.py -->"
TABLE_END = "<!-- end of settings table -->"
DOCUMENTS = ("README.md", "docs/configuration.md")


def with_table(text: str) -> str:
    """`text` with the part between the table markers replaced by the generated table."""
    start, end = text.index(TABLE_START) + len(TABLE_START), text.index(TABLE_END)
    return text[:start] + "\n" + markdown_table() + text[end:]


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
