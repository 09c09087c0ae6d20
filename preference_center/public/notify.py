"""Transactional mail of the recipient pages: subscription confirmation and data-rights step-up."""
from __future__ import annotations

import logging

from flask import current_app, render_template
from flask_babel import force_locale, get_locale
from flask_babel import gettext as _

from .. import links
from ..mail import Envelope, MessageBatch, TransportError, get_transport
from ..models import ConsentEvent, Contact

log = logging.getLogger(__name__)


def send(to: str, subject: str, text: str) -> bool:
    """Send one system mail to one address now; False (and logged) if the transport failed."""
    batch = MessageBatch(from_email=current_app.config["PC_FROM_EMAIL"], subject=subject, text=text,
                         envelopes=[Envelope(to=to)], categories=["system"])
    try:
        results = get_transport(current_app.config).send(batch)
    except TransportError as exc:
        log.warning("could not send %r: %s", subject, exc.message)
        return False
    return all(result.ok for result in results)


def _locale_for(contact: Contact) -> str:
    wanted = (contact.locale or "").split("-")[0]
    return wanted if wanted in current_app.config.get("PC_LOCALES", ["en"]) else str(get_locale())


def send_confirmation(contact: Contact, pending: list[ConsentEvent]) -> bool:
    """Email the double opt-in link for these pending grants."""
    token = links.make(links.CONFIRM, contact, [event.id for event in pending])
    url = links.url("/confirm/", token)
    hours = current_app.config["PC_CONFIRM_MAX_AGE_HOURS"]
    with force_locale(_locale_for(contact)):
        subject = _("Please confirm your subscription")
        text = render_template("public/email/confirm.txt", url=url, hours=hours,
                               postal_address=current_app.config["PC_POSTAL_ADDRESS"])
    return send(contact.email, subject, text)


def step_up_url(contact: Contact, action: str) -> str:
    """A fresh, short-lived link that confirms `action` (export or erase)."""
    page = links.make(links.PREFERENCES, contact)
    step = links.make(links.STEP_UP, contact, action)
    return f"{current_app.config['PC_BASE_URL']}/p/{page}/data/confirm/{step}"


def send_step_up(contact: Contact, action: str) -> bool:
    """Email the link that confirms a data export or an erasure."""
    hours = current_app.config["PC_STEPUP_MAX_AGE_HOURS"]
    with force_locale(_locale_for(contact)):
        subject = _("Confirm the download of your data") if action == "export" else _("Confirm the erasure of your data")
        text = render_template("public/email/step_up.txt", url=step_up_url(contact, action), action=action,
                               hours=hours, postal_address=current_app.config["PC_POSTAL_ADDRESS"])
    return send(contact.email, subject, text)
