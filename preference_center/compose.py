"""Turn a campaign or a system message into a MessageBatch for the transport.

A campaign is compiled once per batch (`CampaignMail`, see `mail/personal.py`):
the parts of its templates that do not depend on the recipient render once,
with placeholders where per-recipient values go (every contact field, with
filters and defaults, evaluated in the sandbox per recipient); the transport
substitutes them per envelope (SendGrid does it on its side). A template whose
use of the contact cannot be cut that way renders whole per recipient. Preview,
test send and real mail go through the same `fill`, so they show the same text.
The footer with the visible unsubscribe and preferences links and the postal
address is ours, not staff's, in the recipient's language.

The same rendering checks a template when staff save, edit or schedule it
(`check_campaign`, `check_system`): it runs with the context the worker uses
and is filled in for a sample recipient, so a template that fails or goes
beyond the sandbox's limits is refused at the door, not found by the worker.
Filling in a real recipient's values can still make a part too large (a long
name repeated many times); `PartSizes` measures that per envelope without
building the message.
"""
from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from functools import lru_cache
from html import escape

from flask import current_app
from flask_babel import force_locale
from flask_babel import gettext as _
from markupsafe import escape as escape_html

from . import branding, links
from .mail import Envelope, MessageBatch, TemplateError
from .mail.personal import CAMPAIGN_NAMES, SAMPLE, SYSTEM_NAMES, Part, compile_part, contact_values, field_column
from .mail.render import MAX_OUTPUT, deadline_from_now
from .models import Contact, Topic

NAME, NAME_HTML = "-pc_name-", "-pc_name_html-"
UNSUB, PREFS = "-pc_unsub-", "-pc_prefs-"
PLACEHOLDERS = (NAME, NAME_HTML, UNSUB, PREFS)
SAMPLE_NAME = SAMPLE["name"]
# What a contact missing every optional field looks like to a template (checked at the door too).
BARE = {"email": SAMPLE["email"], "relationship": "prospect", "attributes": {}}
# SendGrid refuses a personalization whose substitutions pass 10,000 bytes; a recipient whose
# values would (a long loop over their name) gets the message rendered whole for them instead.
SUBSTITUTION_BYTES = 9_000


def language(locale: str | None) -> str:
    """The language of a recipient's mail: theirs if the product speaks it, else the default."""
    wanted = (locale or "").replace("_", "-").split("-")[0].lower()
    supported = current_app.config.get("PC_LOCALES") or ["en"]
    return wanted if wanted in supported else current_app.config.get("BABEL_DEFAULT_LOCALE", "en")


@lru_cache(maxsize=128)
def _part(name: str, source: str, html: bool, allowed: frozenset[str]) -> Part:
    return compile_part(name, source, html, allowed)


def _parts(subject: str, html: str, text: str, allowed: frozenset[str]) -> list[Part]:
    """The compiled parts of a message; raises TemplateError naming the part (unknown variables included)."""
    parts = [_part("subject", subject, False, allowed), _part("text", text or "", False, allowed)]
    if html:
        parts.append(_part("html", html, True, allowed))
    return parts


def marketing_footer(topic: Topic, locale: str) -> tuple[str, str]:
    """(text, HTML) footer of a campaign in a language: why (for legitimate interest: the assessment's purpose and
    the right to object), unsubscribe and preferences links, address."""
    address = branding.current().postal_address
    with force_locale(locale):
        if topic.legal_basis == "legitimate_interest":
            # Legitimate interest says why we write (the topic's recorded assessment) and that one may object.
            from . import assessments

            reason = assessments.why_we_write(topic, assessments.latest_by_topic().get(topic.id)).rstrip(".")
            why = _("%(reason)s. You may object to these emails at any time, in one click.", reason=reason)
            unsubscribe = _("Object in one click")
        else:
            why = _("You get this because you are subscribed to %(topic)s.", topic=branding.topic_name(topic, locale))
            unsubscribe = _("Unsubscribe")
        manage = _("Manage your preferences")
    text = f"\n\n--\n{why}\n{unsubscribe}: {UNSUB}\n{manage}: {PREFS}\n{address}\n"
    html = ('<hr><p style="font-size:12px;color:#555">'
            f'{escape(why)} <a href="{UNSUB}">{escape(unsubscribe)}</a> · '
            f'<a href="{PREFS}">{escape(manage)}</a><br>{escape(address)}</p>')
    return text, html


def system_footer(topic: Topic, locale: str) -> tuple[str, str]:
    """(text, HTML) footer of a system message in a language: why it is sent whatever the preferences."""
    address = branding.current().postal_address
    with force_locale(locale):
        why = _("You get this %(topic)s message because it is part of a service you use; "
                "it is sent whatever your marketing preferences are.", topic=branding.topic_name(topic, locale))
    return (f"\n\n--\n{why}\n{address}\n",
            f'<hr><p style="font-size:12px;color:#555">{escape(why)}<br>{escape(address)}</p>')


class CampaignMail:
    """A campaign compiled once: `fill` gives each recipient's message and substitutions.

    Raises TemplateError (with .field) when built if a part does not compile or its shared body
    fails to render; `fill` raises it when one recipient's values make a part fail or too large.
    """

    def __init__(self, topic: Topic, subject: str, html: str, text: str, campaign_id: int) -> None:
        self.topic, self.campaign_id = topic, campaign_id
        self.parts = _parts(subject, html, text, CAMPAIGN_NAMES)
        self.split = all(part.split for part in self.parts)
        self.keys = [UNSUB, PREFS, *{hole.key: None for part in self.parts for hole in part.holes}]
        # A plain field is short (an address, 320 characters, is the longest: 1,600 bytes escaped at worst;
        # an attribute's text, 500 characters, 3,000 bytes), so a few of them cannot pass SendGrid's cap;
        # expressions (loops...) are measured per recipient.
        holes = [hole for part in self.parts for hole in part.holes]
        worst = sum(3_000 if hole.field and hole.field.startswith("attributes.") else 1_600 for hole in holes)
        self.bounded = worst <= 8_000 and all(hole.field is not None for hole in holes)
        # Only plain fields: each recipient's values are read straight from their row (the hot path).
        self.plain = self.split and self.bounded
        # What the plain path reads of a contact: _ADDRESSING, then the columns its fields come from; per field
        # the index of its column in that and the function giving its text; per placeholder (in the order `fill`
        # gives them) its field's index and whether it is escaped.
        fields = list({hole.field: None for part in self.parts for hole in part.holes if hole.field})
        self._columns = list({field_column(name)[0]: None for name in fields})
        self._texts = [(len(_ADDRESSING) + self._columns.index(column), text)
                       for column, text in map(field_column, fields)]
        self._holes = list({hole.key: (hole.key, fields.index(hole.field), part.html)
                            for part in self.parts for hole in part.holes if hole.field}.values())
        self.mailto = current_app.config.get("PC_UNSUBSCRIBE_MAILTO")
        self._topic_id, self._campaign = topic.id or 0, str(campaign_id)
        self._unsubscribe_url = links.UrlMaker(links.UNSUBSCRIBE, "/u/")
        self._preferences_url = links.UrlMaker(links.PREFERENCES, "/p/")
        self.bases: dict[str, str] = {}
        if self.split:
            deadline = deadline_from_now()  # one time budget for the shared body
            context = {"unsubscribe_url": UNSUB, "preferences_url": PREFS}
            self.bases = {part.name: part.render_base(context, deadline) for part in self.parts}
        self._shared: dict[tuple[str, bool], tuple[MessageBatch, PartSizes]] = {}
        # (recipient's locale, tracking) -> their shared message, its sizes and the room every value has in it.
        self._by_locale: dict[tuple[str | None, bool], tuple[MessageBatch, PartSizes, int]] = {}
        # A template that fails for a made-up recipient with every field, or with none, is broken
        # for everyone: refused at the door, and the campaign fails instead of each recipient.
        unsubscribe, preferences = sample_links()
        for values in (SAMPLE, BARE):
            self.fill(values, unsubscribe, preferences, None)

    def _message(self, bodies: dict[str, str], locale: str, tracking: bool = False) -> MessageBatch:
        footer_text, footer_html = marketing_footer(self.topic, locale)
        return MessageBatch(
            from_email=branding.current().from_email,
            subject=bodies["subject"],
            text=bodies["text"] + footer_text,
            html=bodies["html"] + footer_html if "html" in bodies else None,
            headers={"List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
            categories=[f"campaign-{self.campaign_id}", f"topic-{self.topic.key}"[:255]],
            tracking=tracking,
        )

    def shared(self, locale: str, tracking: bool = False) -> tuple[MessageBatch, PartSizes]:
        """The message every recipient in this language (and with this tracking choice) shares, and its sizes."""
        key = (locale, tracking)
        if key not in self._shared:
            message = self._message(self.bases, locale, tracking)
            self._shared[key] = (message, PartSizes.of(message, self.keys))
        return self._shared[key]

    def fill(self, values: dict, unsubscribe: str, preferences: str, locale: str | None,
             tracking: bool = False) -> tuple[MessageBatch, dict]:
        """One recipient's message (shared by others when possible) and the substitutions that finish it."""
        locale = language(locale)
        substitutions = {UNSUB: unsubscribe, PREFS: preferences}
        context = {"contact": values, "unsubscribe_url": unsubscribe, "preferences_url": preferences}
        deadline = deadline_from_now()
        if self.split:
            for part in self.parts:
                substitutions.update(part.fill_holes(values, context, deadline))
            if self.bounded or sum(len(k) + len(v.encode()) for k, v in substitutions.items()) <= SUBSTITUTION_BYTES:
                message, sizes = self.shared(locale, tracking)
                sizes.check(substitutions)
                return message, substitutions
            substitutions = {UNSUB: unsubscribe, PREFS: preferences}
        message = self._message({part.name: part.render_whole(context, deadline) for part in self.parts}, locale,
                                tracking)
        PartSizes.of(message, [UNSUB, PREFS]).check(substitutions)
        return message, substitutions

    def envelope(self, contact, delivery_id: int, tracking: bool = False, read=None) -> tuple[MessageBatch, Envelope]:
        """One recipient (a contact model or row): their message, own links, one-click header and opaque ids;
        `tracking` only when they agreed and the topic allows it (engagement.tracked); `read`: what `reader`
        gave for the rows this one is among."""
        if self.plain:  # each attribute read once: an attribute of a row is not free
            got = read(contact) if read is not None else self._read(contact)
            contact_id, version, locale, email = got[0], got[1], got[2], got[3]
        else:
            contact_id, version, locale, email = (contact.id, contact.token_version, getattr(contact, "locale", None),
                                                  contact.email)
        # The same links as links.unsubscribe_url and links.preferences_url, keys and base read once per batch.
        unsubscribe = self._unsubscribe_url.of(contact_id, version, self._topic_id)
        preferences = self._preferences_url.of(contact_id, version)
        if delivery_id:  # an opt-out through this link counts on this campaign's report (engagement.py)
            unsubscribe += f"?d={delivery_id}"
        if self.plain:  # the same values `fill` gives, without building the whole context
            substitutions = {UNSUB: unsubscribe, PREFS: preferences}
            values = [text(got[index]) for index, text in self._texts]
            for key, index, html in self._holes:
                value = values[index]
                # str(escape_html(value)), which is the value itself when it holds none of the five it escapes.
                substitutions[key] = value if not html or _HTML_SPECIAL(value) is None else str(escape_html(value))
            shared = self._by_locale.get((locale, tracking))
            if shared is None:
                message, sizes = self.shared(language(locale), tracking)
                shared = self._by_locale[(locale, tracking)] = (message, sizes, sizes.room())
            message, sizes, room = shared
            if max(map(len, substitutions.values())) > room:  # PartSizes.check's own first test, inlined
                sizes.check(substitutions)
        else:
            message, substitutions = self.fill(contact_values(contact), unsubscribe, preferences, locale, tracking)
        header = (f"<{unsubscribe}>, <mailto:{self.mailto}?subject=unsubscribe-{delivery_id}>" if self.mailto
                  else f"<{unsubscribe}>")
        return message, Envelope(email, substitutions, {"List-Unsubscribe": header},
                                 {"delivery_id": str(delivery_id), "campaign_id": self._campaign})

    def _read(self, contact) -> tuple:
        """What the plain path reads of a contact (model or row), attribute by attribute."""
        return (contact.id, contact.token_version, getattr(contact, "locale", None), contact.email,
                *[getattr(contact, column, None) for column in self._columns])

    @property
    def columns(self) -> tuple[str, ...] | None:
        """The contact columns this campaign's messages read of a recipient (None: any of them, rendered whole)."""
        return (*_ADDRESSING, *self._columns) if self.plain else None

    def reader(self, sample):
        """For rows of one query shaped like `sample` (SQLAlchemy rows, whose attributes cost far more than
        their items): a function reading what `envelope` reads of one in a single call, to pass it as `read`;
        None when it would gain nothing (a model, a campaign rendered per recipient, a column missing)."""
        fields, wanted = getattr(sample, "_fields", None), self.columns
        if wanted is None or not isinstance(fields, tuple) or not all(name in fields for name in wanted):
            return None
        return operator.itemgetter(*(fields.index(name) for name in wanted))


# The characters markupsafe's escape replaces.
_HTML_SPECIAL = re.compile("[&<>\"']").search
# Read of every recipient of a plain campaign, in this order, before the columns of its fields.
_ADDRESSING = ("id", "token_version", "locale", "email")


def marketing_batch(topic: Topic, subject: str, html: str, text: str, campaign_id: int) -> MessageBatch:
    """The shared message of a campaign whose templates use plain fields (the benchmark's floor)."""
    return CampaignMail(topic, subject, html, text, campaign_id).shared(language(None))[0]


def marketing_envelope(contact: Contact, topic: Topic, delivery_id: int, campaign_id: int) -> Envelope:
    """One recipient: their own links (and name), one-click header and opaque ids."""
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


def _system_content(topic: Topic, subject: str, html: str, text: str, data: dict, values: dict,
                    locale: str | None) -> MessageBatch:
    """A system message rendered for one person's values, without recipients: no unsubscribe header,
    and a line in their language saying why it is sent."""
    deadline = deadline_from_now()
    # A system mail cannot be unsubscribed from: a template's unsubscribe link leads to the preference page.
    context = {"contact": values, "unsubscribe_url": UNSUB, "preferences_url": PREFS, "data": data}
    bodies = {part.name: part.render_whole(context, deadline) for part in _parts(subject, html, text, SYSTEM_NAMES)}
    footer_text, footer_html = system_footer(topic, language(locale))
    return MessageBatch(
        from_email=branding.current().from_email,
        subject=bodies["subject"],
        text=bodies["text"] + footer_text,
        html=bodies["html"] + footer_html if "html" in bodies else None,
        categories=[f"system-{topic.key}"[:255]],
    )


def _system_substitutions(preferences: str) -> dict[str, str]:
    return {PREFS: preferences, UNSUB: preferences}


def system_batch(topic: Topic, contact: Contact, subject: str, html: str, text: str, data: dict,
                 delivery_id: int) -> MessageBatch:
    """A system message for one contact; raises TemplateError (with .field) if it cannot be rendered for them."""
    batch = _system_content(topic, subject, html, text, data, contact_values(contact), contact.locale)
    envelope = Envelope(to=contact.email, substitutions=_system_substitutions(links.preferences_url(contact)),
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
    def of(cls, batch: MessageBatch, keys=PLACEHOLDERS) -> PartSizes:
        parts = []
        for field, body in (("subject", batch.subject), ("text", batch.text), ("html", batch.html)):
            if body:
                counts = tuple((key, n) for key in keys if (n := body.count(key)))
                parts.append((field, len(body), counts))
        return cls(tuple(parts))

    def room(self) -> int:
        """The longest value every placeholder may take without any part going over the limit."""
        if self._room is None:
            object.__setattr__(self, "_room", min((MAX_OUTPUT - length) // max(1, sum(n for _, n in counts))
                                                  for _, length, counts in self.parts) if self.parts else MAX_OUTPUT)
        return self._room

    def check(self, substitutions: dict[str, str]) -> None:
        """Raise TemplateError (with .field) if a part filled in with these values is longer than the limit."""
        # Fast path (every recipient of a batch comes here): no part can grow past the limit if even
        # the most placeholders of any part, each filled with this recipient's longest value, fit.
        if not self.parts or max(map(len, substitutions.values()), default=0) <= self.room():
            return
        for field, length, counts in self.parts:
            size = length + sum(n * (len(substitutions.get(key, key)) - len(key)) for key, n in counts)
            if size > MAX_OUTPUT:
                error = TemplateError(f"filled in for this recipient the {field} would be {size:,} characters, "
                                      f"more than the {MAX_OUTPUT:,} allowed")
                error.field = field
                raise error


def sample_links() -> tuple[str, str]:
    """(unsubscribe, preferences) links of a made-up recipient, as long as real ones."""
    sample = Contact(id=2**31 - 1, token_version=1, name=SAMPLE_NAME, email=SAMPLE["email"])
    return links.unsubscribe_url(sample, 2**31 - 1), links.preferences_url(sample)


def check_campaign(topic: Topic, subject: str, html: str, text: str) -> None:
    """Compile a campaign (unknown variables refused) and fill it in, as the worker will, for a sample
    recipient with every field and for one with none; TemplateError names the part."""
    CampaignMail(topic, subject, html, text, 0)  # fills itself in for both when built


def check_system(topic: Topic, subject: str, html: str, text: str, data: dict) -> None:
    """Render a system message with its own data, as the worker will, for sample recipients."""
    substitutions = _system_substitutions(sample_links()[1])
    for values in (SAMPLE, BARE):
        PartSizes.of(_system_content(topic, subject, html, text, data, values, None)).check(substitutions)
