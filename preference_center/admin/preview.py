"""Campaign previews and test sends: the real rendering path, one recipient at a time.

The worker's own rendering and filling in (`compose.CampaignMail.fill`), so a preview shows
exactly what the recipient gets, and its limits hold here too: a template that runs
past its time budget or builds too much text is refused in about the budget
(2 s), with the reason, instead of holding a web thread.
"""
from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from flask_babel import gettext as _

from .. import compose
from ..mail import Envelope, MessageBatch, TemplateError, TransportError, get_transport
from ..mail.base import envelope_headers, substitute
from ..mail.personal import SAMPLE, contact_values
from ..models import Contact, Topic

TEST_PREFIX = "[TEST] "


@dataclass
class Rendered:
    to: str
    subject: str
    html: str | None
    text: str
    headers: dict


class PreviewError(Exception):
    """The campaign cannot be rendered or sent as a test; the message says why."""


def _inert_links(campaign_id: int | None) -> tuple[str, str]:
    # Test mail goes to staff: its links must not change any real contact's choices.
    base = current_app.config["PC_BASE_URL"]
    target = f"{base}/admin/campaigns/{campaign_id}" if campaign_id else f"{base}/admin/campaigns"
    return f"{target}?test-link=unsubscribe", f"{target}?test-link=preferences"


def _mail(topic: Topic, subject: str, html: str, text: str, campaign_id: int | None) -> compose.CampaignMail:
    """The campaign compiled by the worker's own code, under the sandbox's time and size limits."""
    try:
        return compose.CampaignMail(topic, subject, html, text, campaign_id or 0)
    except TemplateError as exc:
        raise PreviewError(_reason(exc)) from exc


def _reason(exc: TemplateError) -> str:
    return f"{exc.field}: {exc}" if exc.field else str(exc)


def render_for(topic: Topic, subject: str, html: str, text: str, contact: Contact | None,
               campaign_id: int | None = None) -> Rendered:
    """The message exactly as `contact` would get it (a sample recipient when None)."""
    mail = _mail(topic, subject, html, text, campaign_id)
    try:
        if contact is not None and contact.email:
            batch, envelope = mail.envelope(contact, 0)
        else:
            unsubscribe, preferences = _inert_links(campaign_id)
            batch, subs = mail.fill(SAMPLE, unsubscribe, preferences, None)
            envelope = Envelope(to=SAMPLE["email"], substitutions=subs,
                                headers={"List-Unsubscribe": f"<{unsubscribe}>"})
    except TemplateError as exc:
        raise PreviewError(_reason(exc)) from exc
    subs = envelope.substitutions
    return Rendered(
        to=envelope.to,
        subject=substitute(batch.subject, subs),
        html=substitute(batch.html, subs) if batch.html is not None else None,
        text=substitute(batch.text, subs),
        headers=envelope_headers(batch, envelope),
    )


def send_test(topic: Topic, subject: str, html: str, text: str, *, to: str, contact: Contact | None,
              campaign_id: int | None) -> str:
    """Send one '[TEST]' copy to a staff address, now, through the configured transport.

    Filled in with `contact`'s fields (a sample recipient's when None), in their language; its
    links never point at a real subscription. Returns the provider message id.
    """
    mail = _mail(topic, TEST_PREFIX + subject, html, text, campaign_id)
    unsubscribe, preferences = _inert_links(campaign_id)
    values = contact_values(contact) if contact is not None else SAMPLE
    try:
        shared, subs = mail.fill(values, unsubscribe, preferences, contact.locale if contact is not None else None)
    except TemplateError as exc:
        raise PreviewError(_reason(exc)) from exc
    batch = MessageBatch(**{**shared.__dict__, "envelopes": [Envelope(
        to=to, substitutions=subs, headers={"List-Unsubscribe": f"<{unsubscribe}>"},
        custom_args={"test": "1", "campaign_id": str(campaign_id or 0)})]})
    try:
        results = get_transport(current_app.config).send(batch)
    except TransportError as exc:
        raise PreviewError(_("the mail transport refused the test: %(reason)s", reason=exc.message)) from exc
    result = results[0]
    if not result.ok:
        raise PreviewError(_("the test could not be sent: %(reason)s", reason=result.error))
    return result.provider_message_id or ""
