"""Eligibility: "may I write to this person about this topic?", asked by other systems.

The answer is the send-time re-check itself: waiting one-click opt-outs are
settled into the ledger first (as the worker does before a batch), then
`rules.decide` applies `rules.may_send` to the stored state. An address we hold
no contact for is asked of `may_send` too, as a stranger with no history (its
suppressions still count: an erased or hard-bounced address stays blocked).

Settling commits (it stands on its own, like a door's load); nothing else is
written.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from . import optouts, rules
from .contacts import hash_of
from .emails import InvalidEmail, normalize
from .errors import Code, DomainError
from .extensions import db
from .models import Contact, Suppression, Topic
from .sqlutil import chunked, one_of

BULK_MAX = 1000


@dataclass(frozen=True)
class Stranger:
    """The facts `may_send` reads, for an address without a contact."""

    status: str = "active"
    relationship: str = "prospect"
    marketing_opt_out_event_id: int | None = None
    relationship_event_id: int | None = None


@dataclass(frozen=True)
class Answer:
    email: str
    topic: str
    send: bool
    reason: str
    event_id: int | None

    def as_dict(self) -> dict:
        return {"email": self.email, "topic": self.topic, "send": self.send, "reason": self.reason,
                "event_id": self.event_id}


def topic_by_key(key: str) -> Topic:
    """The topic asked about; DomainError (field "topic") if there is none."""
    topic = db.session.scalar(select(Topic).where(Topic.key == key))
    if topic is None:
        raise DomainError(f"unknown topic {key!r}", "topic", code=Code.UNKNOWN_TOPIC)
    return topic


def _normalized(emails: list[str], field: str) -> list[str]:
    found = []
    for index, email in enumerate(emails):
        try:
            found.append(normalize(email))
        except InvalidEmail as exc:
            where = field if len(emails) == 1 and field == "email" else f"{field}[{index}]"
            raise DomainError(f"{where}: invalid email address: {exc}", field, code=Code.INVALID_EMAIL) from None
    return found


def check(topic: Topic, emails: list[str], *, field: str = "emails") -> list[Answer]:
    """The sending rule for each address on `topic`, as of now, in the order asked."""
    if len(emails) > BULK_MAX:
        raise DomainError(f"at most {BULK_MAX} addresses per request", field)
    addresses = _normalized(emails, field)
    people: dict[str, int] = {}
    for part in chunked(addresses):
        people.update(db.session.execute(
            select(Contact.email, Contact.id).where(one_of(Contact.__table__.c.email, part))).all())
    if optouts.settle(list(people.values())):
        db.session.commit()  # the opt-outs taken so far count, as at send time
    decisions = rules.decide(topic, list(dict.fromkeys(people.values())))
    strangers = [a for a in addresses if a not in people]
    scopes: dict[str, set[str]] = {}
    hashes = {a: hash_of(a) for a in strangers}
    for part in chunked(hashes.values()):
        for email_hash, scope in db.session.execute(
                select(Suppression.email_hash, Suppression.scope)
                .where(one_of(Suppression.__table__.c.email_hash, part))):
            scopes.setdefault(email_hash, set()).add(scope)
    answers = []
    for given, address in zip(emails, addresses, strict=True):
        if address in people:
            _, decision = decisions[people[address]]
        else:
            decision = rules.may_send(topic, Stranger(), None, scopes.get(hashes[address], ()))
        answers.append(Answer(given, topic.key, decision.send, decision.reason, decision.event_id))
    return answers
