"""Forms of the contact list: its filters, one contact's profile, and a bulk action."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from .. import attributes
from ..directory import TOPIC_STATES, Filters
from ..inputs import Form, options
from ..models import CONTACT_STATUSES, RELATIONSHIPS


def _any(label: str = "any") -> list[tuple[str, str]]:
    return [("", label)]


class ListFilterForm(Form):
    class Meta:
        csrf = False

    q = StringField("Search email, name or company", validators=[Optional(), Length(max=320)])
    status = SelectField("Status", choices=options(_any() + [(s, s) for s in CONTACT_STATUSES]), validators=[Optional()])
    relationship = SelectField("Relationship", choices=options(_any() + [(r, r) for r in RELATIONSHIPS]),
                               validators=[Optional()])
    topic = SelectField("Topic", validators=[Optional()])
    topic_state = SelectField("Topic state", choices=options(_any() + [(s, s) for s in TOPIC_STATES]), validators=[Optional()])
    suppressed = SelectField("Suppressed", choices=options(_any() + [("yes", "suppressed"), ("no", "not suppressed")]),
                             validators=[Optional()])
    source = StringField("Source (e.g. import:12, api, staff:…)", validators=[Optional(), Length(max=200)])

    def filters(self) -> Filters:
        return Filters(**{name: (getattr(self, name).data or "").strip() for name in
                          ("q", "status", "relationship", "topic", "topic_state", "suppressed", "source")})


class ContactForm(Form):
    email = StringField("Email", validators=[DataRequired(), Length(max=320)])
    name = StringField("Name", validators=[Optional(), Length(max=200)])
    company = StringField("Company", validators=[Optional(), Length(max=200)])
    title = StringField("Title", validators=[Optional(), Length(max=200)])
    phone = StringField("Phone", validators=[Optional(), Length(max=50)])
    locale = StringField("Locale (e.g. en, es-MX)", validators=[Optional(), Length(max=16)])
    relationship = SelectField("Relationship", choices=options((r, r) for r in RELATIONSHIPS), default="prospect")
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
    action = SelectField("With the chosen contacts", choices=options([
        ("suppress_marketing", "Stop marketing mail (suppress: marketing)"),
        ("suppress_all", "Stop all mail (suppress: all)"),
        ("ask", "Ask for consent (double opt-in mail)")]))
    topic = SelectField("Topic to ask for", validators=[Optional()])
    reason = TextAreaField("Reason (for a suppression)", validators=[Optional(), Length(max=64)])
