"""Erasure at the mail provider: with SendGrid, an erased address is deleted from its contacts and kept on its
global suppression list (so nothing sent through another path reaches it).

`queue` (called by the erasure, in its transaction) stores the address in one
`ProviderErasure` row, the only place it survives the erasure; once the
transaction commits the provider is asked at once, and `run_pending` (every
scheduler tick) retries until it accepts. The row is deleted as soon as the
provider has accepted both calls. Other transports keep nothing to erase.
"""
from __future__ import annotations

import json
import logging

from celery import shared_task
from flask import current_app
from python_http_client.exceptions import HTTPError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from .extensions import db
from .models import ProviderErasure
from .privacy_logging import mask

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 100


def applies(config) -> bool:
    return config.get("PC_MAIL_TRANSPORT") == "sendgrid" and bool(config.get("PC_SENDGRID_API_KEY"))


def queue(address: str) -> None:
    """Remember `address` for erasure at the provider; asked once the erasure commits."""
    config = current_app.config
    if not applies(config):
        return
    row = ProviderErasure(email=address, attempts=0)
    db.session.add(row)
    db.session.flush()
    from .commands._tx import after_commit

    engine, row_id, settings = db.engine, row.id, dict(config)
    after_commit(lambda: _attempt(engine, settings, row_id))


def run_pending(limit: int = 100) -> int:
    """Ask the provider to erase every waiting address (the scheduler's retry); how many it accepted."""
    if not applies(current_app.config):
        return 0
    ids = db.session.scalars(select(ProviderErasure.id).where(ProviderErasure.attempts < MAX_ATTEMPTS)
                             .order_by(ProviderErasure.id).limit(limit)).all()
    db.session.commit()
    engine, settings = db.engine, dict(current_app.config)
    return sum(_attempt(engine, settings, row_id) for row_id in ids)


def _attempt(engine, config: dict, row_id: int) -> bool:
    """One try for one row, in its own session (it runs after the erasure's commit)."""
    with Session(engine) as session:
        row = session.get(ProviderErasure, row_id)
        if row is None:
            return False
        try:
            erase_at_sendgrid(config, row.email)
        except Exception as exc:  # noqa: BLE001 - any failure: kept for the next tick
            row.attempts += 1
            row.last_error = mask(f"{type(exc).__name__}: {exc}")[:1000]
            session.commit()
            log.warning("provider erasure %s failed (attempt %d): %s", row_id, row.attempts, row.last_error)
            return False
        session.execute(delete(ProviderErasure).where(ProviderErasure.id == row_id))
        session.commit()
        return True


def erase_at_sendgrid(config: dict, address: str) -> None:
    """Add the address to SendGrid's global suppressions and delete it from its Marketing contacts."""
    import sendgrid

    client = sendgrid.SendGridAPIClient(api_key=config["PC_SENDGRID_API_KEY"],
                                        host=config["PC_SENDGRID_API_HOST"].rstrip("/")).client
    timeout = config["PC_SENDGRID_TIMEOUT"]
    client.asm.suppressions._("global").post(request_body={"recipient_emails": [address]}, timeout=timeout)
    try:
        found = client.marketing.contacts.search.emails.post(request_body={"emails": [address]}, timeout=timeout)
    except HTTPError as exc:
        if exc.status_code == 404:  # no Marketing contact holds the address: nothing more to delete
            return
        raise
    result = json.loads(found.body or b"{}").get("result") or {}
    ids = [entry["contact"]["id"] for entry in result.values() if isinstance(entry, dict) and entry.get("contact")]
    if ids:
        client.marketing.contacts.delete(query_params={"ids": ",".join(ids)}, timeout=timeout)


@shared_task(name="preference_center.tasks.erase_at_provider")
def erase_at_provider() -> int:
    """Retry erasures the provider has not accepted yet."""
    return run_pending()
