"""Campaign previews and test sends: the real rendering path, one recipient at a time.

The worker's own rendering, so its limits hold here too: a template that runs
past its time budget or builds too much text is refused in about the budget
(2 s), with the reason, instead of holding a web thread.
"""
from __future__ import annotations

from dataclasses import dataclass
from html import escape

from flask import current_app

from .. import compose
from ..mail import Envelope, MessageBatch, TemplateError, TransportError, get_transport
from ..mail.base import envelope_headers, substitute
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


def _inert_links(campaign_id: int | None) -> dict:
    # Test mail goes to staff: its links must not change any real contact's choices.
    base = current_app.config["PC_BASE_URL"]
    target = f"{base}/admin/campaigns/{campaign_id}" if campaign_id else f"{base}/admin/campaigns"
    return {compose.UNSUB: f"{target}?test-link=unsubscribe", compose.PREFS: f"{target}?test-link=preferences"}


def render_for(topic: Topic, subject: str, html: str, text: str, contact: Contact | None,
               campaign_id: int | None = None) -> Rendered:
    """The message exactly as `contact` would get it (a sample recipient when None)."""
    batch = _render(topic, subject, html, text, campaign_id)
    if contact is not None and contact.email:
        envelope = compose.marketing_envelope(contact, topic, 0, campaign_id or 0)
    else:
        name = compose.SAMPLE_NAME
        envelope = Envelope(to="recipient@example.com",
                            substitutions={compose.NAME: name, compose.NAME_HTML: escape(name),
                                           **_inert_links(campaign_id)},
                            headers={"List-Unsubscribe": f"<{_inert_links(campaign_id)[compose.UNSUB]}>"})
    subs = envelope.substitutions
    _check_size(batch, subs)
    return Rendered(
        to=envelope.to,
        subject=substitute(batch.subject, subs),
        html=substitute(batch.html, subs) if batch.html is not None else None,
        text=substitute(batch.text, subs),
        headers=envelope_headers(batch, envelope),
    )


def _render(topic: Topic, subject: str, html: str, text: str, campaign_id: int | None) -> MessageBatch:
    """The campaign rendered by the worker's own code, under the sandbox's time and size limits."""
    try:
        return compose.marketing_batch(topic, subject, html, text, campaign_id or 0)
    except TemplateError as exc:
        raise PreviewError(f"{exc.field}: {exc}" if exc.field else str(exc)) from exc


def _check_size(batch: MessageBatch, substitutions: dict) -> None:
    try:
        compose.PartSizes.of(batch).check(substitutions)
    except TemplateError as exc:
        raise PreviewError(f"{exc.field}: {exc}") from exc


def send_test(topic: Topic, subject: str, html: str, text: str, *, to: str, contact: Contact | None,
              campaign_id: int | None) -> str:
    """Send one '[TEST]' copy to a staff address, now, through the configured transport.

    Filled in with `contact`'s name when given; its links never point at a real
    subscription. Returns the provider message id.
    """
    batch = _render(topic, TEST_PREFIX + subject, html, text, campaign_id)
    name = (contact.name if contact is not None else None) or compose.SAMPLE_NAME
    links = _inert_links(campaign_id)
    _check_size(batch, {compose.NAME: name, compose.NAME_HTML: escape(name), **links})
    batch.envelopes = [Envelope(to=to, substitutions={compose.NAME: name, compose.NAME_HTML: escape(name), **links},
                                headers={"List-Unsubscribe": f"<{links[compose.UNSUB]}>"},
                                custom_args={"test": "1", "campaign_id": str(campaign_id or 0)})]
    try:
        results = get_transport(current_app.config).send(batch)
    except TransportError as exc:
        raise PreviewError(f"the mail transport refused the test: {exc.message}") from exc
    result = results[0]
    if not result.ok:
        raise PreviewError(f"the test could not be sent: {result.error}")
    return result.provider_message_id or ""
