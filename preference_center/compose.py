"""Turn a campaign or a system message into a MessageBatch for the transport.

Staff-authored templates render once per batch in the sandbox, with
placeholders where per-recipient values go; the transport substitutes them
per envelope (SendGrid does it on its side). The footer with the visible
unsubscribe and preferences links and the postal address is ours, not staff's.
"""
from __future__ import annotations

from html import escape

from flask import current_app

from . import links
from .mail import Envelope, MessageBatch, render
from .models import Contact, Topic

NAME, NAME_HTML = "-pc_name-", "-pc_name_html-"
UNSUB, PREFS = "-pc_unsub-", "-pc_prefs-"


def _context(html: bool, data: dict | None = None) -> dict:
    return {
        "contact": {"name": NAME_HTML if html else NAME},
        "unsubscribe_url": UNSUB,
        "preferences_url": PREFS,
        "data": data or {},
    }


def marketing_batch(topic: Topic, subject: str, html: str, text: str, campaign_id: int) -> MessageBatch:
    """Render a campaign once; envelopes are added per recipient."""
    config = current_app.config
    address = config["PC_POSTAL_ADDRESS"]
    text_body = render(text or "", _context(False)) + (
        f"\n\n--\nYou get this because you are subscribed to {topic.name}.\n"
        f"Unsubscribe: {UNSUB}\nManage your preferences: {PREFS}\n{address}\n"
    )
    html_body = None
    if html:
        html_body = render(html, _context(True), html=True) + (
            '<hr><p style="font-size:12px;color:#555">'
            f"You get this because you are subscribed to {escape(topic.name)}. "
            f'<a href="{UNSUB}">Unsubscribe</a> · <a href="{PREFS}">Manage your preferences</a><br>'
            f"{escape(address)}</p>"
        )
    return MessageBatch(
        from_email=config["PC_FROM_EMAIL"],
        subject=render(subject, _context(False)),
        text=text_body,
        html=html_body,
        headers={"List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
        categories=[f"campaign-{campaign_id}", f"topic-{topic.key}"[:255]],
    )


def marketing_envelope(contact: Contact, topic: Topic, delivery_id: int, campaign_id: int) -> Envelope:
    """One recipient: their own links, one-click header and opaque ids."""
    unsubscribe = links.unsubscribe_url(contact, topic.id)
    mailto = current_app.config.get("PC_UNSUBSCRIBE_MAILTO")
    header = f"<{unsubscribe}>" + (f", <mailto:{mailto}?subject=unsubscribe-{delivery_id}>" if mailto else "")
    name = contact.name or ""
    return Envelope(
        to=contact.email,
        substitutions={NAME: name, NAME_HTML: escape(name), UNSUB: unsubscribe,
                       PREFS: links.preferences_url(contact)},
        headers={"List-Unsubscribe": header},
        custom_args={"delivery_id": str(delivery_id), "campaign_id": str(campaign_id)},
    )


def system_batch(topic: Topic, contact: Contact, subject: str, html: str, text: str, data: dict,
                 delivery_id: int) -> MessageBatch:
    """A system message: no unsubscribe header, and a line saying why it is sent."""
    config = current_app.config
    why = (f"You get this {topic.name} message because it is part of a service you use; "
           "it is sent whatever your marketing preferences are.")
    text_body = render(text or "", _context(False, data)) + f"\n\n--\n{why}\n{config['PC_POSTAL_ADDRESS']}\n"
    html_body = None
    if html:
        html_body = render(html, _context(True, data), html=True) + (
            f'<hr><p style="font-size:12px;color:#555">{escape(why)}<br>{escape(config["PC_POSTAL_ADDRESS"])}</p>')
    name = contact.name or ""
    preferences = links.preferences_url(contact)
    return MessageBatch(
        from_email=config["PC_FROM_EMAIL"],
        subject=render(subject, _context(False, data)),
        text=text_body,
        html=html_body,
        categories=[f"system-{topic.key}"[:255]],
        # A system mail cannot be unsubscribed from: a template's unsubscribe
        # link leads to the preference page, which says why.
        envelopes=[Envelope(to=contact.email,
                            substitutions={NAME: name, NAME_HTML: escape(name), PREFS: preferences,
                                           UNSUB: preferences},
                            custom_args={"delivery_id": str(delivery_id)})],
    )
