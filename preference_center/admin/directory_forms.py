"""Forms of the contact list: its filters, one contact's profile, and a bulk action."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from .. import attributes
from ..directory import TOPIC_STATES, Filters
from ..inputs import Form, options
from ..models import CONTACT_STATUSES, RELATIONSHIPS
from .labels import choices


def _any() -> list[tuple[str, object]]:
    return [("", _l("any"))]


class ListFilterForm(Form):
    class Meta:
        csrf = False

    q = StringField(_l("Search email, name or company"), validators=[Optional(), Length(max=320)])
    status = SelectField(_l("Status"), choices=options(_any() + choices("contact_status", CONTACT_STATUSES)),
                         validators=[Optional()])
    relationship = SelectField(_l("Relationship"), choices=options(_any() + choices("relationship", RELATIONSHIPS)),
                               validators=[Optional()])
    topic = SelectField(_l("Topic"), validators=[Optional()])
    topic_state = SelectField(_l("Topic state"), choices=options(_any() + choices("topic_state", TOPIC_STATES)),
                              validators=[Optional()])
    suppressed = SelectField(_l("Suppressed"), choices=options(_any() + [("yes", _l("suppressed")),
                                                                       ("no", _l("not suppressed"))]),
                             validators=[Optional()])
    source = StringField(_l("Source (e.g. import:12, api, staff:…)"), validators=[Optional(), Length(max=200)])

    def filters(self) -> Filters:
        return Filters(**{name: (getattr(self, name).data or "").strip() for name in
                          ("q", "status", "relationship", "topic", "topic_state", "suppressed", "source")})


class ContactForm(Form):
    email = StringField(_l("Email"), validators=[DataRequired(), Length(max=320)])
    name = StringField(_l("Name"), validators=[Optional(), Length(max=200)])
    company = StringField(_l("Company"), validators=[Optional(), Length(max=200)])
    title = StringField(_l("Title"), validators=[Optional(), Length(max=200)])
    phone = StringField(_l("Phone"), validators=[Optional(), Length(max=50)])
    locale = StringField(_l("Locale (e.g. en, es-MX)"), validators=[Optional(), Length(max=16)])
    relationship = SelectField(_l("Relationship"), choices=options(choices("relationship", RELATIONSHIPS)),
                               default="prospect")
    # One `key = value` a line (attributes.parse_lines); rendered by templates/admin/_attributes.html.
    attributes = TextAreaField(_l("Custom attributes"), validators=[Optional(), Length(max=20_000)])

    def profile(self) -> dict:
        """The profile, relationship and attributes as typed; ValidationError for attribute lines of the wrong shape."""
        profile = {name: (getattr(self, name).data or "").strip() for name in
                   ("name", "company", "title", "phone", "locale", "relationship")}
        profile["attributes"] = attributes.parse_lines(self.attributes.data or "")
        return profile

    def show_attributes(self, contact) -> None:
        """Fill the editor with a contact's stored attributes (a page opened to edit them)."""
        self.attributes.data = attributes.to_lines(contact.attributes)


class BulkForm(Form):
    action = SelectField(_l("With the chosen contacts"), choices=options([
        ("suppress_marketing", _l("Stop marketing mail (suppress: marketing)")),
        ("suppress_all", _l("Stop all mail (suppress: all)")),
        ("ask", _l("Ask for consent (double opt-in mail)"))]))
    topic = SelectField(_l("Topic to ask for"), validators=[Optional()])
    reason = TextAreaField(_l("Reason (for a suppression)"), validators=[Optional(), Length(max=64)])
