"""The sending rule (SPEC section 3): one pure function and the query built from it.

`may_send` decides for one recipient from plain facts. `audience` is the same
rule as one set-based query for a whole marketing topic; tests hold the two
against each other on random populations. The worker re-checks every
recipient with `decide` (which calls `may_send`) right before sending.
"""
from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from sqlalchemy import and_, case, exists, false, func, literal, or_, select

from . import attributes
from .errors import DomainError
from .extensions import db
from .models import ConsentEvent, Contact, Subscription, Suppression, Topic
from .sqlutil import one_of, parts_for_one_of
from .states import DEFAULT_RELATIONSHIPS_ALLOWED, Relationship

# Reasons: a send says which basis authorised it, a skip says why not.
SEND_CONSENT = "consent"
SEND_LEGITIMATE_INTEREST = "legitimate_interest"
SEND_CONTRACT = "contract"
SKIP_SUPPRESSED_ALL = "suppressed_all"
SKIP_ERASED = "erased"
SKIP_SUPPRESSED_MARKETING = "suppressed_marketing"
SKIP_RESTRICTED = "restricted"
SKIP_OPTED_OUT_ALL = "opted_out_all"
SKIP_UNSUBSCRIBED = "unsubscribed"
SKIP_NO_CONSENT = "no_consent"
SKIP_UNCONFIRMED = "unconfirmed"
SKIP_NOT_COVERED = "relationship_not_covered"
SKIP_NO_BASIS = "no_basis"
SKIP_TOPIC_RETIRED = "topic_retired"
SKIP_REASONS = (
    SKIP_SUPPRESSED_ALL, SKIP_ERASED, SKIP_SUPPRESSED_MARKETING, SKIP_RESTRICTED,
    SKIP_OPTED_OUT_ALL, SKIP_UNSUBSCRIBED, SKIP_NO_CONSENT, SKIP_UNCONFIRMED,
    SKIP_NOT_COVERED, SKIP_NO_BASIS, SKIP_TOPIC_RETIRED,
)


class TopicFacts(Protocol):
    kind: str
    legal_basis: str
    default_relationships: list
    retired: bool


class ContactFacts(Protocol):
    status: str
    relationship: str
    marketing_opt_out_event_id: int | None
    relationship_event_id: int | None


class SubscriptionFacts(Protocol):
    state: str
    event_id: int


class Decision(NamedTuple):
    """Whether a message may go, why (or why not), and the ledger event that allows it; immutable (a
    tuple: a batch's re-check makes one per recipient, at half a frozen dataclass's cost)."""

    send: bool
    reason: str
    event_id: int | None  # the ledger event that authorises a send


def _skip(reason: str) -> Decision:
    return Decision(False, reason, None)


def may_send(
    topic: TopicFacts,
    contact: ContactFacts,
    subscription: SubscriptionFacts | None,
    suppressed: Iterable[str] = (),
) -> Decision:
    """Decide whether `contact` may be sent a message on `topic` right now."""
    scopes = set(suppressed)
    if "all" in scopes:
        return _skip(SKIP_SUPPRESSED_ALL)
    if contact.status == "erased":
        return _skip(SKIP_ERASED)
    if topic.kind == "system":
        return Decision(True, SEND_CONTRACT, contact.relationship_event_id)
    if topic.retired:
        return _skip(SKIP_TOPIC_RETIRED)
    if "marketing" in scopes:
        return _skip(SKIP_SUPPRESSED_MARKETING)
    if contact.status == "restricted":
        return _skip(SKIP_RESTRICTED)
    if contact.marketing_opt_out_event_id is not None:
        return _skip(SKIP_OPTED_OUT_ALL)
    state = subscription.state if subscription is not None else None
    if state == "unsubscribed":
        return _skip(SKIP_UNSUBSCRIBED)
    if state == "subscribed" and topic.legal_basis in ("consent", "legitimate_interest"):
        # An explicit confirmed grant authorises either basis.
        return Decision(True, SEND_CONSENT, subscription.event_id)
    if topic.legal_basis == "consent":
        return _skip(SKIP_UNCONFIRMED if state == "pending" else SKIP_NO_CONSENT)
    if topic.legal_basis == "legitimate_interest":
        # Only where nothing was ever recorded for the topic: a withdrawal, or a request for
        # confirmation that may follow one (pending), is not covered by the default.
        if state is None and contact.relationship in _covered(topic):
            return Decision(True, SEND_LEGITIMATE_INTEREST, contact.relationship_event_id)
        return _skip(SKIP_NOT_COVERED)
    return _skip(SKIP_NO_BASIS)


def _covered(topic: TopicFacts) -> list[str]:
    """The relationships legitimate interest reaches by default: the topic's, and never beyond customers."""
    return [r for r in (topic.default_relationships or []) if r in DEFAULT_RELATIONSHIPS_ALLOWED]


# -- the rule as one query ---------------------------------------------------

@dataclass(frozen=True)
class Recipient:
    contact_id: int
    email: str
    event_id: int | None
    reason: str


def _suppressed(scopes: tuple[str, ...]):
    return exists().where(Suppression.email_hash == Contact.email_hash, Suppression.scope.in_(scopes))


def audience_query(topic: Topic, *, after_id: int = 0, limit: int | None = None, filters: dict | None = None):
    """SELECT of (contact id, email, authorising event, reason) for every eligible contact."""
    if topic.kind != "marketing":
        raise ValueError("audience() is for marketing topics; system messages go one by one")
    sub = Subscription.__table__.alias("s")
    # Repeating the keyset bound on the joined side lets PostgreSQL start the
    # subscription index scan at the cursor instead of at its beginning.
    join = and_(sub.c.contact_id == Contact.id, sub.c.topic_id == topic.id, sub.c.contact_id > after_id)
    confirmed = sub.c.state == "subscribed"
    if topic.retired or topic.legal_basis not in ("consent", "legitimate_interest"):
        basis = false()
        event = sub.c.event_id
        reason = literal(SKIP_NO_BASIS)
    elif topic.legal_basis == "consent":
        basis = confirmed
        event = sub.c.event_id
        reason = literal(SEND_CONSENT)
    else:
        relationships = _covered(topic)
        covered = and_(
            sub.c.state.is_(None),
            Contact.relationship.in_(relationships) if relationships else false(),
        )
        basis = or_(confirmed, covered)
        event = case((confirmed, sub.c.event_id), else_=Contact.relationship_event_id)
        reason = case((confirmed, SEND_CONSENT), else_=SEND_LEGITIMATE_INTEREST)
    query = (
        select(Contact.id, Contact.email, event.label("event_id"), reason.label("reason"))
        .select_from(Contact)
        .outerjoin(sub, join)
        .where(
            Contact.status == "active",
            Contact.marketing_opt_out_event_id.is_(None),
            Contact.id > after_id,
            basis,
            ~_suppressed(("all", "marketing")),
        )
        .order_by(Contact.id)
    )
    for clause in _filter_clauses(filters or {}):
        query = query.where(clause)
    if limit is not None:
        query = query.limit(limit)
    return query


def _filter_clauses(filters: dict) -> list:
    """Optional campaign audience narrowing; it can only remove people, never add."""
    clauses = []
    if filters.get("relationships"):
        clauses.append(Contact.relationship.in_(list(filters["relationships"])))
    if filters.get("locales"):
        clauses.append(Contact.locale.in_(list(filters["locales"])))
    if filters.get("contact_ids"):
        clauses.append(Contact.id.in_([int(i) for i in filters["contact_ids"]]))
    if filters.get("companies"):
        clauses.append(func.lower(Contact.company).in_([c.lower() for c in filters["companies"]]))
    if filters.get("sources"):
        clauses.append(exists().where(ConsentEvent.contact_id == Contact.id,
                                      ConsentEvent.source.in_(list(filters["sources"]))))
    for condition in filters.get("attributes") or []:
        clauses.append(attributes.matches(Contact.attributes, condition))
    for key, column in (("created", Contact.created_at), ("interacted", Contact.last_interaction_at)):
        if filters.get(f"{key}_after"):
            clauses.append(column >= _day(filters[f"{key}_after"]))
        if filters.get(f"{key}_before"):
            clauses.append(column < _day(filters[f"{key}_before"]))
    return clauses


def _day(value: str) -> dt.datetime:
    """The start (UTC) of a day given as YYYY-MM-DD (checked by check_audience)."""
    return dt.datetime.combine(dt.date.fromisoformat(value), dt.time(), dt.UTC)


AUDIENCE_FILTER_KEYS = ("relationships", "locales", "contact_ids", "companies", "sources", "created_after",
                        "created_before", "interacted_after", "interacted_before", "attributes")
# Keys holding one day (YYYY-MM-DD) rather than a list: "after" includes the day, "before" excludes it.
AUDIENCE_DAY_KEYS = ("created_after", "created_before", "interacted_after", "interacted_before")
AUDIENCE_TEXTS_MAX = 50
AUDIENCE_CONTACT_IDS_MAX = 1000
AUDIENCE_LOCALES_MAX = 50
CONTACT_ID_MAX = 2**63 - 1  # the database's 64-bit ids


def check_audience(audience: object) -> dict:
    """A campaign's audience filter, checked value by value; raises DomainError (field "audience").

    None or {} means everyone eligible; each key narrows by a list of known
    relationships, locale codes or contact ids. The planner trusts what this returns.
    """
    from .contacts import LOCALE  # contacts imports this module

    keys = ", ".join(AUDIENCE_FILTER_KEYS)
    if audience is None:
        return {}
    if not isinstance(audience, dict):
        raise DomainError(f"audience must be an object with any of the keys {keys}", "audience")
    checked = {}
    for key, values in audience.items():
        if key not in AUDIENCE_FILTER_KEYS:
            raise DomainError(f"audience has an unknown key {key!r}; the keys are {keys}", "audience")
        if values is None:
            continue
        if key == "attributes":  # [{"key", "op": equals | not_equals | is_set, "value"}]
            checked[key] = attributes.check_filters(values)
            continue
        if key in AUDIENCE_DAY_KEYS:
            try:
                if not isinstance(values, str) or len(values) != 10:
                    raise ValueError
                dt.date.fromisoformat(values)
            except ValueError:
                raise DomainError(f"audience.{key} must be a day such as 2026-01-31", "audience") from None
            checked[key] = values
            continue
        if not isinstance(values, list):
            raise DomainError(f"audience.{key} must be a list", "audience")
        if key == "relationships":
            wrong = [v for v in values if v not in list(Relationship)]
            expected = f"a relationship ({', '.join(Relationship)})"
        elif key == "locales":
            wrong = [v for v in values if not (isinstance(v, str) and LOCALE.match(v))]
            expected = "a locale code such as 'en' or 'es-MX'"
            if len(values) > AUDIENCE_LOCALES_MAX:
                raise DomainError(f"audience.locales has more than {AUDIENCE_LOCALES_MAX} locales", "audience")
        elif key in ("companies", "sources"):
            wrong = [v for v in values if not isinstance(v, str) or not v.strip() or len(v) > 200]
            expected = "a text of 1 to 200 characters"
            if len(values) > AUDIENCE_TEXTS_MAX:
                raise DomainError(f"audience.{key} has more than {AUDIENCE_TEXTS_MAX} values", "audience")
        else:
            wrong = [v for v in values if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= CONTACT_ID_MAX]
            expected = f"a contact id (a whole number from 1 to {CONTACT_ID_MAX})"
            if len(values) > AUDIENCE_CONTACT_IDS_MAX:
                raise DomainError(f"audience.contact_ids has more than {AUDIENCE_CONTACT_IDS_MAX} ids", "audience")
        if wrong:
            shown = repr(wrong[0])
            raise DomainError(f"audience.{key}: {shown[:40]}{'…' if len(shown) > 40 else ''} is not {expected}",
                              "audience")
        checked[key] = list(values)
    return checked


def audience(topic: Topic, *, chunk: int = 1000, after_id: int = 0, filters: dict | None = None) -> Iterator[list[Recipient]]:
    """Stream the eligible audience of a marketing topic in keyset-ordered chunks."""
    while True:
        rows = db.session.execute(audience_query(topic, after_id=after_id, limit=chunk, filters=filters)).all()
        if not rows:
            return
        yield [Recipient(r[0], r[1], r[2], r[3]) for r in rows]
        if len(rows) < chunk:
            return
        after_id = rows[-1][0]


class _Subscription(tuple):
    """A subscription's facts as read alongside its contact (state, event id)."""

    __slots__ = ()
    state = property(lambda self: self[0])
    event_id = property(lambda self: self[1])


_SCOPES = {(False, False): (), (True, False): ("all",), (False, True): ("marketing",),
           (True, True): ("all", "marketing")}


# Contact columns the re-check leaves out of its rows: bookkeeping no rule or template reads, and the
# search text, most of a row's bytes (a batch reads thousands of rows).
RECHECK_SKIPS = frozenset({"search_text", "phone", "soft_bounces", "created_at", "updated_at", "last_interaction_at",
                           "erased_at"})


# The contact columns `decide` itself reads (the rule's facts), whatever else its caller asks for.
DECIDE_COLUMNS = ("id", "status", "relationship", "marketing_opt_out_event_id", "relationship_event_id")


def decide(topic: Topic, contact_ids: list[int], columns: tuple[str, ...] | None = None
           ) -> dict[int, tuple[Contact, Decision]]:
    """Apply `may_send` to many contacts with one query (the send-time re-check).

    The query reads, per contact, its row, its subscription to the topic (an
    outer join: unique per contact and topic, so each contact is one row) and
    whether its address is suppressed for all mail and for marketing (one
    probe of the suppressions' (address, scope) key per contact, both scopes
    at once); the decision is `may_send` itself, per row, in
    Python. Contacts come back as plain rows (read-only, same attribute names)
    with every column of the model but the few that neither a decision nor a
    message reads (`RECHECK_SKIPS`): a column added to contacts is there; or,
    with `columns` (what a plain campaign's messages read), only those and the
    rule's own (a batch's 5,000 rows then carry 9 columns instead of 13).
    """
    if not contact_ids:
        return {}
    people, subs, sup = Contact.__table__, Subscription.__table__.alias("s"), Suppression.__table__.alias("sup")
    # One probe of the (address, scope) key per contact, both scopes at once: 1 for all mail, 2 for marketing,
    # 3 for both (the pair is unique). Two EXISTS took a third longer at 1M contacts; two outer joins built a
    # hash table of the suppression rows and then of the joined contact rows, each batch.
    suppressed = (select(func.sum(case((sup.c.scope == "all", 1), else_=2)))
                  .where(sup.c.email_hash == people.c.email_hash, sup.c.scope.in_(("all", "marketing")))
                  .scalar_subquery())

    if columns is None:
        columns = [c for c in people.c if c.key not in RECHECK_SKIPS]
    else:
        wanted = {*DECIDE_COLUMNS, *columns}
        columns = [c for c in people.c if c.key in wanted]
    # Positions in each row (read by index: by name cost more than the query for a batch of 5,000).
    at = {c.key: i for i, c in enumerate(columns)}
    i_id, i_status, i_relationship = at["id"], at["status"], at["relationship"]
    i_opt_out, i_relationship_event = at["marketing_opt_out_event_id"], at["relationship_event_id"]
    i_state, i_sub_event, i_suppressed = range(len(columns), len(columns) + 3)

    def query(part: list[int]):
        # The subscription side is bounded by the lowest and highest of the same ids (a batch is a range): PostgreSQL
        # reads that range of its key instead of scanning every subscription.
        low, high = min(part), max(part)
        return (
            select(*columns, subs.c.state.label("pc_sub_state"), subs.c.event_id.label("pc_sub_event"),
                   suppressed.label("pc_suppressed"))
            .select_from(people)
            .outerjoin(subs, and_(subs.c.contact_id == people.c.id, subs.c.topic_id == topic.id,
                                  subs.c.contact_id.between(low, high)))
            .where(one_of(people.c.id, part))
        )

    decided = {}
    # `may_send` runs once per distinct set of facts (a batch has a handful), not once per contact: it is
    # asked about a stand-in holding only the facts it reads, with markers for the two event ids it can
    # return, and each contact's own event id (the position it is read from is memoised too) replaces the
    # marker. The facts are the row's values as read (an opted-out contact's own event id among them: a
    # batch rarely holds one, and each is decided once).
    facts_of = operator.itemgetter(i_status, i_relationship, i_opt_out, i_state, i_suppressed)
    memo: dict[tuple, tuple[Decision, int | None]] = {}
    for part in parts_for_one_of(contact_ids):
        for row in db.session.execute(query(part)).all():
            facts = facts_of(row)
            known = memo.get(facts)
            if known is None:
                status, relationship, opted_out, state, scopes = facts
                scopes = scopes or 0
                decision = may_send(
                    topic, _StandIn(status, relationship, opted_out),
                    None if state is None else _Subscription((state, _SUBSCRIPTION_EVENT)),
                    _SCOPES[bool(scopes & 1), bool(scopes & 2)])
                at = (i_sub_event if decision.event_id is _SUBSCRIPTION_EVENT
                      else i_relationship_event if decision.event_id is _CONTACT_EVENT else None)
                known = memo[facts] = (decision, at)
            decision, at = known
            decided[row[i_id]] = (row, decision if at is None else Decision(decision.send, decision.reason, row[at]))
    return decided


# Stand-ins for the event ids `may_send` may return (never stored: replaced by the contact's own).
_CONTACT_EVENT, _SUBSCRIPTION_EVENT = object(), object()


class _StandIn:
    """The facts `may_send` reads about a contact, for every contact that shares them (see `decide`);
    reading any other attribute fails loudly rather than deciding on a missing fact."""

    __slots__ = ("status", "relationship", "marketing_opt_out_event_id", "relationship_event_id")

    def __init__(self, status: str, relationship: str, opted_out: int | None) -> None:
        self.status, self.relationship = status, relationship
        self.marketing_opt_out_event_id = opted_out
        self.relationship_event_id = _CONTACT_EVENT
