"""Telling people (Art. 14): whoever did not give us their address themselves is told before any marketing mail.

An import of another company's list (`ImportJob.third_party`) makes a notice
due for each contact it creates (`due`). `send_due` mails the due notices of
some contacts (a system-type mail: where we got the address, on what basis,
and the links to the preference and data pages; no unsubscribe header) and
marks them sent. The campaign engine calls it for a batch's recipients before
their marketing mail goes out, and skips (reason `not_informed`) anyone whose
notice could not be sent; the scheduler tick sends the rest, so people are
told soon even when no campaign reaches them.
"""
from __future__ import annotations

import logging

from flask import current_app
from sqlalchemy import select, update

from . import links
from .extensions import db
from .mail import Envelope, MessageBatch, TransportError, get_transport
from .models import Contact, FirstContactNotice, ImportJob, utcnow
from .sqlutil import one_of

log = logging.getLogger(__name__)
SKIP_NOT_INFORMED = "not_informed"
PREFS, DATA = "-pc_prefs-", "-pc_data-"
SUBJECT = "Where we got your email address"
BASES = {
    "consent": "your consent, which you gave to {party} for us (you can withdraw it at any time)",
    "legitimate_interest": "our legitimate interest in writing to the customers of the products we sell "
                           "(you can object at any time)",
    "contract": "the contract between us",
}


def due(job: ImportJob, created: list[Contact]) -> None:
    """Make notices due for the contacts an import of another company's list created (in the import's chunk)."""
    if not job.third_party or not created:
        return
    db.session.add_all(FirstContactNotice(contact_id=c.id, import_job_id=job.id, third_party=job.third_party,
                                          legal_basis=job.legal_basis or "legitimate_interest") for c in created)
    db.session.flush()


def text(third_party: str, basis: str) -> str:
    """The notice's text, with placeholders for the person's own links."""
    config = current_app.config
    why = BASES.get(basis, BASES["legitimate_interest"]).format(party=third_party)
    return (f"Hello,\n\nwe have your email address from {third_party}. We use it to send you email about our "
            f"products and services, on the basis of {why}.\n\n"
            f"Choose what you receive, or unsubscribe from everything: {PREFS}\n"
            f"See, correct, download or erase your data, or object: {DATA}\n\n"
            "This is a one-time notice about your data; it is not marketing.\n\n"
            f"{config['PC_POSTAL_ADDRESS']}\n")


def send_due(contact_ids: list[int] | None = None, limit: int = 500) -> tuple[set[int], set[int]]:
    """Send the due notices of `contact_ids` (None: the oldest due ones); (told now, could not be told).

    Commits: a notice marked sent went out before the marketing mail it precedes.
    """
    query = select(FirstContactNotice, Contact).join(Contact, Contact.id == FirstContactNotice.contact_id).where(
        FirstContactNotice.sent_at.is_(None), Contact.status != "erased", Contact.email.is_not(None))
    wanted = None
    if contact_ids is not None:
        if not contact_ids:
            return set(), set()
        low, high = min(contact_ids), max(contact_ids)
        if high - low < 2 * len(contact_ids):
            # A campaign batch: the range of its ids, read by the key and narrowed here (sending 5,000 ids in
            # an array cost more than the query, which usually finds nothing).
            query = query.where(FirstContactNotice.contact_id.between(low, high))
            wanted = set(contact_ids)
        else:
            query = query.where(one_of(FirstContactNotice.contact_id, contact_ids))  # one array, not 5,000 parameters
    query = query.order_by(FirstContactNotice.due_at)
    if wanted is None:
        query = query.limit(len(contact_ids) if contact_ids is not None else limit)
    rows = [row for row in db.session.execute(query) if wanted is None or row[0].contact_id in wanted]
    if not rows:  # a campaign batch's usual answer: nothing to tell, no transport, the caller's transaction goes on
        return set(), set()
    db.session.commit()
    told, failed = set(), set()
    groups: dict[tuple[str, str], list[Contact]] = {}
    for notice, contact in rows:
        groups.setdefault((notice.third_party, notice.legal_basis), []).append(contact)
    transport = get_transport(current_app.config)
    for (party, basis), people in groups.items():
        batch = MessageBatch(
            from_email=current_app.config["PC_FROM_EMAIL"], subject=SUBJECT, text=text(party, basis),
            categories=["system", "first-contact-notice"],
            envelopes=[Envelope(to=c.email, substitutions={
                PREFS: links.preferences_url(c), DATA: links.preferences_url(c) + "/data"}) for c in people])
        try:
            results = transport.send(batch)
        except TransportError as exc:
            log.warning("first-contact notices not sent (%d people): %s", len(people), exc.message)
            failed |= {c.id for c in people}
            continue
        sent = {result.to for result in results if result.ok}
        told |= {c.id for c in people if c.email in sent}
        failed |= {c.id for c in people if c.email not in sent}
    if told:
        db.session.execute(update(FirstContactNotice).where(FirstContactNotice.contact_id.in_(told))
                           .values(sent_at=utcnow()).execution_options(synchronize_session=False))
        db.session.commit()
    return told, failed
