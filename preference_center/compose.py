"""Turn a campaign or a system message into a MessageBatch for the transport.

Staff-authored templates render once per batch in the sandbox, with
placeholders where per-recipient values go; the transport substitutes them
per envelope (SendGrid does it on its side). The footer with the visible
unsubscribe and preferences links and the postal address is ours, not staff's.

The same rendering checks a template when staff save, edit or schedule it
(`check_campaign`, `check_system`): it runs with the context the worker uses
and is filled in for a sample recipient, so a template that fails or goes
beyond the sandbox's limits is refused at the door, not found by the worker.
Filling in a real recipient's values can still make a part too large (a long
name repeated many times); `PartSizes` measures that per envelope without
building the message.
"""
from __future__ import annotations

from dataclasses import dataclass
from html import escape

from flask import current_app

from . import links
from .mail import Envelope, MessageBatch, TemplateError, render
from .mail.render import MAX_OUTPUT, deadline_from_now
from .models import Contact, Topic

NAME, NAME_HTML = "-pc_name-", "-pc_name_html-"
UNSUB, PREFS = "-pc_unsub-", "-pc_prefs-"
PLACEHOLDERS = (NAME, NAME_HTML, UNSUB, PREFS)
SAMPLE_NAME = "Sample Recipient"


def _context(html: bool, data: dict | None = None) -> dict:
    return {
        "contact": {"name": NAME_HTML if html else NAME},
        "unsubscribe_url": UNSUB,
        "preferences_url": PREFS,
        "data": data or {},
    }


def _render(field: str, source: str, context: dict, deadline: float, html: bool = False) -> str:
    """Render one part; a TemplateError names the part (subject, text or html)."""
    try:
        return render(source, context, html=html, deadline=deadline)
    except TemplateError as exc:
        exc.field = field
        raise


def marketing_batch(topic: Topic, subject: str, html: str, text: str, campaign_id: int) -> MessageBatch:
    """Render a campaign once; envelopes are added per recipient. Raises TemplateError (with .field)."""
    config = current_app.config
    address = config["PC_POSTAL_ADDRESS"]
    deadline = deadline_from_now()  # one time budget for the whole message
    text_body = _render("text", text or "", _context(False), deadline) + (
        f"\n\n--\nYou get this because you are subscribed to {topic.name}.\n"
        f"Unsubscribe: {UNSUB}\nManage your preferences: {PREFS}\n{address}\n"
    )
    html_body = None
    if html:
        html_body = _render("html", html, _context(True), deadline, html=True) + (
            '<hr><p style="font-size:12px;color:#555">'
            f"You get this because you are subscribed to {escape(topic.name)}. "
            f'<a href="{UNSUB}">Unsubscribe</a> · <a href="{PREFS}">Manage your preferences</a><br>'
            f"{escape(address)}</p>"
        )
    return MessageBatch(
        from_email=config["PC_FROM_EMAIL"],
        subject=_render("subject", subject, _context(False), deadline),
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


def _system_content(topic: Topic, subject: str, html: str, text: str, data: dict) -> MessageBatch:
    """A system message rendered, without recipients: no unsubscribe header, and a line saying why it is sent."""
    config = current_app.config
    deadline = deadline_from_now()
    why = (f"You get this {topic.name} message because it is part of a service you use; "
           "it is sent whatever your marketing preferences are.")
    text_body = _render("text", text or "", _context(False, data), deadline) + (
        f"\n\n--\n{why}\n{config['PC_POSTAL_ADDRESS']}\n")
    html_body = None
    if html:
        html_body = _render("html", html, _context(True, data), deadline, html=True) + (
            f'<hr><p style="font-size:12px;color:#555">{escape(why)}<br>{escape(config["PC_POSTAL_ADDRESS"])}</p>')
    return MessageBatch(
        from_email=config["PC_FROM_EMAIL"],
        subject=_render("subject", subject, _context(False, data), deadline),
        text=text_body,
        html=html_body,
        categories=[f"system-{topic.key}"[:255]],
    )


def _system_substitutions(name: str, preferences: str) -> dict[str, str]:
    # A system mail cannot be unsubscribed from: a template's unsubscribe
    # link leads to the preference page, which says why.
    return {NAME: name, NAME_HTML: escape(name), PREFS: preferences, UNSUB: preferences}


def system_batch(topic: Topic, contact: Contact, subject: str, html: str, text: str, data: dict,
                 delivery_id: int) -> MessageBatch:
    """A system message for one contact; raises TemplateError (with .field) if it cannot be rendered for them."""
    batch = _system_content(topic, subject, html, text, data)
    envelope = Envelope(to=contact.email,
                        substitutions=_system_substitutions(contact.name or "", links.preferences_url(contact)),
                        custom_args={"delivery_id": str(delivery_id)})
    PartSizes.of(batch).check(envelope.substitutions)
    batch.envelopes = [envelope]
    return batch


# -- sizes after substitution, and the checks staff get at the door ------------------------

@dataclass(frozen=True)
class PartSizes:
    """Each rendered part's length and how often each placeholder occurs in it, measured once per batch."""

    parts: tuple[tuple[str, int, tuple[tuple[str, int], ...]], ...]
    _room: int | None = None  # the longest value every placeholder may take without any part going over

    @classmethod
    def of(cls, batch: MessageBatch) -> PartSizes:
        parts = []
        for field, body in (("subject", batch.subject), ("text", batch.text), ("html", batch.html)):
            if body:
                counts = tuple((key, n) for key in PLACEHOLDERS if (n := body.count(key)))
                parts.append((field, len(body), counts))
        return cls(tuple(parts))

    def check(self, substitutions: dict[str, str]) -> None:
        """Raise TemplateError (with .field) if a part filled in with these values is longer than the limit."""
        # Fast path (every recipient of a batch comes here): no part can grow past the limit if even
        # the most placeholders of any part, each filled with this recipient's longest value, fit.
        if self.parts:
            longest = max(map(len, substitutions.values()), default=0)
            if self._room is None:
                object.__setattr__(self, "_room", min((MAX_OUTPUT - length) // max(1, sum(n for _, n in counts))
                                                      for _, length, counts in self.parts))
            if longest <= self._room:
                return
        for field, length, counts in self.parts:
            size = length + sum(n * (len(substitutions.get(key, key)) - len(key)) for key, n in counts)
            if size > MAX_OUTPUT:
                error = TemplateError(f"filled in for this recipient the {field} would be {size:,} characters, "
                                      f"more than the {MAX_OUTPUT:,} allowed")
                error.field = field
                raise error


def _sample_substitutions() -> dict[str, str]:
    """Values of a made-up recipient, with links as long as real ones."""
    sample = Contact(id=2**31 - 1, token_version=1, name=SAMPLE_NAME, email="recipient@example.com")
    preferences = links.preferences_url(sample)
    return {NAME: SAMPLE_NAME, NAME_HTML: escape(SAMPLE_NAME), UNSUB: links.unsubscribe_url(sample, 2**31 - 1),
            PREFS: preferences}


def check_campaign(topic: Topic, subject: str, html: str, text: str) -> None:
    """Render a campaign as the worker will and fill it in for a sample recipient; TemplateError names the part."""
    PartSizes.of(marketing_batch(topic, subject, html, text, 0)).check(_sample_substitutions())


def check_system(topic: Topic, subject: str, html: str, text: str, data: dict) -> None:
    """Render a system message with its own data, as the worker will, for a sample recipient."""
    sample = _sample_substitutions()
    PartSizes.of(_system_content(topic, subject, html, text, data)).check(
        _system_substitutions(SAMPLE_NAME, sample[PREFS]))
