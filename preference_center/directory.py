"""The staff's contact list: filters, accent- and case-insensitive search, keyset pages with a total, CSV export.

Read-only. Search matches the folded `search_text` column (email, name and company folded in Python when a
contact is written, see `folding`), so "garcia" finds "García" and SQLite and PostgreSQL agree. Pages go
newest first by id with a keyset cursor (`before`): a page costs the same at the end of a million rows as at
the start, and rows added meanwhile never shift a page. Exported cells that a spreadsheet would run as a
formula are written as text.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, fields

from sqlalchemy import and_, exists, func, or_, select

from .emails import InvalidEmail, normalize
from .extensions import db
from .folding import fold
from .models import Campaign, ConsentEvent, Contact, Delivery, Subscription, Suppression, Topic
from .states import ContactStatus, Relationship

PAGE = 50
EXPORT_COLUMNS = ("email", "name", "company", "title", "phone", "locale", "relationship", "status", "created_at",
                  "last_interaction_at")
TOPIC_STATES = ("subscribed", "pending", "unsubscribed", "none")
# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "|", "%")


@dataclass
class Filters:
    """What the list is narrowed to; empty strings mean no filter."""

    q: str = ""
    status: str = ""
    relationship: str = ""
    topic: str = ""  # a topic key, with topic_state
    topic_state: str = ""
    suppressed: str = ""  # "yes" or "no"
    source: str = ""  # e.g. "import:12" or "api": contacts with a ledger event from that source

    def query_args(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}


def _where(filters: Filters) -> list:
    conditions = [Contact.email.is_not(None)]
    q = filters.q.strip()
    if q:
        try:
            exact = normalize(q)
        except InvalidEmail:
            exact = None
        words = fold(q).split()
        matches = [Contact.search_text.contains(word, autoescape=True) for word in words]
        conditions.append(or_(and_(*matches) if matches else False, Contact.email == exact if exact else False))
    if filters.status in tuple(ContactStatus):
        conditions.append(Contact.status == filters.status)
    if filters.relationship in tuple(Relationship):
        conditions.append(Contact.relationship == filters.relationship)
    if filters.topic and filters.topic_state in TOPIC_STATES:
        topic_id = select(Topic.id).where(Topic.key == filters.topic).scalar_subquery()
        mine = and_(Subscription.contact_id == Contact.id, Subscription.topic_id == topic_id)
        if filters.topic_state == "none":
            conditions.append(~exists().where(mine))
        else:
            conditions.append(exists().where(mine, Subscription.state == filters.topic_state))
    if filters.suppressed in ("yes", "no"):
        blocked = exists().where(Suppression.email_hash == Contact.email_hash)
        conditions.append(blocked if filters.suppressed == "yes" else ~blocked)
    if filters.source:
        conditions.append(exists().where(ConsentEvent.contact_id == Contact.id,
                                         ConsentEvent.source == filters.source.strip()))
    return conditions


@dataclass
class Page:
    rows: list[Contact]
    total: int
    before: int | None  # the cursor of the next page, None on the last
    suppressed: set[str]  # email hashes of the rows that have any suppression


def page(filters: Filters, before: int | None = None, size: int = PAGE) -> Page:
    """One page of matching contacts, newest first, and how many match in all."""
    conditions = _where(filters)
    total = db.session.scalar(select(func.count()).select_from(Contact).where(*conditions)) or 0
    query = select(Contact).where(*conditions)
    if before is not None:
        query = query.where(Contact.id < before)
    rows = list(db.session.scalars(query.order_by(Contact.id.desc()).limit(size + 1)))
    more = len(rows) > size
    rows = rows[:size]
    hashes = [r.email_hash for r in rows]
    blocked = set(db.session.scalars(select(Suppression.email_hash).where(Suppression.email_hash.in_(hashes)))) \
        if hashes else set()
    return Page(rows, total, rows[-1].id if more and rows else None, blocked)


def ids(filters: Filters, limit: int) -> list[int]:
    """The ids of matching contacts, newest first, at most `limit` (for bulk actions)."""
    return list(db.session.scalars(select(Contact.id).where(*_where(filters)).order_by(Contact.id.desc())
                                   .limit(limit)))


def safe_cell(value: object) -> str:
    """A CSV cell a spreadsheet shows as text, never runs (a leading ' before formula characters)."""
    text = "" if value is None else value.isoformat() if hasattr(value, "isoformat") else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def export_csv(filters: Filters, chunk: int = 1000) -> Iterator[str]:
    """The matching contacts as CSV text, streamed in keyset chunks, header first."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    yield out.getvalue()
    conditions = _where(filters)
    before = None
    while True:
        query = select(Contact).where(*conditions)
        if before is not None:
            query = query.where(Contact.id < before)
        rows = list(db.session.scalars(query.order_by(Contact.id.desc()).limit(chunk)))
        if not rows:
            return
        out.seek(0)
        out.truncate()
        for row in rows:
            writer.writerow([safe_cell(getattr(row, column)) for column in EXPORT_COLUMNS])
        yield out.getvalue()
        before = rows[-1].id
        db.session.expunge_all()


def count(filters: Filters) -> int:
    return db.session.scalar(select(func.count()).select_from(Contact).where(*_where(filters))) or 0


def deliveries(contact: Contact, limit: int = 100) -> list[tuple[Delivery, Campaign | None]]:
    """The newest deliveries to a contact (campaigns and system messages), with their campaign."""
    return [(delivery, campaign) for delivery, campaign in db.session.execute(
        select(Delivery, Campaign).outerjoin(Campaign, Campaign.id == Delivery.campaign_id)
        .where(Delivery.contact_id == contact.id).order_by(Delivery.id.desc()).limit(limit))]
