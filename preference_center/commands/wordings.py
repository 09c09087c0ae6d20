"""Consent wordings (SPEC section 7, invariant 4): immutable versions, published by staff.

A published wording never changes (the ORM refuses an update; a change made
behind its back in the database is reported by `ledger verify`, because each
event citing the wording carries its hash inside its own chain hash).
"""
from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .. import audit, ledger
from ..actors import Actor, system
from ..errors import N_, Code, DomainError
from ..extensions import db
from ..models import ConsentText

VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")
LOCALE = re.compile(r"^[a-z]{2,3}$")
TEXT_MAX = 5000

DEFAULT_TEXTS = {
    "en": ("Yes, please email me about the topics I ticked. I can unsubscribe at any time with the link "
           "in every email or on my preferences page. My consent is recorded with this wording, the time "
           "and my IP address, as our privacy policy explains."),
    "es": ("Sí, envíenme correos sobre los temas que he marcado. Puedo darme de baja en cualquier momento "
           "con el enlace de cada correo o en mi página de preferencias. Mi consentimiento se registra con "
           "este texto, la hora y mi dirección IP, como explica la política de privacidad."),
}


def publish(actor: Actor, locale: str, version: str, text: str) -> ConsentText:
    """Publish a new wording for `locale`; it is the one the public form shows from now on."""
    locale = (locale or "").strip().lower()
    version = (version or "").strip()
    text = (text or "").strip()
    if not LOCALE.match(locale):
        raise DomainError(N_("the language is a two- or three-letter code such as 'en'"), "locale")
    if not VERSION.match(version):
        raise DomainError(N_("a version is 1-32 letters, digits, '.', '_' or '-'"), "version")
    if not text or len(text) > TEXT_MAX:
        raise DomainError(N_("the wording is required and at most %(limit)s characters", limit=TEXT_MAX), "text")
    if db.session.scalar(select(ConsentText.id).where(ConsentText.locale == locale,
                                                      ConsentText.version == version)) is not None:
        raise DomainError(N_("version %(version)s in %(locale)s is published already; wordings never change, publish a "
                              "new version", version=version, locale=locale), "version", code=Code.CONFLICT)
    wording = ConsentText(locale=locale, version=version, text=text, text_hash=ledger.wording_hash(text),
                          published_by=actor.label[:200])
    db.session.add(wording)
    db.session.flush()
    audit.record(actor, "consent_text.publish", target_type="consent_text", target_id=wording.id,
                 detail={"locale": locale, "version": version, "hash": wording.text_hash})
    return wording


def latest(locale: str) -> ConsentText | None:
    return db.session.scalar(select(ConsentText).where(ConsentText.locale == locale)
                             .order_by(ConsentText.created_at.desc(), ConsentText.id.desc()).limit(1))


def current(locale: str, version: str | None = None) -> ConsentText:
    """The wording for `locale`: the given version if published, else the latest (the default is published on first use)."""
    if version:
        text = db.session.scalar(select(ConsentText).where(ConsentText.locale == locale,
                                                           ConsentText.version == version))
        if text is not None:
            return text
    text = latest(locale)
    if text is not None:
        return text
    try:
        with db.session.begin_nested():
            return publish(system("default-wording"), locale, "1",
                           DEFAULT_TEXTS.get(locale, DEFAULT_TEXTS["en"]))
    except (IntegrityError, DomainError):  # another request published it first
        return latest(locale)


def all_wordings() -> list[ConsentText]:
    return list(db.session.scalars(select(ConsentText).order_by(ConsentText.locale, ConsentText.created_at.desc(),
                                                                 ConsentText.id.desc())))
