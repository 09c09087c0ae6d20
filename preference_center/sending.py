"""The sending engine: plan batches, claim them, re-check the rule, send, record.

The database is the source of truth, not the broker:

- A campaign's audience is planned chunk by chunk (keyset cursor on the
  campaign row): each chunk becomes a `CampaignBatch` holding its planned
  recipients' ids, committed before the broker hears of it. The batch is the
  plan: no delivery row is written at planning.
- A worker claims a batch with one conditional UPDATE; a duplicated broker
  message finds it claimed or done and sends nothing.
- The campaign is rendered before anything is claimed: a template that fails
  (or goes beyond the sandbox's limits) fails that batch's recipients with
  reason `render_failed` and the error, ends the campaign `failed` and fails
  the batches nobody holds yet; a recipient whose own values make the message
  too large fails alone. Such recipients were never in flight, so never
  `unknown`.
- Every recipient is re-checked with the sending rule at send time (one query
  per batch, `rules.decide`); the skipped get their row with the reason at
  once. Those still eligible get their delivery ids (taken from the
  database's sequence: they travel in the request) and go out in provider
  requests of up to 1,000. Right before each call the request is claimed: its
  (delivery id, contact, event) triples are written on the batch row
  (`in_flight`) and committed; only then is it handed to the transport
  (nothing touches the database between that commit and the call). The rows
  are written once, with their outcome (COPY on PostgreSQL), in the
  transaction that replaces `in_flight` by the next request's claim, or that
  clears it and finishes the batch.
- A batch whose broker message was lost stays `queued` and is re-queued by the
  scheduler; a batch whose worker died keeps its lease until it runs out,
  then is re-queued, and the request it had in flight is written `unknown`
  (never re-sent). A worker whose lease ran out while it was still alive
  finds the batch taken (its attempt number moved on) and claims nothing
  more; the outcome of the request it had in flight still wins over
  `unknown`. A recipient with a row is never sent again: the rows of a batch,
  and its claim, are what the next worker skips.

Guarantee: at most one delivery per (campaign, contact) (and a unique row
for it); after a crash the recipients that were in flight are visible as
`unknown`; nobody is forgotten: a recipient is pending on its batch until
its row is written.
A delivery marked sent or failed is written to the outgoing webhooks' outbox in
the same transaction (`outbound.outbox.delivery_outcomes`).
"""
from __future__ import annotations

import datetime as dt
import gc
import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import and_, func, null, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError

from . import bulk, compose, engagement, first_contact, optouts, rules
from .errors import DomainError
from .extensions import db
from .mail import Envelope, MessageBatch, TemplateError, TransportError, get_transport
from .models import Campaign, CampaignBatch, Delivery, RateLimit, SystemMessage, Topic, utcnow
from .outbound import outbox
from .sqlutil import one_of
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
    chunk = rules.audience_query(topic, after_id=cursor, limit=size, filters=audience or {}).subquery()
    ids = list(db.session.scalars(select(chunk.c.id).order_by(chunk.c.id)))
    if not ids:
        db.session.execute(update(Campaign).where(Campaign.id == campaign_id).values(dispatch_done=True))
        db.session.commit()
        return None
    # The batch is the plan: its recipients' ids, one row (their delivery rows are written when sent).
    batch = CampaignBatch(campaign_id=campaign_id, first_contact_id=ids[0], last_contact_id=ids[-1],
                          size=len(ids), status=QUEUED, contact_ids=ids)
    db.session.add(batch)
    db.session.flush()
    batch_id = batch.id  # read before the commit expires it (reading it after would load the row again)
    db.session.execute(update(Campaign).where(Campaign.id == campaign_id).values(
        dispatch_cursor=ids[-1], dispatch_done=len(ids) < size))
    db.session.commit()
    return batch_id


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
    """Change existing delivery rows (system messages; campaign rows are written once, see `_write`)."""
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


# A recipient of a batch on its way to its row: (delivery id, contact id, authorising event id).
Triple = tuple[int, int, "int | None"]


@dataclass
class _Rows:
    """Writes one batch's delivery rows, each once, with its outcome."""

    campaign_id: int
    batch_id: int
    attempt: int

    def write(self, triples: list[Triple], status: str, *, replace: bool = False, keep: bool = False,
              provider_ids: dict[int, str | None] | None = None, **values) -> None:
        """Insert the rows of these recipients (in the caller's transaction); the outbox hears of sent and failed.

        `replace`: a row already there (written `unknown` by a worker that took the batch over) takes this
        outcome; `keep`: a row already there stays as it is.
        """
        if not triples:
            return
        now = utcnow()
        same = {"campaign_id": self.campaign_id, "system_message_id": None, "batch_id": self.batch_id,
                "attempts": self.attempt, "status": status, "reason": None, "provider_message_id": None,
                "provider_status": None, "error": None, "created_at": now, "updated_at": now, **values}
        if provider_ids and len(set(provider_ids.values())) == 1:  # one request, one provider id: the usual case
            same["provider_message_id"] = next(iter(provider_ids.values()))
            provider_ids = None
        if provider_ids:
            del same["provider_message_id"]
            rows = [{"id": d, "contact_id": c, "event_id": e, "provider_message_id": provider_ids.get(d)}
                    for d, c, e in triples]
        else:
            rows = [{"id": d, "contact_id": c, "event_id": e} for d, c, e in triples]
        if replace or keep:
            rows = [{**row, **same} for row in rows]
            dialect = postgresql if db.engine.dialect.name == "postgresql" else sqlite
            statement = dialect.insert(Delivery)
            target = ["campaign_id", "contact_id"]
            if keep:
                statement = statement.on_conflict_do_nothing(index_elements=target)
            else:
                statement = statement.on_conflict_do_update(index_elements=target, set_={
                    name: statement.excluded[name]
                    for name in ("status", "reason", "provider_message_id", "error", "attempts", "updated_at")})
            db.session.execute(statement, rows)
        else:
            bulk.insert_rows(Delivery.__table__, rows, same)
        if status in (SENT, FAILED):
            outbox.delivery_outcomes([d for d, _, _ in triples], status)  # told in the same transaction


_SEQUENCES: dict[str, str] = {}  # database URL -> the name of the sequence of delivery ids


def new_delivery_ids(count: int) -> list[int]:
    """Ids for delivery rows written later (they travel in the provider request before the row exists).

    PostgreSQL hands them out from the table's sequence; on SQLite the table is
    AUTOINCREMENT, whose counter (`sqlite_sequence`) is moved on by `count` in
    the caller's transaction, which must commit before the ids are used.
    """
    if count <= 0:
        return []
    if db.engine.dialect.name == "postgresql":
        # The sequence's name is looked up once: pg_get_serial_sequence per row took four times as long.
        key = str(db.engine.url)
        if key not in _SEQUENCES:
            _SEQUENCES[key] = db.session.scalar(text("SELECT pg_get_serial_sequence('deliveries', 'id')"))
        # One row holding them all: a row each made the driver fetch 5,000 rows one by one.
        return db.session.scalar(text("SELECT array_agg(nextval(CAST(:sequence AS regclass))) "
                                      "FROM generate_series(1, :n)"), {"sequence": _SEQUENCES[key], "n": count})
    top = db.session.scalar(text("UPDATE sqlite_sequence SET seq = max(seq, (SELECT coalesce(max(id), 0) "
                                 "FROM deliveries)) + :n WHERE name = 'deliveries' RETURNING seq"), {"n": count})
    if top is None:  # nothing was ever written to the table
        top = db.session.scalar(text("SELECT coalesce(max(id), 0) FROM deliveries")) + count
        db.session.execute(text("INSERT INTO sqlite_sequence (name, seq) VALUES ('deliveries', :top)"), {"top": top})
    return list(range(top - count + 1, top + 1))


class _Collector:
    """The garbage collector held off while batches are sent, and run between them.

    A batch keeps tens of thousands of objects alive for its length (its rows, envelopes and request bodies):
    they outlive the collector's young generations, and every few batches their promotion set off a full
    pass, whose passes over a worker's life took a sixth of its CPU. Objects still go as soon as nothing
    refers to them; only cycles wait, for the collection of the young generations after every
    `YOUNG_EVERY` batches (a full one every `FULL_EVERY`). With batches on several threads the collector
    stays off until none is running; it is never switched on by us if it was off before the first.
    """

    YOUNG_EVERY, FULL_EVERY = 4, 16

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = 0
        self._switched_off = False
        self._batches = 0

    @contextmanager
    def held(self):
        with self._lock:
            self._running += 1
            if self._running == 1 and gc.isenabled():
                gc.disable()
                self._switched_off = True
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1
                self._batches += 1
                generation = (2 if self._batches % self.FULL_EVERY == 0
                              else 1 if self._batches % self.YOUNG_EVERY == 0 else None)
                if self._running == 0 and self._switched_off:
                    gc.enable()
                    self._switched_off = False
            if generation is not None:
                gc.collect(generation)


collector = _Collector()


def send_batch(batch_id: int) -> Outcome:
    """Claim, render, re-check, send and record one campaign batch (the collector held off meanwhile)."""
    with collector.held():
        return _send_batch(batch_id)


def _send_batch(batch_id: int) -> Outcome:
    outcome = Outcome()
    if not claim_batch(batch_id):
        return outcome
    # The row is kept referenced until its in-flight claim and recipients are read below: the session's
    # identity map holds rows weakly, and a dropped row was read again, its 5,000 recipients and all.
    claimed = db.session.get(CampaignBatch, batch_id)
    # Our attempt, read once: after a commit `claimed.attempts` would reload, and if the lease ran out
    # meanwhile (a long per-recipient render) it would be the attempt of the worker that took over.
    attempt = claimed.attempts
    # The batch's ids, apart from its row (what `finish_batch` needs after the row is let go).
    batch = _Batch(claimed.id, claimed.campaign_id)
    campaign = db.session.get(Campaign, batch.campaign_id)
    if campaign.status == CampaignStatus.PAUSED:
        # Paused between batches: hand the batch back untouched (this claim does not count as an attempt).
        db.session.execute(update(CampaignBatch).where(CampaignBatch.id == batch_id)
                           .values(status=QUEUED, lease_until=None, attempts=CampaignBatch.attempts - 1))
        db.session.commit()
        return outcome
    rows = _Rows(campaign.id, batch_id, attempt)
    topic = db.session.get(Topic, campaign.topic_id)
    # Rendered before anything is claimed (no write lock is held while a template runs its time budget).
    mail, render_error = None, None
    if campaign.status not in (CampaignStatus.CANCELLED, CampaignStatus.FAILED):
        try:
            mail = compose.CampaignMail(topic, campaign.subject, campaign.html, campaign.text, campaign.id)
        except TemplateError as exc:
            render_error = _render_error(exc)
    # Whoever had this batch before: the request it claimed may have gone out (never resend: `unknown`,
    # unless its worker, still alive, records the real outcome), and the recipients with a row are done.
    held = [tuple(t) for t in claimed.in_flight or []]
    if held:
        db.session.execute(update(CampaignBatch).where(CampaignBatch.id == batch_id).values(in_flight=null()))
        rows.write(held, UNKNOWN, keep=True, error="worker stopped while sending; delivery not confirmed")
        outcome.unknown = len(held)
    done = set(db.session.scalars(select(Delivery.contact_id).where(Delivery.batch_id == batch_id)))
    done.update(c for _, c, _ in held)
    pending = [c for c in claimed.contact_ids or () if c not in done]
    db.session.expunge(claimed)  # nothing reads it again: commits need not expire it
    if campaign.status in (CampaignStatus.CANCELLED, CampaignStatus.FAILED):
        triples = [(d, c, None) for d, c in zip(new_delivery_ids(len(pending)), pending, strict=True)]
        if campaign.status == CampaignStatus.CANCELLED:
            rows.write(triples, SKIPPED, reason=SKIP_CANCELLED)
            outcome.skipped = len(triples)
        else:  # another batch found the template broken; these recipients would fail the same way
            rows.write(triples, FAILED, reason=RENDER_FAILED, error=campaign_render_error(campaign.id))
            outcome.failed = len(triples)
        finish_batch(batch, attempt)
        return outcome
    if optouts.settle(pending):
        db.session.commit()  # one-click opt-outs that came in since planning count now
    decisions = rules.decide(topic, pending, mail.columns if mail is not None else None)
    # Open and click tracking only for those who agreed, and only if the topic allows it (one query).
    tracked = engagement.tracked(topic, [c for c, (_, d) in decisions.items() if d.send]) if mail else set()
    go: list[Triple] = []
    envelopes = []
    # The rows of one query: what a recipient's envelope reads of theirs is read in one call (compose.reader).
    read = mail.reader(next(iter(decisions.values()))[0]) if mail is not None and decisions else None
    skips: dict[str, list[Triple]] = {}
    unrenderable: list[tuple[Triple, str]] = []
    for delivery_id, contact_id in zip(new_delivery_ids(len(pending)), pending, strict=True):
        contact, decision = decisions.get(contact_id, (None, None))
        if decision is None or not decision.send:
            skips.setdefault(decision.reason if decision else rules.SKIP_ERASED, []).append(
                (delivery_id, contact_id, None))
            continue
        triple = (delivery_id, contact_id, decision.event_id)
        if mail is None:
            unrenderable.append((triple, render_error))
            continue
        try:  # this recipient's values may make a part fail or grow too large
            addressed = mail.envelope(contact, delivery_id, contact_id in tracked, read)
        except TemplateError as exc:
            unrenderable.append((triple, _render_error(exc)))
            continue
        go.append(triple)
        envelopes.append(addressed)
    for reason, triples in skips.items():
        rows.write(triples, SKIPPED, reason=reason)
        outcome.skipped += len(triples)
    for triple, error in unrenderable:
        rows.write([triple], FAILED, reason=RENDER_FAILED, error=error)
    outcome.failed += len(unrenderable)
    if mail is None:
        db.session.commit()
        log.warning("campaign %s failed: its template cannot be rendered (%s)", campaign.id, render_error)
        fail_campaign(campaign.id, render_error)
        finish_batch(batch, attempt)
        return outcome
    # Art. 14: whoever got here through another company's list is told where we got the address first.
    _, untold = first_contact.send_due([c for _, c, _ in go])
    if untold:
        kept = [(triple, envelope) for triple, envelope in zip(go, envelopes, strict=True) if triple[1] not in untold]
        rows.write([t for t in go if t[1] in untold], SKIPPED, reason=first_contact.SKIP_NOT_INFORMED)
        outcome.skipped += len(go) - len(kept)
        go, envelopes = [t for t, _ in kept], [envelope for _, envelope in kept]
    db.session.commit()
    last = None
    if envelopes:
        last = _deliver_batch(rows, [(message, envelope, t) for (message, envelope), t in zip(envelopes, go, strict=True)],
                              outcome)
    if outcome.retry_in is not None:
        db.session.execute(update(CampaignBatch).where(CampaignBatch.id == batch_id, CampaignBatch.attempts == attempt)
                           .values(status=QUEUED, lease_until=None))
        db.session.commit()
        return outcome
    finish_batch(batch, attempt, last)
    return outcome


@dataclass(frozen=True)
class _Batch:
    """The ids of a claimed batch (what `finish_batch` needs), kept apart from its row."""

    id: int
    campaign_id: int


def _requests(items: list[tuple], step: int):
    """(message, envelopes, keys, index of the first) per provider request: recipients sharing a message
    (one per language, or their own when rendered whole) go together, at most `step` at a time."""
    groups: dict[int, list[int]] = {}
    for index, (message, _, _) in enumerate(items):
        groups.setdefault(id(message), []).append(index)
    start = 0
    for indexes in groups.values():
        for first in range(0, len(indexes), step):
            chosen = indexes[first:first + step]
            yield (items[chosen[0]][0], [items[i][1] for i in chosen], [items[i][2] for i in chosen], start)
            start += len(chosen)


class _Written:
    """A request's outcome waiting to be written: with the next request's claim, or when the batch finishes
    (one statement and one commit for both)."""

    def __init__(self, rows: _Rows, triples: list[Triple], write) -> None:
        self.rows, self.first, self._write, self._tried = rows, triples[0][0], write, False

    def record(self, released: bool) -> None:
        """Write the rows in the caller's transaction (`released` False: the batch is no longer this attempt's,
        the rows may be there, `unknown`). Called again after a failed commit, it writes them only if that
        commit did not (its answer may have been lost with the connection)."""
        if self._tried and db.session.scalar(select(Delivery.id).where(
                Delivery.id == self.first, Delivery.attempts == self.rows.attempt)) is not None:
            return
        self._tried = True
        self._write(released)


def _deliver_batch(rows: _Rows, items: list[tuple[MessageBatch, Envelope, Triple]], outcome: Outcome) -> _Written | None:
    """Hand a batch's envelopes to the transport in provider-sized requests, each claimed just before its call;
    returns the last request's outcome, still to be written (`finish_batch` writes it).

    Per request: reserve the shared rate, claim it on the batch row
    (`in_flight`, committed, only while the batch is still this attempt's),
    call the provider. The request's rows are written with their outcome in
    the transaction that replaces its claim by the next request's (or that
    finishes the batch): one statement and one commit between two calls.
    Nothing touches the database between the claim's commit and the call, so
    a database fault before the call leaves nothing claimed (sent later, by
    this worker or after the lease) and one after it leaves the claim in place
    (later `unknown`): a recipient is never marked as possibly sent without
    having been handed over. (With a send rate, the next request's slot is
    reserved, and waited for, before the previous outcome is written.)
    """
    transport = get_transport(current_app.config)
    requests = list(_requests(items, max(1, transport.max_batch)))
    order = [t for _, _, triples, _ in requests for t in triples]  # the recipients in sending order

    written = None  # the previous request's outcome, written with this request's claim
    for message, part, triples, start in requests:
        wait_for_rate(len(triples))
        taken = _claim_request(rows, triples, written)
        written = None
        if not taken:
            return None  # the lease ran out and another worker holds the batch now: the rest is theirs
        try:
            results = transport.send(MessageBatch(**{**message.__dict__, "envelopes": part}))
        except TransportError as error:
            reason = error.message[:2000]
            if error.ambiguous:
                _conclude(rows, triples, UNKNOWN, error=reason)
                outcome.unknown += len(triples)
                continue
            if error.retryable and rows.attempt < current_app.config["PC_SEND_ATTEMPTS"]:
                _conclude(rows, [], QUEUED)  # nothing went out: no row, the batch goes back to the queue
                outcome.retry_in = error.retry_after or min(300.0, 2.0 ** rows.attempt)
                return None
            rest = triples + order[start + len(triples):]  # this request's recipients and the ones not yet claimed
            _conclude(rows, rest, FAILED, error=reason)
            outcome.failed += len(rest)
            return None
        sent = [t for t, r in zip(triples, results, strict=False) if r.ok]
        failed = [(t, r) for t, r in zip(triples, results, strict=False) if not r.ok]
        provider_ids = {t[0]: r.provider_message_id for t, r in zip(triples, results, strict=False) if r.ok}

        def write(released: bool, sent=sent, failed=failed, provider_ids=provider_ids) -> None:
            rows.write(sent, SENT, replace=not released, provider_ids=provider_ids)
            for triple, result in failed:
                rows.write([triple], FAILED, replace=not released, error=(result.error or "refused")[:2000])

        written = _Written(rows, triples, write)
        outcome.sent += len(sent)
        outcome.failed += len(failed)
    return written


def _release(rows: _Rows) -> bool:
    """Clear the batch's claim if the batch is still this attempt's (in the caller's transaction)."""
    return db.session.execute(
        update(CampaignBatch).where(CampaignBatch.id == rows.batch_id, CampaignBatch.attempts == rows.attempt)
        .values(in_flight=null()).execution_options(synchronize_session=False)
    ).rowcount == 1


def _conclude(rows: _Rows, triples: list[Triple], status: str, **values) -> None:
    """Write a claimed request's rows with their outcome and clear the claim, committed together."""
    def write() -> None:
        released = _release(rows)
        if status != QUEUED:
            rows.write(triples, status, replace=not released, **values)

    _committed(write)


def _committed(write) -> None:
    """Run `write` and commit; if the database connection died under it, once more on a fresh one.

    For writes that are right to repeat (recording an outcome): a killed
    connection then costs a reconnect, not a claim left in place.
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


def _claim_request(rows: _Rows, triples: list[Triple], written: _Written | None = None) -> bool:
    """Claim one provider request of a campaign batch: its triples written on the batch row (`in_flight`)
    and committed, only while the batch is claimed by this attempt; the previous request's outcome
    (`written`), whose claim this one replaces, is written in the same transaction.

    False if the batch is no longer this attempt's (its lease ran out and
    another worker took it, or it was handed back): that worker skips every
    recipient with a row or in a claim, and this one sends nothing more. If
    the commit fails the provider is not called; a claim the commit may have
    made anyway is given back (only this attempt's), so the recipients are
    sent later rather than reported `unknown`, and the previous outcome is
    written unless that commit wrote it.
    """
    try:
        taken = db.session.execute(
            update(CampaignBatch).where(CampaignBatch.id == rows.batch_id, CampaignBatch.attempts == rows.attempt,
                                        CampaignBatch.status == "claimed")
            .values(in_flight=[list(t) for t in triples]).execution_options(synchronize_session=False)
        ).rowcount == 1
        if written is not None:
            written.record(taken or _release(rows))  # taken: the previous claim was ours, and is replaced
        db.session.commit()
    except DBAPIError:
        db.session.rollback()

        def give_back() -> None:
            released = _release(rows)
            if written is not None:
                written.record(released)

        _committed(give_back)
        raise
    return taken


def _deliver(items: list[tuple[MessageBatch, Envelope, int]], outcome: Outcome, attempt: int, **claim_values) -> None:
    """Hand a system message's envelope to the transport, its row claimed (`sending`, committed) just before.

    A database fault before the call leaves the row queued (sent later), one
    after it leaves it `sending` (later `unknown`).
    """
    transport = get_transport(current_app.config)
    for message, part, ids, _ in list(_requests(items, max(1, transport.max_batch))):
        wait_for_rate(len(ids))
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
                _record(ids, status=UNKNOWN, error=reason)
                outcome.unknown += len(ids)
                continue
            if error.retryable and attempt < current_app.config["PC_SEND_ATTEMPTS"]:
                _record(ids, status=QUEUED, error=reason)
                outcome.retry_in = error.retry_after or min(300.0, 2.0 ** attempt)
                return
            _record(ids, status=FAILED, error=reason)
            outcome.failed += len(ids)
            return
        for delivery_id, result in zip(ids, results, strict=False):
            if result.ok:
                _record([delivery_id], status=SENT, provider_message_id=result.provider_message_id, error=None)
                outcome.sent += 1
            else:
                _record([delivery_id], status=FAILED, error=(result.error or "refused")[:2000])
                outcome.failed += 1


def _record(ids: list[int], **values) -> None:
    _committed(lambda: _set(ids, **values))


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
    """End a campaign whose template cannot render: `failed`, nothing more planned, and the recipients of
    batches no worker holds fail with the same error (a worker holding one finds the campaign failed)."""
    _stop_campaign(campaign_id)
    closed = db.session.execute(
        update(CampaignBatch).where(CampaignBatch.campaign_id == campaign_id, CampaignBatch.status == QUEUED)
        .values(status="done", finished_at=utcnow(), lease_until=None)
        .returning(CampaignBatch.id, CampaignBatch.attempts, CampaignBatch.contact_ids)
        .execution_options(synchronize_session=False)
    ).all()
    for batch_id, attempts, contact_ids in closed:
        done = set(db.session.scalars(select(Delivery.contact_id).where(Delivery.batch_id == batch_id)))
        pending = [c for c in contact_ids or () if c not in done]
        _Rows(campaign_id, batch_id, attempts).write(
            [(d, c, None) for d, c in zip(new_delivery_ids(len(pending)), pending, strict=True)],
            FAILED, reason=RENDER_FAILED, error=error)
    db.session.commit()


def campaign_render_error(campaign_id: int) -> str:
    """The error recorded when the campaign's template failed to render."""
    return db.session.scalar(select(Delivery.error).where(
        Delivery.campaign_id == campaign_id, Delivery.reason == RENDER_FAILED).order_by(Delivery.id).limit(1)) \
        or "the campaign failed: its template cannot be rendered"


def finish_batch(batch: CampaignBatch | _Batch, attempt: int | None = None, written: _Written | None = None) -> None:
    """Mark the batch done; with `attempt`, only while it is still that attempt's (a worker whose lease
    ran out and was taken over leaves the batch to the one that holds it now). `written`: the outcome of
    the attempt's last request, written in the same transaction, which also clears its claim."""
    query = update(CampaignBatch).where(CampaignBatch.id == batch.id)
    if attempt is not None:
        query = query.where(CampaignBatch.attempts == attempt)
    values = {"status": "done", "finished_at": utcnow(), "lease_until": None}
    if written is None:
        db.session.execute(query.values(**values).execution_options(synchronize_session=False))
        db.session.commit()
    else:
        _committed(lambda: written.record(db.session.execute(
            query.values(**values, in_flight=null()).execution_options(synchronize_session=False)).rowcount == 1))
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
