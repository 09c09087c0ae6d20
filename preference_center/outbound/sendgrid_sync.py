"""SendGrid sync: our opt-outs and suppressions pushed into SendGrid, and SendGrid's own lists pulled in once.

Push (when PC_SENDGRID_SYNC=1 and an API key is set): the ledger hook queues a
row in `sendgrid_sync`, in the transaction of the change, for
- a withdrawal or objection on a topic mapped to an unsubscribe group
  (`sendgrid_group_id`): that group;
- an opt-out from all marketing, an objection, or a `marketing` suppression
  (spam complaint): every mapped group of a marketing topic;
- an `all` suppression (hard bounce, erasure): the global unsubscribe list.
The worker pushes due rows through the official client, batched (up to
`BATCH` addresses per call, one call per group), retried with backoff.
Adding an address SendGrid holds already changes nothing there, so a retry or a
worker that died after a call and pushes again is harmless (idempotent).
A pushed row keeps no address. Changes that came from SendGrid
(`sendgrid-import`) are not pushed back.

Pull (`preference-center sendgrid pull`): bounces, spam reports, global
unsubscribes and the mapped groups' unsubscribes, read page by page and handed
to `commands.sendgrid.import_lists` (suppressions and ledger events with
source `sendgrid-import`; running it again changes nothing).
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

import sendgrid
from flask import current_app
from python_http_client.exceptions import HTTPError
from sqlalchemy import insert, select, update

from .. import ledger
from ..extensions import db
from ..models import SendGridSync, Topic, utcnow
from ..sqlutil import one_of

log = logging.getLogger(__name__)
BATCH = 1000
PAGE = 500
IMPORT_SOURCE = "sendgrid-import"
GROUP, GLOBAL = "group", "global"


def enabled() -> bool:
    config = current_app.config
    return bool(config.get("PC_SENDGRID_SYNC") and config.get("PC_SENDGRID_API_KEY"))


def client() -> sendgrid.SendGridAPIClient:
    config = current_app.config
    return sendgrid.SendGridAPIClient(api_key=config["PC_SENDGRID_API_KEY"],
                                      host=config["PC_SENDGRID_API_HOST"].rstrip("/"))


def _marketing_groups() -> list[int]:
    return list(db.session.scalars(select(Topic.sendgrid_group_id).where(
        Topic.kind == "marketing", Topic.sendgrid_group_id.is_not(None)).distinct()))


def ledger_events(pairs: list) -> None:
    """Queue the pushes that just-appended ledger events call for (same transaction)."""
    if not enabled():
        return
    rows, now, groups, topic_groups = [], utcnow(), None, {}
    for contact, event in pairs:
        email = contact.email if contact is not None else None
        if not email or event.source == IMPORT_SOURCE:
            continue
        targets: list[tuple[str, int | None]] = []
        if event.action in (ledger.WITHDRAW, ledger.OBJECT) or event.action == ledger.SUPPRESS:
            scope = (event.detail or {}).get("scope") if event.action == ledger.SUPPRESS else None
            if scope == "all":
                targets.append((GLOBAL, None))
            elif event.scope == ledger.TOPIC and event.topic_id is not None:
                if event.topic_id not in topic_groups:
                    topic_groups[event.topic_id] = db.session.scalar(
                        select(Topic.sendgrid_group_id).where(Topic.id == event.topic_id))
                if topic_groups[event.topic_id] is not None:
                    targets.append((GROUP, topic_groups[event.topic_id]))
            else:  # all marketing, or a marketing suppression
                groups = _marketing_groups() if groups is None else groups
                targets += [(GROUP, group) for group in groups]
        rows += [{"target": target, "group_id": group, "email": email, "ledger_event_id": event.id,
                  "status": "pending", "attempts": 0, "next_attempt_at": now, "created_at": now}
                 for target, group in targets]
    if rows:
        db.session.execute(insert(SendGridSync.__table__), rows)


@dataclass
class Push:
    pushed: int = 0
    calls: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def backoff(attempts: int) -> float:
    return min(6 * 3600.0, 30.0 * 2 ** min(max(attempts - 1, 0), 20))


def push(now: dt.datetime | None = None, api=None) -> Push:
    """Push every due row, one call per group and batch of addresses; failures wait their backoff."""
    now, api, result = now or utcnow(), api or client(), Push()
    rows = db.session.execute(
        select(SendGridSync.id, SendGridSync.target, SendGridSync.group_id, SendGridSync.email)
        .where(SendGridSync.status == "pending", SendGridSync.next_attempt_at <= now)
        .order_by(SendGridSync.id)).all()
    by_target: dict[tuple[str, int | None], list] = {}
    for row in rows:
        by_target.setdefault((row.target, row.group_id), []).append(row)
    db.session.commit()  # no transaction stays open across the calls
    for (target, group), items in by_target.items():
        for start in range(0, len(items), BATCH):
            part = items[start:start + BATCH]
            emails = sorted({r.email for r in part if r.email})
            ids = [r.id for r in part]
            try:
                if emails:
                    body = {"recipient_emails": emails}
                    timeout = float(current_app.config["PC_SENDGRID_TIMEOUT"])
                    if target == GLOBAL:
                        api.client.asm.suppressions._("global").post(request_body=body, timeout=timeout)
                    else:
                        api.client.asm.groups._(group).suppressions.post(request_body=body, timeout=timeout)
                    result.calls += 1
            except (HTTPError, OSError) as exc:
                error = f"SendGrid answered {getattr(exc, 'status_code', '')}: {exc}"[:2000]
                result.failed += len(ids)
                result.errors.append(error)
                attempts = 1 + max(db.session.scalars(select(SendGridSync.attempts).where(
                    one_of(SendGridSync.__table__.c.id, ids))).all())
                db.session.execute(update(SendGridSync).where(one_of(SendGridSync.__table__.c.id, ids)).values(
                    attempts=attempts, last_error=error,
                    next_attempt_at=now + dt.timedelta(seconds=backoff(attempts))))
            else:
                result.pushed += len(ids)
                db.session.execute(update(SendGridSync).where(one_of(SendGridSync.__table__.c.id, ids)).values(
                    status="done", email=None, done_at=utcnow(), last_error=None))
            db.session.commit()
    return result


# -- pull -----------------------------------------------------------------------------

@dataclass
class Lists:
    bounces: list[str] = field(default_factory=list)
    spam_reports: list[str] = field(default_factory=list)
    unsubscribes: list[str] = field(default_factory=list)
    groups: dict[int, list[str]] = field(default_factory=dict)


def _pages(endpoint) -> list[str]:
    emails, offset = [], 0
    while True:
        response = endpoint.get(query_params={"limit": PAGE, "offset": offset})
        page = response.to_dict if hasattr(response, "to_dict") else None
        items = page if isinstance(page, list) else []
        emails += [item["email"] if isinstance(item, dict) else item for item in items]
        if len(items) < PAGE:
            return emails
        offset += PAGE


def pull(api=None) -> Lists:
    """SendGrid's bounces, spam reports, global unsubscribes and mapped groups' unsubscribes."""
    api = api or client()
    lists = Lists(bounces=_pages(api.client.suppression.bounces), spam_reports=_pages(api.client.suppression.spam_reports),
                  unsubscribes=_pages(api.client.suppression.unsubscribes))
    for group in _marketing_groups():
        response = api.client.asm.groups._(group).suppressions.get()
        lists.groups[group] = [e for e in (response.to_dict or []) if isinstance(e, str)]
    return lists
