"""What a recipient chooses through our links: preferences, unsubscribe, subscribe, confirm.

Plain domain functions (no request object): callers pass the source, IP and
user agent, and commit. Every change is a ledger event via contacts.record_consent.
"""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .. import contacts, ledger
from ..extensions import db
from ..links import LinkError
from ..models import ConsentEvent, ConsentText, Contact, Subscription, Topic

PREFERENCES_PAGE = "preferences-page"
UNSUBSCRIBE_PAGE = "unsubscribe-page"
ONE_CLICK = "one-click"
UNDO = "unsubscribe-undo"
SUBSCRIBE_FORM = "subscribe-form"
SUBSCRIBE_CONFIRM = "subscribe-confirm"

DEFAULT_CONSENT_TEXTS = {
    "en": ("Yes, please email me about the topics I ticked. I can unsubscribe at any time with the link "
           "in every email or on my preferences page. My consent is recorded with this wording, the time "
           "and my IP address, as our privacy policy explains."),
    "es": ("Sí, envíenme correos sobre los temas que he marcado. Puedo darme de baja en cualquier momento "
           "con el enlace de cada correo o en mi página de preferencias. Mi consentimiento se registra con "
           "este texto, la hora y mi dirección IP, como explica la política de privacidad."),
}


# -- topics -------------------------------------------------------------------

def live_topics() -> tuple[list[Topic], list[Topic]]:
    """Live (marketing, system) topics, each in a stable order, in one query."""
    topics = db.session.scalars(select(Topic).where(Topic.retired.is_(False)).order_by(Topic.name, Topic.key)).all()
    return [t for t in topics if t.kind == "marketing"], [t for t in topics if t.kind == "system"]


def marketing_topics() -> list[Topic]:
    """Live marketing topics, in a stable order."""
    return live_topics()[0]


def system_topics() -> list[Topic]:
    return live_topics()[1]


def consent_topics() -> list[Topic]:
    """Topics a public form may offer: live marketing topics that need consent."""
    return [t for t in marketing_topics() if t.legal_basis == "consent"]


def unsubscribe_target(argument) -> Topic | None:
    """The topic an unsubscribe link names (None = all marketing); LinkError if it names no marketing topic."""
    if argument == 0:
        return None
    topic = db.session.get(Topic, argument) if isinstance(argument, int) and not isinstance(argument, bool) else None
    if topic is None or topic.kind != "marketing":
        raise LinkError("invalid")
    return topic


# -- the preference page --------------------------------------------------------

def preferences(contact: Contact) -> dict:
    """What the preference page shows: marketing topics with their state, system topics, blocks."""
    marketing, system = live_topics()
    scopes = contacts.suppressions_of(contact)
    view = {v["topic"]: v for v in contacts.subscriptions_view(contact, marketing + system, scopes=scopes)}
    return {
        "topics": marketing,
        "marketing": [(t, view[t.key]) for t in marketing],
        "system": [(t, view[t.key]) for t in system],
        "subscribed": [t.key for t in marketing if view[t.key]["state"] == "subscribed"],
        "opted_out_all": contact.marketing_opt_out_event_id is not None,
        "restricted": contact.status == "restricted",
        "complained": "marketing" in scopes and contact.marketing_opt_out_event_id is None,
    }


def save_preferences(contact: Contact, wanted: set[str], *, ip: str | None, user_agent: str | None,
                     source: str = PREFERENCES_PAGE) -> list[ConsentEvent]:
    """Record a confirmed grant or a withdrawal for each topic whose state the person changed."""
    topics = marketing_topics()
    wanted = {key for key in wanted if key in {t.key for t in topics}}
    proof = {"source": source, "ip": ip, "user_agent": user_agent}
    events = []
    if wanted and contact.marketing_opt_out_event_id is not None:
        # Ticking a topic after "unsubscribe from all" means marketing is welcome again.
        events.append(contacts.record_consent(contact, action=ledger.GRANT, topic=None, legal_basis="consent",
                                              confirmed=True, **proof))
    sending = {v["topic"] for v in contacts.subscriptions_view(contact, topics) if v["state"] == "subscribed"}
    subs = _subscriptions(contact)
    for topic in topics:
        if topic.key in wanted and topic.key not in sending:
            sub = subs.get(topic.id)
            if sub is not None and sub.state == "subscribed":
                continue  # already chosen; held back by a restriction or complaint, not by this choice
            events.append(contacts.record_consent(contact, action=ledger.GRANT, topic=topic, confirmed=True, **proof))
        elif topic.key not in wanted and topic.key in sending:
            events.append(contacts.record_consent(contact, action=ledger.WITHDRAW, topic=topic, **proof))
    return events


def _subscriptions(contact: Contact) -> dict[int, Subscription]:
    return {s.topic_id: s for s in db.session.scalars(
        select(Subscription).where(Subscription.contact_id == contact.id))}


# -- unsubscribe and undo ---------------------------------------------------------

def unsubscribe(contact: Contact, topic: Topic | None, *, source: str, ip: str | None,
                user_agent: str | None) -> ConsentEvent | None:
    """Withdraw from one topic or all marketing; None when that was already the case (idempotent)."""
    if topic is None:
        if contact.marketing_opt_out_event_id is not None:
            return None
    else:
        sub = db.session.get(Subscription, (contact.id, topic.id))
        if sub is not None and sub.state == "unsubscribed":
            return None
    return contacts.record_consent(contact, action=ledger.WITHDRAW, topic=topic, source=source,
                                   ip=ip, user_agent=user_agent)


def undoable(contact: Contact, event: ConsentEvent | None) -> bool:
    """Whether `event` is this contact's withdrawal, still in effect, of something that was being sent."""
    if event is None or event.contact_id != contact.id or event.action != ledger.WITHDRAW:
        return False
    if event.scope == ledger.ALL_MARKETING:
        return contact.marketing_opt_out_event_id == event.id
    sub = db.session.get(Subscription, (contact.id, event.topic_id))
    topic = db.session.get(Topic, event.topic_id)
    if sub is None or sub.event_id != event.id or topic is None or topic.retired:
        return False
    before = _state_before(contact, event.id).topics.get(topic.id, (None, None))[0]
    covered = topic.legal_basis == "legitimate_interest" and contact.relationship in (topic.default_relationships or [])
    return before == "subscribed" or (before is None and covered)


def _state_before(contact: Contact, event_id: int) -> ledger.State:
    state = ledger.State()
    for event in db.session.scalars(select(ConsentEvent).where(
            ConsentEvent.contact_id == contact.id, ConsentEvent.id < event_id).order_by(ConsentEvent.id)):
        ledger.fold(state, event)
    return state


def undo_unsubscribe(contact: Contact, event_id: int, *, ip: str | None, user_agent: str | None) -> ConsentEvent | None:
    """Re-grant what an unsubscribe took away, if it is still in effect; None otherwise."""
    event = db.session.get(ConsentEvent, event_id)
    if not undoable(contact, event):
        return None
    topic = db.session.get(Topic, event.topic_id) if event.topic_id is not None else None
    return contacts.record_consent(contact, action=ledger.GRANT, topic=topic, confirmed=True, source=UNDO,
                                   legal_basis=None if topic else "consent", ip=ip, user_agent=user_agent,
                                   detail={"undoes": event.id})


# -- the public consent form (double opt-in) ------------------------------------

def consent_text(locale: str, version: str | None = None) -> ConsentText:
    """The consent wording for `locale`: the given version if it exists, else the latest (created on first use)."""
    if version:
        text = db.session.scalar(select(ConsentText).where(ConsentText.locale == locale, ConsentText.version == version))
        if text is not None:
            return text
    text = db.session.scalar(select(ConsentText).where(ConsentText.locale == locale)
                             .order_by(ConsentText.created_at.desc(), ConsentText.id.desc()).limit(1))
    if text is not None:
        return text
    text = ConsentText(version="1", locale=locale,
                       text=DEFAULT_CONSENT_TEXTS.get(locale, DEFAULT_CONSENT_TEXTS["en"]))
    try:
        with db.session.begin_nested():
            db.session.add(text)
    except IntegrityError:  # another request created it first
        return consent_text(locale)
    return text


def subscribe(email: str, name: str | None, topic_keys: list[str], text: ConsentText, *, locale: str | None,
              ip: str | None, user_agent: str | None) -> tuple[Contact, list[ConsentEvent]]:
    """Record an unconfirmed grant per ticked topic; a known address's profile is left untouched."""
    contact = contacts.find(email)
    if contact is None:
        contact, _ = contacts.upsert(email, {"name": name, "locale": locale}, source=SUBSCRIBE_FORM,
                                     ip=ip, user_agent=user_agent)
    wanted = set(topic_keys)
    events = [
        contacts.record_consent(contact, action=ledger.GRANT, topic=topic, source=SUBSCRIBE_FORM,
                                legal_basis="consent", consent_text_version=text.version, confirmed=False,
                                ip=ip, user_agent=user_agent, detail={"consent_text_locale": text.locale})
        for topic in consent_topics() if topic.key in wanted
    ]
    return contact, events


def _pending_events(contact: Contact, argument) -> list[ConsentEvent]:
    if not isinstance(argument, list) or not all(isinstance(i, int) for i in argument) or not argument:
        raise LinkError("invalid")
    return list(db.session.scalars(select(ConsentEvent).where(
        ConsentEvent.id.in_(argument), ConsentEvent.contact_id == contact.id,
        ConsentEvent.action == ledger.GRANT, ConsentEvent.confirmed.is_(False)).order_by(ConsentEvent.id)))


def topics_to_confirm(contact: Contact, argument) -> list[Topic]:
    """The topics a confirmation link is about."""
    ids = [e.topic_id for e in _pending_events(contact, argument)]
    return [t for t in marketing_topics() if t.id in ids]


def _still_wanted(sub: Subscription | None, pending: ConsentEvent) -> bool:
    """A pending grant is confirmable while nothing about its topic happened since (or only older grants)."""
    if sub is None:
        return False
    if sub.state == "pending":
        return sub.event_id == pending.id
    return sub.state == "subscribed" and sub.event_id < pending.id


def confirm(contact: Contact, argument, *, ip: str | None, user_agent: str | None) -> list[ConsentEvent]:
    """Turn the link's pending grants that are still pending into confirmed grants (idempotent)."""
    live = {t.id: t for t in marketing_topics()}
    subs = _subscriptions(contact)
    todo = [e for e in _pending_events(contact, argument) if e.topic_id in live and _still_wanted(subs.get(e.topic_id), e)]
    proof = {"source": SUBSCRIBE_CONFIRM, "ip": ip, "user_agent": user_agent}
    events = []
    if todo and contact.marketing_opt_out_event_id is not None:
        events.append(contacts.record_consent(contact, action=ledger.GRANT, topic=None, legal_basis="consent",
                                              confirmed=True, **proof))
    for pending in todo:
        events.append(contacts.record_consent(
            contact, action=ledger.GRANT, topic=live[pending.topic_id], legal_basis="consent",
            consent_text_version=pending.consent_text_version, confirmed=True,
            detail={"confirms": pending.id, **{k: v for k, v in (pending.detail or {}).items()
                                               if k == "consent_text_locale"}}, **proof))
    return events
