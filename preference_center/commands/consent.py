"""Consent commands: grant, withdraw, object, the preference page, unsubscribe and undo, double opt-in.

Guarantees (SPEC section 7, invariant 1): nobody returns to marketing after an
erasure, an objection or opt-out from all marketing, a spam complaint or a
withdrawal, except through their own fresh confirmation (an Actor that
`is_the_person`: the confirmation link or their own preference page). Anyone
else may *ask* (an unconfirmed grant; the confirmation mail goes out after
the commit) but an asserted confirmation is refused with `needs_confirmation`.
A confirmed grant asserted by an API client for an address with no such
history is accepted and recorded as asserted by that client.
"""
from __future__ import annotations

from sqlalchemy import func, select

from .. import audit, contacts, engagement, ledger, notify, optouts
from ..actors import Actor
from ..errors import N_, Code, DomainError
from ..extensions import db
from ..links import LinkError
from ..models import ConsentEvent, ConsentText, Contact, Subscription, Suppression, Topic
from ..states import MARKETING_BASES, LegalBasis, LinkSource, SubscriptionState, TopicKind
from . import people

# The person's own acts: the only grants that lift a barrier.
OWN_GRANT_SOURCES = tuple(str(s) for s in (LinkSource.PREFERENCES_PAGE, LinkSource.UNDO,
                                           LinkSource.SUBSCRIBE_CONFIRM, LinkSource.UNSUBSCRIBE_PAGE))
_STOPS = (ledger.WITHDRAW, ledger.OBJECT)
# Suppression reasons that only the person's own confirmation overcomes.
BARRIER_REASONS = {"erased": "the address was erased at the person's request",
                   "spam_complaint": "the person reported our mail as spam",
                   "opt_out": "the person opted out of all marketing"}


# -- the barrier ------------------------------------------------------------------

def barrier(contact: Contact, topic: Topic | None) -> str | None:
    """Why only the person's own confirmation may (re)start marketing to them on `topic`; None if nothing stops it.

    `topic` None asks about marketing as a whole (an all-marketing grant).
    """
    reasons = set(db.session.scalars(select(Suppression.reason).where(Suppression.email_hash == contact.email_hash)))
    for reason, why in BARRIER_REASONS.items():
        if reason in reasons:
            return why
    # The whole history of the address: an erased row keeps its hash and its events.
    rows = select(Contact.id).where(Contact.email_hash == contact.email_hash).scalar_subquery()
    events = ConsentEvent.__table__.c
    own = (events.action == ledger.GRANT) & events.confirmed.is_(True) & events.source.in_(OWN_GRANT_SOURCES)
    all_marketing = events.scope == ledger.ALL_MARKETING

    def last(condition) -> int:
        return db.session.scalar(select(func.max(events.id)).where(events.contact_id.in_(rows), condition)) or 0

    on_topic = (events.scope == ledger.TOPIC) & (events.topic_id == (topic.id if topic is not None else -1))
    stopped_all = last((events.action.in_(_STOPS) & all_marketing) | (events.action == ledger.ERASE))
    if stopped_all and stopped_all > last(own & (all_marketing | on_topic)):
        kind = db.session.get(ConsentEvent, stopped_all).action
        return {ledger.OBJECT: "the person objected to direct marketing",
                ledger.ERASE: "the address was erased at the person's request"}.get(
                    kind, "the person opted out of all marketing")
    if topic is not None:
        withdrawn = last(events.action.in_(_STOPS) & on_topic)
        if withdrawn and withdrawn > last(own & on_topic):
            return f"the person withdrew from {topic.name}"
    return None


def _marketing_topic(topic: Topic | None) -> None:
    if topic is not None and topic.kind != TopicKind.MARKETING:
        raise DomainError(N_("system topics need no consent and cannot be unsubscribed from; they are part of the "
                          "service"), "topic", code=Code.SYSTEM_TOPIC)


def _basis(topic: Topic | None, legal_basis: str | None) -> str:
    basis = legal_basis or (topic.legal_basis if topic is not None else LegalBasis.CONSENT)
    if basis not in MARKETING_BASES:
        raise DomainError(N_("marketing grants carry the legal basis 'consent' or 'legitimate_interest'"), "legal_basis")
    if basis == LegalBasis.LEGITIMATE_INTEREST and (topic is None or topic.legal_basis == LegalBasis.CONSENT):
        # Legitimate interest is the topic's own basis, never a grant's way around consent.
        where = f"the topic {topic.name} is sent on consent" if topic is not None else "all marketing needs consent"
        raise DomainError(f"{where}: a grant cannot carry the legal basis 'legitimate_interest'", "legal_basis")
    return str(basis)


# -- grant, withdraw, object ------------------------------------------------------

def grant(actor: Actor, contact: Contact, topic: Topic | None, *, confirmed: bool,
          legal_basis: str | None = None, consent_text_version: str | None = None,
          consent_text: ConsentText | None = None, ip: str | None = None, user_agent: str | None = None,
          detail: dict | None = None, source: str | None = None, audited: bool = True) -> ConsentEvent:
    """Record a grant for one marketing topic (or all marketing when `topic` is None).

    An unconfirmed grant from anyone but the person asks for confirmation: the
    double opt-in mail goes out after the commit.
    """
    _marketing_topic(topic)
    basis = _basis(topic, legal_basis)
    if topic is not None and topic.retired:
        raise DomainError(N_("the topic %(name)s is retired", name=topic.name), "topic")
    if contact.status == "erased":
        raise DomainError(N_("this contact has been erased"), code=Code.ERASED)
    if confirmed and not actor.is_the_person:
        why = barrier(contact, topic)
        if why is not None:
            raise DomainError(N_("only the person can confirm this (%(why)s): send the grant unconfirmed and a "
                                  "confirmation mail goes to the address", why=why), "confirmed",
                              code=Code.NEEDS_CONFIRMATION)
    wording = consent_text or _published(consent_text_version, contact.locale)
    event = contacts.record_consent(
        contact, action=ledger.GRANT, topic=topic, source=source or actor.source, legal_basis=basis,
        consent_text_version=consent_text_version, consent_text=wording, confirmed=confirmed,
        **_proof(actor, ip, user_agent), detail=detail, lift=actor.is_the_person)
    if not confirmed and not actor.is_the_person:
        notify.later(notify.confirmation(contact, [event]))
    if audited:
        _audit(actor, "consent.grant" if confirmed else "consent.ask", contact, topic, event)
    return event


def withdraw(actor: Actor, contact: Contact, topic: Topic | None, *, ip: str | None = None,
             user_agent: str | None = None, detail: dict | None = None, source: str | None = None,
             audited: bool = True, delivery_id: int | None = None) -> ConsentEvent | None:
    """Withdraw from one marketing topic or all marketing; None when that already holds (idempotent).
    `delivery_id`: the campaign delivery whose unsubscribe link was used (counted on that campaign's report)."""
    _marketing_topic(topic)
    if contact.status == "erased":
        raise DomainError(N_("this contact has been erased"), code=Code.ERASED)
    if topic is None:
        if contact.marketing_opt_out_event_id is not None:
            return None
    else:
        sub = db.session.get(Subscription, (contact.id, topic.id))
        if sub is not None and sub.state == SubscriptionState.UNSUBSCRIBED:
            return None
    event = contacts.record_consent(contact, action=ledger.WITHDRAW, topic=topic, source=source or actor.source,
                                    **_proof(actor, ip, user_agent), detail=detail)
    engagement.note_own_unsubscribe(contact.id, delivery_id)
    if audited:
        _audit(actor, "consent.withdraw", contact, topic, event)
    return event


def _proof(actor: Actor, ip: str | None, user_agent: str | None) -> dict:
    """The IP and user agent that go into the event: given ones, else the person's own request's."""
    if actor.is_the_person or actor.kind == "staff":
        return {"ip": ip if ip is not None else actor.ip,
                "user_agent": user_agent if user_agent is not None else actor.user_agent}
    return {"ip": ip, "user_agent": user_agent}


def _audit(actor: Actor, action: str, contact: Contact, topic: Topic | None, event: ConsentEvent | None,
           **detail) -> None:
    audit.record(actor, action, target_type="contact", target_id=contact.id,
                 detail={"topic": topic.key if topic is not None else None,
                         "event_id": event.id if event is not None else None, **detail})


def _published(version: str | None, locale: str | None) -> ConsentText | None:
    """The published wording a grant cites by version, in the contact's language if there is one."""
    if not version:
        return None
    rows = list(db.session.scalars(select(ConsentText).where(ConsentText.version == version)))
    wanted = (locale or "en").split("-")[0]
    return next((t for t in rows if t.locale == wanted), next((t for t in rows if t.locale == "en"), None)) \
        or (rows[0] if rows else None)


def take_one_click(actor: Actor, contact_id: int, version: int, topic_id: object,
                   delivery_id: int | None = None) -> bool:
    """RFC 8058: take the opt-out of a verified link in one committed INSERT; it is chained (and audited)
    by `optouts.settle` before anything reads the contact. False if the link no longer holds."""
    return optouts.take(contact_id, version, topic_id, source=actor.source, ip=actor.ip,
                        user_agent=actor.user_agent, delivery_id=delivery_id)


# -- the preference page ------------------------------------------------------------

def save_preferences(actor: Actor, contact: Contact, wanted: set[str], topics: list[Topic]) -> list[ConsentEvent]:
    """The person's own choices on their preference page: a grant or withdrawal per changed topic, one audit entry."""
    wanted = {key for key in wanted if key in {t.key for t in topics}}
    events = []
    if wanted and contact.marketing_opt_out_event_id is not None:
        # Ticking a topic after "unsubscribe from all" means marketing is welcome again.
        events.append(grant(actor, contact, None, confirmed=True, audited=False))
    sending = {v["topic"] for v in contacts.subscriptions_view(contact, topics) if v["state"] == "subscribed"}
    subs = _subscriptions(contact)
    for topic in topics:
        if topic.key in wanted and topic.key not in sending:
            sub = subs.get(topic.id)
            if sub is not None and sub.state == SubscriptionState.SUBSCRIBED:
                continue  # already chosen; held back by a restriction or complaint, not by this choice
            events.append(grant(actor, contact, topic, confirmed=True, audited=False))
        elif topic.key not in wanted and topic.key in sending:
            events.append(withdraw(actor, contact, topic, audited=False))
    events = [e for e in events if e is not None]
    if events:
        audit.record(actor, "preferences.save", target_type="contact", target_id=contact.id,
                     detail={"event_ids": [e.id for e in events]})
    return events


def _subscriptions(contact: Contact) -> dict[int, Subscription]:
    return {s.topic_id: s for s in db.session.scalars(
        select(Subscription).where(Subscription.contact_id == contact.id))}


# -- unsubscribe and undo -------------------------------------------------------------

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
    covered = topic.legal_basis == LegalBasis.LEGITIMATE_INTEREST and \
        contact.relationship in (topic.default_relationships or [])
    return before == SubscriptionState.SUBSCRIBED or (before is None and covered)


def _state_before(contact: Contact, event_id: int) -> ledger.State:
    state = ledger.State()
    for event in db.session.scalars(select(ConsentEvent).where(
            ConsentEvent.contact_id == contact.id, ConsentEvent.id < event_id).order_by(ConsentEvent.id)):
        ledger.fold(state, event)
    return state


def undo_unsubscribe(actor: Actor, contact: Contact, event_id: int) -> ConsentEvent | None:
    """The person re-grants what their unsubscribe took away, if it is still in effect; None otherwise."""
    event = db.session.get(ConsentEvent, event_id) if isinstance(event_id, int) else None
    if not undoable(contact, event):
        return None
    topic = db.session.get(Topic, event.topic_id) if event.topic_id is not None else None
    return grant(actor.via(LinkSource.UNDO), contact, topic, confirmed=True, detail={"undoes": event.id})


# -- the public form and its confirmation (double opt-in) ----------------------------

def subscribe(actor: Actor, email: str, name: str | None, topics: list[Topic], text: ConsentText, *,
              locale: str | None) -> tuple[Contact, list[ConsentEvent]]:
    """Record an unconfirmed grant per ticked topic; a known address's profile is left untouched."""
    contact = people.find(email)
    if contact is None:
        contact, _ = people.upsert(actor, email, {"name": name, "locale": locale}, audited=False)
    events = [contacts.record_consent(contact, action=ledger.GRANT, topic=topic, source=actor.source,
                                      legal_basis=LegalBasis.CONSENT, consent_text=text, confirmed=False,
                                      ip=actor.ip, user_agent=actor.user_agent,
                                      detail={"consent_text_locale": text.locale})
              for topic in topics]
    if events:
        audit.record(actor, "consent.ask", target_type="contact", target_id=contact.id,
                     detail={"topics": [t.key for t in topics], "event_ids": [e.id for e in events]})
    return contact, events


def pending_events(contact: Contact, argument) -> list[ConsentEvent]:
    """The unconfirmed grants a confirmation link names (LinkError if it names nothing sensible)."""
    if not isinstance(argument, list) or not argument or \
            not all(isinstance(i, int) and not isinstance(i, bool) and 0 < i < 2**63 for i in argument):
        raise LinkError("invalid")
    return list(db.session.scalars(select(ConsentEvent).where(
        ConsentEvent.id.in_(argument), ConsentEvent.contact_id == contact.id,
        ConsentEvent.action == ledger.GRANT, ConsentEvent.confirmed.is_(False)).order_by(ConsentEvent.id)))


def _still_wanted(sub: Subscription | None, pending: ConsentEvent) -> bool:
    """A pending grant is confirmable while nothing about its topic happened since (or only older grants)."""
    if sub is None:
        return False
    if sub.state == SubscriptionState.PENDING:
        return sub.event_id == pending.id
    return sub.state == SubscriptionState.SUBSCRIBED and sub.event_id < pending.id


def confirm(actor: Actor, contact: Contact, argument, live: list[Topic]) -> list[ConsentEvent]:
    """The person confirms the link's grants that still wait (idempotent): their own fresh confirmation."""
    live_by_id = {t.id: t for t in live}
    subs = _subscriptions(contact)
    waiting = pending_events(contact, argument)
    todo = [e for e in waiting if e.topic_id in live_by_id and _still_wanted(subs.get(e.topic_id), e)]
    asked_all = [e for e in waiting if e.scope == ledger.ALL_MARKETING]
    events = []
    if (todo or asked_all) and contact.marketing_opt_out_event_id is not None:
        events.append(grant(actor, contact, None, confirmed=True, audited=False,
                            detail={"confirms": asked_all[-1].id} if asked_all else None))
    for pending in todo:
        wording = db.session.get(ConsentText, pending.consent_text_id) if pending.consent_text_id else None
        events.append(grant(
            actor, contact, live_by_id[pending.topic_id], confirmed=True, legal_basis=pending.legal_basis,
            consent_text_version=pending.consent_text_version, consent_text=wording, audited=False,
            detail={"confirms": pending.id, **{k: v for k, v in (pending.detail or {}).items()
                                               if k == "consent_text_locale"}}))
    if events:
        audit.record(actor, "consent.confirm", target_type="contact", target_id=contact.id,
                     detail={"event_ids": [e.id for e in events]})
    return events
