"""The organisation as recipients see it, and topics in the recipient's language.

Branding (name, logo, accent colour, privacy-policy link, postal address, sender) is one row staff edit; a
field left empty falls back to its PC_* setting (PC_POSTAL_ADDRESS, PC_FROM_EMAIL), so a fresh install
works unbranded. Every recipient page and every mail reads it through `current()`, cached for the app
context (one request, one worker task). The logo is served from the database (`/brand/logo`) and the accent
colour as a stylesheet (`/brand/theme.css`): the site's policy allows no inline style. Logos are raster
images only (SVG can carry script).

Topic names and descriptions are the default language's; `TopicTranslation` rows give them per locale,
and `topic_name`/`topic_description` pick the one for a language, falling back to the default.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from email.headerregistry import Address
from email.utils import parseaddr

from flask import current_app, g
from sqlalchemy import select

from . import characters
from .emails import InvalidEmail, normalize
from .errors import N_, DomainError
from .extensions import db
from .models import Branding, Topic, TopicTranslation

ACCENT = re.compile(r"^#[0-9a-fA-F]{6}$")
LOGO_TYPES = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff", "image/gif": b"GIF8",
              "image/webp": b"RIFF"}
LOGO_MAX_BYTES = 200_000
FIELDS = ("org_name", "accent", "privacy_url", "postal_address", "sender_name", "sender_email")
LIMITS = {"org_name": 200, "accent": 7, "privacy_url": 500, "postal_address": 500, "sender_name": 200,
          "sender_email": 320}
DEFAULT_ACCENT = "#0b5cad"  # site.css's own


@dataclass(frozen=True)
class Brand:
    org_name: str
    accent: str
    privacy_url: str | None
    postal_address: str
    from_email: str
    has_logo: bool
    version: str  # changes whenever the branding does (cache-busting for the logo and the theme)


def _row() -> Branding | None:
    return db.session.get(Branding, 1)


def current() -> Brand:
    """The branding in force, with the settings' fallbacks (cached for this app context)."""
    cached = g.get("_brand")
    if cached is not None:
        return cached
    config = current_app.config
    row = _row()
    sender = config["PC_FROM_EMAIL"]
    if row is not None and row.sender_email:
        # Unencoded (quoted when needed): the transports encode headers themselves.
        sender = str(Address(display_name=row.sender_name or row.org_name or "", addr_spec=row.sender_email))
    brand = Brand(
        org_name=(row.org_name if row is not None and row.org_name else None)
        or parseaddr(config["PC_FROM_EMAIL"])[0] or "Preference Center",
        accent=(row.accent if row is not None and row.accent else DEFAULT_ACCENT),
        privacy_url=row.privacy_url if row is not None and row.privacy_url else None,
        postal_address=(row.postal_address if row is not None and row.postal_address else None)
        or config["PC_POSTAL_ADDRESS"],
        from_email=sender,
        has_logo=row is not None and row.logo is not None,
        version=hashlib.sha256(str(row.updated_at if row is not None else "").encode()).hexdigest()[:12],
    )
    g._brand = brand
    return brand


def logo() -> tuple[bytes, str] | None:
    row = _row()
    return (row.logo, row.logo_type) if row is not None and row.logo is not None else None


def _clean(fields: dict) -> dict:
    cleaned = {}
    for name in FIELDS:
        value = (fields.get(name) or "").strip()
        if len(value) > LIMITS[name]:
            raise DomainError(N_("%(field)s is longer than %(limit)s characters", field=name.replace('_', ' '),
                                  limit=LIMITS[name]), name)
        problem = value and characters.refused(value)
        if problem:
            raise DomainError(N_("%(field)s must be one line of text; it holds %(problem)s", field=name.replace('_', ' '),
                                  problem=problem), name)
        cleaned[name] = value or None
    if cleaned["accent"] and not ACCENT.match(cleaned["accent"]):
        raise DomainError(N_("the accent colour is a hex colour such as #1d4ed8"), "accent")
    if cleaned["privacy_url"] and not re.match(r"^https?://[^\s/]+\.[^\s]+$", cleaned["privacy_url"]):
        raise DomainError(N_("the privacy-policy link is a web address starting with https://"), "privacy_url")
    if cleaned["sender_email"]:
        try:
            cleaned["sender_email"] = normalize(cleaned["sender_email"])
        except InvalidEmail as exc:
            raise DomainError(N_("sender address: %(reason)s", reason=exc.args[0]), "sender_email") from exc
    return cleaned


def check_logo(data: bytes, content_type: str) -> str:
    """The logo's media type, if it is a PNG, JPEG, GIF or WebP of at most 200 kB (by its bytes, not its name)."""
    if len(data) > LOGO_MAX_BYTES:
        raise DomainError(N_("the logo is larger than %(limit)s kB", limit=LOGO_MAX_BYTES // 1000), "logo")
    for kind, magic in LOGO_TYPES.items():
        if data.startswith(magic) and (kind != "image/webp" or data[8:12] == b"WEBP"):
            return kind
    raise DomainError(N_("the logo must be a PNG, JPEG, GIF or WebP image"), "logo")


def save(fields: dict, *, logo_data: bytes | None, logo_content_type: str | None, remove_logo: bool,
         by: str) -> list[str]:
    """Store the branding; the names of what changed (DomainError naming the field if something is wrong)."""
    cleaned = _clean(fields)
    row = _row()
    if row is None:
        row = Branding(id=1)
        db.session.add(row)
    changed = [name for name, value in cleaned.items() if getattr(row, name) != value]
    for name in changed:
        setattr(row, name, cleaned[name])
    if logo_data:
        row.logo_type = check_logo(logo_data, logo_content_type or "")
        row.logo = logo_data
        changed.append("logo")
    elif remove_logo and row.logo is not None:
        row.logo = row.logo_type = None
        changed.append("logo")
    if changed:
        row.updated_by = by
    db.session.flush()
    g.pop("_brand", None)
    return changed


def mask(email: str | None) -> str:
    """An address shown without giving it away: a•••@example.com."""
    if not email or "@" not in email:
        return ""
    local, _, domain = email.rpartition("@")
    return f"{local[:1]}•••@{domain}"


# -- topics per language ------------------------------------------------------------------

def _translations(locale: str) -> dict[int, TopicTranslation]:
    language = (locale or "").replace("_", "-").split("-")[0].lower()
    if language == current_app.config.get("BABEL_DEFAULT_LOCALE", "en"):
        return {}  # the topic's own name is the default language's (no query on the send path)
    cache = g.setdefault("_topic_translations", {})
    if language not in cache:
        cache[language] = {t.topic_id: t for t in db.session.scalars(
            select(TopicTranslation).where(TopicTranslation.locale == language))}
    return cache[language]


def topic_name(topic: Topic, locale: str | None) -> str:
    found = _translations(locale or "").get(topic.id) if locale else None
    return found.name if found is not None and found.name else topic.name


def topic_description(topic: Topic, locale: str | None) -> str:
    found = _translations(locale or "").get(topic.id) if locale else None
    return found.description if found is not None and found.description else (topic.description or "")


def page_topic_name(topic: Topic) -> str:
    """A topic's name in the language of the page being rendered (a template filter)."""
    from flask_babel import get_locale

    return topic_name(topic, str(get_locale() or ""))


def page_topic_description(topic: Topic) -> str:
    from flask_babel import get_locale

    return topic_description(topic, str(get_locale() or ""))


def translations_of(topic: Topic) -> dict[str, TopicTranslation]:
    return {t.locale: t for t in db.session.scalars(select(TopicTranslation).where(TopicTranslation.topic_id == topic.id))}


def translate(topic: Topic, locale: str, name: str, description: str) -> bool:
    """Set (or, with an empty name, remove) a topic's name and description in a language; True if it changed."""
    supported = current_app.config.get("PC_LOCALES") or ["en"]
    default = current_app.config.get("BABEL_DEFAULT_LOCALE", "en")
    if locale not in supported or locale == default:
        raise DomainError(N_("translations are for %(languages)s",
                              languages=', '.join(x for x in supported if x != default) or 'no language'),
                          "locale")
    name, description = (name or "").strip(), (description or "").strip()
    if len(name) > 200 or len(description) > 2000:
        raise DomainError(N_("the name is at most 200 characters and the description 2,000"), "name")
    problem = (name and characters.refused(name)) or (description and characters.refused(description, multiline=True))
    if problem:
        raise DomainError(N_("the translation holds %(problem)s", problem=problem), "name")
    row = translations_of(topic).get(locale)
    g.pop("_topic_translations", None)
    if not name:
        if row is None:
            return False
        db.session.delete(row)
        return True
    if row is None:
        db.session.add(TopicTranslation(topic_id=topic.id, locale=locale, name=name, description=description))
        return True
    if (row.name, row.description) == (name, description):
        return False
    row.name, row.description = name, description
    return True
