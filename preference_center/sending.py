"""The sending engine: plan batches, claim them, re-check the rule, send, record.

The database is the source of truth, not the broker:

- A campaign's audience is planned chunk by chunk (keyset cursor on the
  campaign row): each chunk becomes a `CampaignBatch` and one `Delivery` row
  per recipient, committed before the broker hears of it.
- A worker claims a batch with one conditional UPDATE; a duplicated broker
  message finds it claimed or done and sends nothing.
- The campaign is rendered before anyone is marked `sending`: a template that
  fails (or goes beyond the sandbox's limits) fails that batch's rows with
  reason `render_failed` and the error, ends the campaign `failed` and fails the
  batches nobody holds yet; a recipient whose own values make the message too
  large fails alone. Such rows were never in flight, so never `unknown`.
- Every recipient is re-checked with the sending rule at send time; those
  still eligible go out in provider requests of up to 1,000. Right before
  each call the request is claimed: its delivery ids are written on the
  batch row (`in_flight`) and committed, one small write instead of marking
  each row `sending`; only then is it handed to the transport (nothing
  touches the database between that commit and the call). The outcome is
  written to the rows in bulk, in the transaction that clears `in_flight`.
- A batch whose broker message was lost stays `queued` and is re-queued by the
  scheduler; a batch whose worker died keeps its lease until it runs out,
  then is re-queued, and the rows of its request in flight become `unknown`
  (never re-sent). A worker whose lease ran out while it was still alive
  finds the batch taken (its attempt number moved on) and claims nothing more.

Guarantee: at most one delivery per (campaign, contact); after a crash the
recipients that were in flight are visible as `unknown`; nobody is forgotten.
A delivery marked sent or failed is written to the outgoing webhooks' outbox in
the same transaction (`outbound.outbox.delivery_outcomes`).
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import and_, func, insert, literal, null, or_, select, update
from sqlalchemy.exc import DBAPIError

from . import compose, engagement, first_contact, optouts, rules
from .errors import DomainError
from .extensions import db
from .mail import Envelope, MessageBatch, TemplateError, TransportError, get_transport
from .models import Campaign, CampaignBatch, Delivery, RateLimit, SystemMessage, Topic, UTCDateTime, utcnow
from .outbound import outbox
from .sqlutil import chunked, one_of
from .states import CampaignStatus

QUEUED, SENDING, SENT, SKIPPED, FAILED, UNKNOWN = "queued", "sending", "sent", "skipped", "failed", "unknown"
SKIP_CANCELLED = "cancelled"
# The reason of a failed delivery whose message could not be rendered (the error says why).
RENDER_FAILED = "render_failed"

log = logging.getLogger(__name__)


# -- planning -----------------------------------------------------------------

def plan_chunk(campaign_id: int, size: int) -> int | None:
    """Plan the next chunk of a sending campaign; return the new batch id, or None when done."""
    # Touch the campaign row first: its write lock serialises planners.
    row = db.session.execute(
        update(Campaign).where(Campaign.id == campaign_id)
        .values(dispatch_cursor=Campaign.dispatch_cursor)
        .returning(Campaign.dispatch_cursor, Campaign.status, Campaign.dispatch_done, Campaign.topic_id,
                   Campaign.audience)
        .execution_options(synchronize_session=False)
    ).one_or_none()
    if row is None:
        db.session.rollback()
        return None
    cursor, status, done, topic_id, audience = row
    if status != "sending" or done:
        db.session.rollback()
        return None
    try:
        audience = rules.check_audience(audience)
    except DomainError as exc:
        # Saved before audiences were checked: planning it would fail on every attempt.
        db.session.rollback()
        log.warning("campaign %s failed: %s", campaign_id, exc.message)
        _stop_campaign(campaign_id)
        db.session.commit()
        return None
    topic = db.session.get(Topic, topic_id)
    batch = CampaignBatch(campaign_id=campaign_id, first_contact_id=cursor + 1, last_contact_id=cursor,
                          size=0, status=QUEUED)
    db.session.add(batch)
    db.session.flush()
    # The chunk goes from the audience query into delivery rows inside the
    # database: no recipient travels to Python and back.
    chunk = rules.audience_query(topic, after_id=cursor, limit=size, filters=audience or {}).subquery()
    now = utcnow()
    db.session.execute(insert(Delivery).from_select(
        ["campaign_id", "batch_id", "contact_id", "status", "event_id", "attempts", "created_at", "updated_at"],
        select(literal(campaign_id), literal(batch.id), chunk.c.id, literal(QUEUED), chunk.c.event_id,
               literal(0), literal(now, UTCDateTime), literal(now, UTCDateTime)),
    ))
    first, last, count = db.session.execute(
        select(func.min(Delivery.contact_id), func.max(Delivery.contact_id), func.count())
        .where(Delivery.batch_id == batch.id)
    ).one()
    if not count:
        db.session.delete(batch)
        db.session.execute(update(Campaign).where(Campaign.id == campaign_id).values(dispatch_done=True))
        db.session.commit()
        return None
    batch.first_contact_id, batch.last_contact_id, batch.size = first, last, count
    db.session.execute(update(Campaign).where(Campaign.id == campaign_id).values(
        dispatch_cursor=last, dispatch_done=count < size))
    db.session.commit()
    return batch.id


# -- claiming -----------------------------------------------------------------

def claim_batch(batch_id: int) -> bool:
    """Take a batch for this worker; False if another has it or it is finished."""
    config = current_app.config
    now = utcnow()
    result = db.session.execute(
        update(CampaignBatch)
        .where(CampaignBatch.id == batch_id,
               or_(CampaignBatch.status == QUEUED,
                   and_(CampaignBatch.status == "claimed", CampaignBatch.lease_until < now)))
        .values(status="claimed", attempts=CampaignBatch.attempts + 1,
                lease_until=now + dt.timedelta(seconds=config["PC_BATCH_LEASE_SECONDS"]))
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return result.rowcount == 1


def _set(ids: list[int], **values) -> None:
    if ids:
        db.session.execute(update(Delivery).where(one_of(Delivery.id, ids))
                           .values(updated_at=utcnow(), **values)
                           .execution_options(synchronize_session=False))
        if values.get("status") in (SENT, FAILED):
            outbox.delivery_outcomes(ids, values["status"])  # told in the same transaction


@dataclass
class Outcome:
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    unknown: int = 0
    retry_in: float | None = None  # the batch went back to the queue


def _render_error(exc: TemplateError) -> str:
    return f"{exc.field}: {exc}"[:2000] if exc.field else str(exc)[:2000]


def send_batch(batch_id: int) -> Outcome:
    """Claim, render, re-check, send and record one campaign batch."""
    outcome = Outcome()
    if not claim_batch(batch_id):
        return outcome
    batch = db.session.get(CampaignBatch, batch_id)
    # Our attempt, read once: after a commit `batch.attempts` would reload, and if the lease ran out
    # meanwhile (a long per-recipient render) it would be the attempt of the worker that took over.
    attempt = batch.attempts
    campaign = db.session.get(Campaign, batch.campaign_id)
    if campaign.status == CampaignStatus.PAUSED:
        # Paused between batches: hand the batch back untouched (this claim does not count as an attempt).
        db.session.execute(update(CampaignBatch).where(CampaignBatch.id == batch_id)
                           .values(status=QUEUED, lease_until=None, attempts=CampaignBatch.attempts - 1))
        db.session.commit()
        return outcome
    topic = db.session.get(Topic, campaign.topic_id)
    # Rendered before any row changes (no write lock is held while a template runs its time budget).
    mail, render_error = None, None
    if campaign.status not in (CampaignStatus.CANCELLED, CampaignStatus.FAILED):
        try:
            mail = compose.CampaignMail(topic, campaign.subject, campaign.html, campaign.text, campaign.id)
        except TemplateError as exc:
            render_error = _render_error(exc)
    # The request a worker that died had claimed (and rows it left `sending`) may have gone out: never resend.
    in_flight = list(db.session.scalars(select(Delivery.id).where(Delivery.batch_id == batch_id,
                                                                   Delivery.status == SENDING)))
    if batch.in_flight:
        in_flight += db.session.scalars(select(Delivery.id).where(
            one_of(Delivery.id, [int(i) for i in batch.in_flight]), Delivery.batch_id == batch_id,
            Delivery.status == QUEUED)).all()
        db.session.execute(update(CampaignBatch).where(CampaignBatch.id == batch_id).values(in_flight=null()))
    _set(in_flight, status=UNKNOWN, error="worker stopped while sending; delivery not confirmed")
    outcome.unknown = len(in_flight)
    queued = db.session.execute(
        select(Delivery.id, Delivery.contact_id, Delivery.event_id)
        .where(Delivery.batch_id == batch_id, Delivery.status == QUEUED)
    ).all()
    planned_event = {d: e for d, _, e in queued}
    if campaign.status == CampaignStatus.CANCELLED:
        _set([d for d, _, _ in queued], status=SKIPPED, reason=SKIP_CANCELLED)
        outcome.skipped = len(queued)
        finish_batch(batch, attempt)
        return outcome
    if campaign.status == CampaignStatus.FAILED:
        # Another batch found the template broken; these rows would fail the same way.
        _set([d for d, _, _ in queued], status=FAILED, reason=RENDER_FAILED, error=campaign_render_error(campaign.id))
        outcome.failed = len(queued)
        finish_batch(batch, attempt)
        return outcome
    if optouts.settle([c for _, c, _ in queued]):
        db.session.commit()  # one-click opt-outs that came in since planning count now
    decisions = rules.decide(topic, [c for _, c, _ in queued])
    # Open and click tracking only for those who agreed, and only if the topic allows it (one query).
    tracked = engagement.tracked(topic, [c for c, (_, d) in decisions.items() if d.send]) if mail else set()
    go, envelopes = [], []
    skips: dict[str, list[int]] = {}
    unrenderable: list[tuple[int, str]] = []
    for delivery_id, contact_id, _ in queued:
        contact, decision = decisions.get(contact_id, (None, None))
        if decision is None or not decision.send:
            skips.setdefault(decision.reason if decision else rules.SKIP_ERASED, []).append(delivery_id)
            continue
        if mail is None:
            unrenderable.append((delivery_id, render_error))
            continue
        try:  # this recipient's values may make a part fail or grow too large
            addressed = mail.envelope(contact, delivery_id, tracking=contact_id in tracked)
        except TemplateError as exc:
            unrenderable.append((delivery_id, _render_error(exc)))
            continue
        go.append((delivery_id, decision.event_id))
        envelopes.append(addressed)
    for reason, ids in skips.items():
        _set(ids, status=SKIPPED, reason=reason)
        outcome.skipped += len(ids)
    for delivery_id, error in unrenderable:
        _set([delivery_id], status=FAILED, reason=RENDER_FAILED, error=error)
    outcome.failed += len(unrenderable)
    if mail is None:
        db.session.commit()
        log.warning("campaign %s failed: its template cannot be rendered (%s)", campaign.id, render_error)
        fail_campaign(campaign.id, render_error)
        finish_batch(batch, attempt)
        return outcome
    # Art. 14: whoever got here through another company's list is told where we got the address first.
    contact_of = {d: c for d, c, _ in queued}
    _, untold = first_contact.send_due([contact_of[d] for d, _ in go])
    if untold:
        kept = [(pair, envelope) for pair, envelope in zip(go, envelopes, strict=True) if contact_of[pair[0]] not in untold]
        _set([d for d, _ in go if contact_of[d] in untold], status=SKIPPED, reason=first_contact.SKIP_NOT_INFORMED)
        outcome.skipped += len(go) - len(kept)
        go, envelopes = [pair for pair, _ in kept], [envelope for _, envelope in kept]
    # The authorising event is usually the one seen at planning; rewrite the
    # few that changed since (a fresh grant, a new relationship).
    changed = [{"id": d, "event_id": e} for d, e in go if planned_event[d] != e]
    if changed:
        db.session.execute(update(Delivery), changed)
    db.session.commit()
    if envelopes:
        _deliver([(message, envelope, d) for (message, envelope), (d, _) in zip(envelopes, go, strict=True)],
                 outcome, attempt, batch_id=batch_id)
    if outcome.retry_in is not None:
        db.session.execute(update(CampaignBatch).where(CampaignBatch.id == batch_id, CampaignBatch.attempts == attempt)
                           .values(status=QUEUED, lease_until=None))
        db.session.commit()
        return outcome
    finish_batch(batch, attempt)
    return outcome


def _requests(items: list[tuple[MessageBatch, Envelope, int]], step: int):
    """(message, envelopes, delivery ids, index of the first) per provider request: recipients sharing
    a message (one per language, or their own when rendered whole) go together, at most `step` at a time."""
    groups: dict[int, list[int]] = {}
    for index, (message, _, _) in enumerate(items):
        groups.setdefault(id(message), []).append(index)
    start = 0
    for indexes in groups.values():
        for first in range(0, len(indexes), step):
            chosen = indexes[first:first + step]
            yield (items[chosen[0]][0], [items[i][1] for i in chosen], [items[i][2] for i in chosen], start)
            start += len(chosen)


def _deliver(items: list[tuple[MessageBatch, Envelope, int]], outcome: Outcome, attempt: int,
             batch_id: int | None = None, **claim_values) -> None:
    """Hand envelopes to the transport in provider-sized requests, each claimed just before its call.

    Per request: reserve the shared rate, claim it (committed), call the
    provider, record the answer. A campaign batch's request is claimed on the
    batch row (`in_flight`, see `_claim_request`; the rows stay `queued`), a
    system message's row is marked `sending` (`_claim`). Either claim takes
    only rows still queued: a template rendered per recipient can take long
    enough for the lease to run out and another worker to take over. Nothing
    touches the database between the claim's commit and the call, so a
    database fault before the call leaves the rows unclaimed (sent later, by
    this worker or after the lease) and one after it leaves the claim in place
    (later `unknown`): a recipient is never marked as possibly sent without
    having been handed over.
    """
    transport = get_transport(current_app.config)
    requests = list(_requests(items, max(1, transport.max_batch)))
    order = [d for _, _, ids, _ in requests for d in ids]  # the delivery ids in sending order

    def release() -> None:  # in the transaction that records a claimed request's outcome
        if batch_id is not None:
            db.session.execute(update(CampaignBatch).where(CampaignBatch.id == batch_id,
                                                           CampaignBatch.attempts == attempt)
                               .values(in_flight=null()).execution_options(synchronize_session=False))

    for message, part, ids, start in requests:
        size = len(ids)
        wait_for_rate(size)
        if batch_id is not None:
            claimed = _claim_request(batch_id, attempt, ids)
            if claimed is None:
                return  # the lease ran out and another worker holds the batch now: the rest is theirs
            claimed = set(claimed)
        else:
            claimed = set(_claim(ids, attempt, **claim_values))
        if len(claimed) < len(ids):  # taken or finished by someone else meanwhile: theirs to send
            part = [e for e, i in zip(part, ids, strict=True) if i in claimed]
            ids = [i for i in ids if i in claimed]
            if not ids:
                continue
        try:
            results = transport.send(MessageBatch(**{**message.__dict__, "envelopes": part}))
        except TransportError as error:
            reason = error.message[:2000]
            if error.ambiguous:
                _record(ids, release, status=UNKNOWN, error=reason)
                outcome.unknown += len(ids)
                continue
            if error.retryable and attempt < current_app.config["PC_SEND_ATTEMPTS"]:
                _record(ids, release, status=QUEUED, error=reason)
                outcome.retry_in = error.retry_after or min(300.0, 2.0 ** attempt)
                return
            rest = ids + order[start + size:]  # this request's rows and the ones not yet claimed
            _record(rest, release, status=FAILED, error=reason)
            outcome.failed += len(rest)
            return
        sent = [(i, r) for i, r in zip(ids, results, strict=False) if r.ok]
        failed = [(i, r) for i, r in zip(ids, results, strict=False) if not r.ok]
        by_message: dict[str | None, list[int]] = {}
        for delivery_id, result in sent:
            by_message.setdefault(result.provider_message_id, []).append(delivery_id)

        def record_results(by_message=by_message, failed=failed) -> None:
            for provider_id, group in by_message.items():
                _set(group, status=SENT, provider_message_id=provider_id, error=None)
            for delivery_id, result in failed:
                _set([delivery_id], status=FAILED, error=(result.error or "refused")[:2000])
            release()

        _committed(record_results)
        outcome.sent += len(sent)
        outcome.failed += len(failed)


def _committed(write) -> None:
    """Run `write` and commit; if the database connection died under it, once more on a fresh one.

    For writes that are right to repeat (recording an outcome): a killed
    connection then costs a reconnect, not a row left `sending`.
    """
    try:
        write()
        db.session.commit()
    except DBAPIError as exc:
        db.session.rollback()
        if not exc.connection_invalidated:
            raise
        write()
        db.session.commit()


def _record(ids: list[int], release, **values) -> None:
    def write() -> None:
        _set(ids, **values)
        release()

    _committed(write)


def _claim_request(batch_id: int, attempt: int, ids: list[int]) -> list[int] | None:
    """Claim one provider request of a campaign batch: the ids of its rows still queued, written on the
    batch row (`in_flight`) and committed; returns them.

    None if the batch is no longer this attempt's (its lease ran out and
    another worker took it: whoever changes these rows has taken the batch
    first, so the rows read here stay as read unless this update then finds
    the batch taken). If the commit fails the provider is not called; a claim
    the commit may have made anyway is given back (only this attempt's), so
    the rows are sent later rather than reported `unknown`.
    """
    try:
        queued = list(db.session.scalars(select(Delivery.id).where(one_of(Delivery.id, ids),
                                                                   Delivery.status == QUEUED)))
        if not queued:
            db.session.rollback()
            return []
        queued.sort(key={d: n for n, d in enumerate(ids)}.__getitem__)
        taken = db.session.execute(
            update(CampaignBatch).where(CampaignBatch.id == batch_id, CampaignBatch.attempts == attempt)
            .values(in_flight=queued).execution_options(synchronize_session=False)
        ).rowcount == 1
        db.session.commit()
    except DBAPIError:
        db.session.rollback()
        _committed(lambda: db.session.execute(
            update(CampaignBatch).where(CampaignBatch.id == batch_id, CampaignBatch.attempts == attempt)
            .values(in_flight=null()).execution_options(synchronize_session=False)))
        raise
    return queued if taken else None


def _claim(ids: list[int], attempt: int, **values) -> list[int]:
    """Mark queued rows `sending` for this attempt and commit; the ids claimed.

    If the commit fails the provider is not called; rows the claim may have
    marked anyway are given back (only this attempt's, never another
    worker's), so they are sent later rather than reported `unknown`.
    """
    try:
        claimed = db.session.scalars(
            update(Delivery).where(one_of(Delivery.id, ids), Delivery.status == QUEUED)
            .values(status=SENDING, attempts=attempt, updated_at=utcnow(), **values)
            .returning(Delivery.id).execution_options(synchronize_session=False)
        ).all()
        db.session.commit()
    except DBAPIError:
        db.session.rollback()
        _committed(lambda: db.session.execute(
            update(Delivery).where(one_of(Delivery.id, ids), Delivery.status == SENDING, Delivery.attempts == attempt)
            .values(status=QUEUED, updated_at=utcnow()).execution_options(synchronize_session=False)))
        raise
    return list(claimed)


def _stop_campaign(campaign_id: int) -> bool:
    """Mark a sending campaign failed and plan no more of it (in the caller's transaction)."""
    return db.session.execute(
        update(Campaign).where(Campaign.id == campaign_id, Campaign.status == CampaignStatus.SENDING)
        .values(status=CampaignStatus.FAILED, finished_at=utcnow(), dispatch_done=True)
        .execution_options(synchronize_session=False)
    ).rowcount == 1


def fail_campaign(campaign_id: int, error: str) -> None:
    """End a campaign whose template cannot render: `failed`, nothing more planned, and the rows of
    batches no worker holds fail with the same error (a worker holding one finds the campaign failed)."""
    _stop_campaign(campaign_id)
    closed = db.session.scalars(
        update(CampaignBatch).where(CampaignBatch.campaign_id == campaign_id, CampaignBatch.status == QUEUED)
        .values(status="done", finished_at=utcnow(), lease_until=None)
        .returning(CampaignBatch.id).execution_options(synchronize_session=False)
    ).all()
    for ids in chunked(closed):
        failed = db.session.scalars(
            update(Delivery).where(one_of(Delivery.batch_id, ids), Delivery.status == QUEUED)
            .values(status=FAILED, reason=RENDER_FAILED, error=error, updated_at=utcnow())
            .returning(Delivery.id).execution_options(synchronize_session=False)).all()
        outbox.delivery_outcomes(list(failed), FAILED)
    db.session.commit()


def campaign_render_error(campaign_id: int) -> str:
    """The error recorded when the campaign's template failed to render."""
    return db.session.scalar(select(Delivery.error).where(
        Delivery.campaign_id == campaign_id, Delivery.reason == RENDER_FAILED).order_by(Delivery.id).limit(1)) \
        or "the campaign failed: its template cannot be rendered"


def finish_batch(batch: CampaignBatch, attempt: int | None = None) -> None:
    """Mark the batch done; with `attempt`, only while it is still that attempt's (a worker whose lease
    ran out and was taken over leaves the batch to the one that holds it now)."""
    query = update(CampaignBatch).where(CampaignBatch.id == batch.id)
    if attempt is not None:
        query = query.where(CampaignBatch.attempts == attempt)
    db.session.execute(query.values(status="done", finished_at=utcnow(), lease_until=None)
                       .execution_options(synchronize_session=False))
    db.session.commit()
    finish_campaign_if_done(batch.campaign_id)


def finish_campaign_if_done(campaign_id: int) -> bool:
    """Mark a fully planned campaign with no open batch as sent."""
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None or campaign.status != "sending" or not campaign.dispatch_done:
        return False
    open_batches = db.session.scalar(select(func.count(CampaignBatch.id)).where(
        CampaignBatch.campaign_id == campaign_id, CampaignBatch.status != "done"))
    if open_batches:
        return False
    result = db.session.execute(update(Campaign).where(Campaign.id == campaign_id, Campaign.status == "sending")
                                .values(status="sent", finished_at=utcnow()))
    db.session.commit()
    return result.rowcount == 1


# -- recovery -----------------------------------------------------------------

def lost_batches() -> list[int]:
    """Batches whose broker message was lost (queued too long) or whose worker died (lease over)."""
    now = utcnow()
    stale = now - dt.timedelta(seconds=current_app.config["PC_REQUEUE_AFTER_SECONDS"])
    paused = select(Campaign.id).where(Campaign.status == CampaignStatus.PAUSED)
    return list(db.session.scalars(select(CampaignBatch.id).where(or_(
        and_(CampaignBatch.status == QUEUED, CampaignBatch.queued_at < stale),
        and_(CampaignBatch.status == "claimed", CampaignBatch.lease_until < now),
    ), CampaignBatch.campaign_id.not_in(paused))))


def mark_requeued(batch_ids: list[int]) -> None:
    if batch_ids:
        db.session.execute(update(CampaignBatch).where(CampaignBatch.id.in_(batch_ids), CampaignBatch.status == QUEUED)
                           .values(queued_at=utcnow()))
        db.session.commit()


# -- the shared rate limit ------------------------------------------------------

def wait_for_rate(count: int, name: str = "provider") -> None:
    """Reserve `count` sends on the schedule every worker shares; sleep until our slot."""
    rate = current_app.config["PC_SEND_RATE"]
    if rate <= 0 or count <= 0:
        return
    cost = count / rate
    now = time.time()
    row = db.session.execute(
        update(RateLimit).where(RateLimit.name == name)
        .values(next_at=func.max(RateLimit.next_at, now) + cost if db.engine.dialect.name == "sqlite"
                else func.greatest(RateLimit.next_at, now) + cost)
        .returning(RateLimit.next_at)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if row is None:
        db.session.add(RateLimit(name=name, next_at=now + cost))
        db.session.commit()
        return
    db.session.commit()
    start = row - cost
    if start > now:
        time.sleep(start - now)


# -- system messages -------------------------------------------------------------

def _conclude_system(delivery_id: int, **values) -> str:
    """Record the end of a system delivery still queued (a worker that got there first wins); its status."""
    concluded = db.session.execute(
        update(Delivery).where(Delivery.id == delivery_id, Delivery.status == QUEUED)
        .values(updated_at=utcnow(), **values).execution_options(synchronize_session=False)).rowcount
    if concluded and values.get("status") == FAILED:
        outbox.delivery_outcomes([delivery_id], FAILED)  # told in the same transaction
    db.session.commit()
    return db.session.get(Delivery, delivery_id, populate_existing=True).status


def send_system(delivery_id: int) -> str:
    """Re-check, render, claim and send one system message delivery; returns its final status."""
    delivery = db.session.get(Delivery, delivery_id, populate_existing=True)
    if delivery is None or delivery.status != QUEUED:
        return delivery.status if delivery else "missing"
    message = db.session.get(SystemMessage, delivery.system_message_id)
    topic = db.session.get(Topic, message.topic_id)
    contact, decision = rules.decide(topic, [delivery.contact_id])[delivery.contact_id]
    if not decision.send:
        return _conclude_system(delivery_id, status=SKIPPED, reason=decision.reason)
    # Rendered before the claim: a message that cannot be rendered fails, it is never left `sending`.
    try:
        batch = compose.system_batch(topic, contact, message.subject, message.html, message.text,
                                     message.data or {}, delivery_id)
    except TemplateError as exc:
        log.warning("system message delivery %s failed: %s", delivery_id, _render_error(exc))
        return _conclude_system(delivery_id, status=FAILED, reason=RENDER_FAILED, error=_render_error(exc))
    # Claimed (committed) right before the provider call; a duplicate task finds it taken.
    outcome = Outcome()
    _deliver([(batch, batch.envelopes[0], delivery_id)], outcome, delivery.attempts + 1, event_id=decision.event_id)
    if outcome.retry_in is not None:
        raise RetryLater(outcome.retry_in)
    return db.session.get(Delivery, delivery_id, populate_existing=True).status


class RetryLater(Exception):
    def __init__(self, seconds: float):
        super().__init__(f"retry in {seconds:.1f}s")
        self.seconds = seconds


def stale_system_deliveries() -> list[int]:
    """System deliveries still queued long after creation (their broker message was lost)."""
    stale = utcnow() - dt.timedelta(seconds=current_app.config["PC_REQUEUE_AFTER_SECONDS"])
    return list(db.session.scalars(select(Delivery.id).where(
        Delivery.system_message_id.is_not(None), Delivery.status == QUEUED, Delivery.updated_at < stale)))


def touch(delivery_ids: list[int]) -> None:
    _set(delivery_ids)
    db.session.commit()


def abandon_stuck_system_sends() -> int:
    """System sends left `sending` past the lease: the worker died mid-call; mark unknown."""
    lease = utcnow() - dt.timedelta(seconds=current_app.config["PC_BATCH_LEASE_SECONDS"])
    result = db.session.execute(update(Delivery).where(
        Delivery.system_message_id.is_not(None), Delivery.status == SENDING, Delivery.updated_at < lease)
        .values(status=UNKNOWN, error="worker stopped while sending; delivery not confirmed")
        .execution_options(synchronize_session=False))
    db.session.commit()
    return result.rowcount or 0


# -- planner bookkeeping ----------------------------------------------------------

PLANNING_LEASE = dt.timedelta(seconds=120)


def take_planning_lease(campaign_id: int, renew: bool = False) -> bool:
    """Become the one planner of a campaign (or extend our lease)."""
    now = utcnow()
    query = update(Campaign).where(Campaign.id == campaign_id, Campaign.status == "sending")
    if not renew:
        query = query.where(or_(Campaign.dispatch_lease_until.is_(None), Campaign.dispatch_lease_until < now))
    result = db.session.execute(query.values(dispatch_lease_until=now + PLANNING_LEASE)
                                .execution_options(synchronize_session=False))
    db.session.commit()
    return result.rowcount == 1


def release_planning_lease(campaign_id: int) -> None:
    db.session.execute(update(Campaign).where(Campaign.id == campaign_id).values(dispatch_lease_until=None))
    db.session.commit()


def campaigns_to_plan() -> list[int]:
    """Sending campaigns not fully planned and with no live planner."""
    now = utcnow()
    return list(db.session.scalars(select(Campaign.id).where(
        Campaign.status == "sending", Campaign.dispatch_done.is_(False),
        or_(Campaign.dispatch_lease_until.is_(None), Campaign.dispatch_lease_until < now))))


def sending_campaigns() -> list[int]:
    return list(db.session.scalars(select(Campaign.id).where(Campaign.status == "sending")))
