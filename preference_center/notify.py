"""Mail to one person about their own data: confirmation of a subscription, step-up links, request outcomes.

Each notice is built while the transaction is open (it needs the contact's
id and token version) and sent by `later` once the change has committed.
"""
from __future__ import annotations

import logging

from flask import current_app, render_template
from flask_babel import force_locale, get_locale
from flask_babel import gettext as _

from . import branding, links
from .mail import Envelope, MessageBatch, TransportError, get_transport
from .models import ConsentEvent, Contact

log = logging.getLogger(__name__)


def send(to: str, subject: str, text: str, sender: str | None = None) -> bool:
    """Send one system mail to one address now; False (and logged) if the transport failed."""
    batch = MessageBatch(from_email=sender or branding.current().from_email, subject=subject, text=text,
                         envelopes=[Envelope(to=to)], categories=["system"])
    try:
        results = get_transport(current_app.config).send(batch)
    except TransportError as exc:
        log.warning("could not send %r: %s", subject, exc.message)
        return False
    return all(result.ok for result in results)


def locale_for(contact: Contact) -> str:
    """The language to write to a contact in: theirs if we have it, else the current one."""
    wanted = (contact.locale or "").split("-")[0]
    return wanted if wanted in current_app.config["PC_LOCALES"] else str(get_locale())


def confirmation(contact: Contact, pending: list[ConsentEvent]) -> tuple[str, str, str]:
    """(to, subject, text) of the double opt-in mail for these pending grants."""
    token = links.make(links.CONFIRM, contact, [event.id for event in pending])
    url = links.url("/confirm/", token)
    hours = current_app.config["PC_CONFIRM_MAX_AGE_HOURS"]
    with force_locale(locale_for(contact)):
        subject = _("Please confirm your subscription")
        text = render_template("public/email/confirm.txt", url=url, hours=hours,
                               postal_address=branding.current().postal_address)
    return contact.email, subject, text


def send_confirmation(contact: Contact, pending: list[ConsentEvent]) -> bool:
    """Email the double opt-in link for these pending grants now."""
    return send(*confirmation(contact, pending))


def request_outcome(contact: Contact, subject: str, text: str) -> tuple[str, str, str]:
    """(to, subject, text) of a notice about one of the person's data requests, with their data-page link."""
    page = links.make(links.PREFERENCES, contact)
    url = f"{current_app.config['PC_BASE_URL']}/p/{page}/data"
    body = f"{text}\n\n{url}\n\n{branding.current().postal_address}\n"
    return contact.email, subject, body


def later(message: tuple[str, str, str]) -> None:
    """Send `message` once the current transaction commits."""
    from .commands._tx import after_commit

    sender = branding.current().from_email  # read now: nothing touches the database after the commit
    after_commit(lambda: send(*message, sender=sender))


def step_up_url(contact: Contact, action: str) -> str:
    """A fresh, short-lived link that confirms `action` (export or erase)."""
    page = links.make(links.PREFERENCES, contact)
    step = links.make(links.STEP_UP, contact, action)
    return f"{current_app.config['PC_BASE_URL']}/p/{page}/data/confirm/{step}"


def step_up(contact: Contact, action: str) -> tuple[str, str, str]:
    """(to, subject, text) of the mail whose link confirms a data export or an erasure."""
    hours = current_app.config["PC_STEPUP_MAX_AGE_HOURS"]
    with force_locale(locale_for(contact)):
        subject = _("Confirm the download of your data") if action == "export" else _("Confirm the erasure of your data")
        text = render_template("public/email/step_up.txt", url=step_up_url(contact, action), action=action,
                               hours=hours, postal_address=branding.current().postal_address)
    return contact.email, subject, text


def send_step_up(contact: Contact, action: str) -> bool:
    """Email the link that confirms a data export or an erasure now."""
    return send(*step_up(contact, action))


def later_step_up(contact: Contact, action: str) -> None:
    """Email the step-up link once the current transaction commits."""
    later(step_up(contact, action))
