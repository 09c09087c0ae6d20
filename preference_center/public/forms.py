"""Forms of the recipient pages (Flask-WTF: every POST carries a CSRF token; one-line fields refuse line breaks)."""
from __future__ import annotations

import time

from flask import current_app
from flask_babel import lazy_gettext as _l
from itsdangerous import BadSignature, URLSafeTimedSerializer
from wtforms import EmailField, HiddenField, IntegerField, SelectField, SelectMultipleField, StringField, TelField
from wtforms.validators import DataRequired, Length, NumberRange, Optional, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from ..emails import InvalidEmail, normalize
from ..inputs import MAX_BIGINT, Form

LANGUAGE_NAMES = {"en": "English", "es": "Español"}


class CheckboxesField(SelectMultipleField):
    """Several checkboxes sharing one name; unticked boxes are simply absent."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class ActionForm(Form):
    """A button that only needs the CSRF token (confirm, restrict, export…)."""


class PreferencesForm(Form):
    topics = CheckboxesField(_l("Marketing email"), validate_choice=True)


class UndoForm(Form):
    event = IntegerField(validators=[DataRequired(), NumberRange(min=1, max=MAX_BIGINT)])


def _valid_email(form, field) -> None:
    try:
        normalize(field.data or "")
    except InvalidEmail:
        raise ValidationError(_l("Please enter a valid email address, like name@example.com.")) from None


class SubscribeForm(Form):
    email = EmailField(_l("Email address"), validators=[DataRequired(_l("Please enter your email address.")),
                                                        Length(max=320), _valid_email])
    name = StringField(_l("Name (optional)"), validators=[Optional(), Length(max=200)])
    topics = CheckboxesField(_l("What would you like to receive?"),
                             validators=[DataRequired(_l("Please tick at least one topic."))])
    consent_version = HiddenField()
    started = HiddenField()
    # The honeypot: hidden from people (CSS and aria-hidden), filled by bots.
    website = StringField(_l("Leave this field empty"))


class RectifyForm(Form):
    name = StringField(_l("Name"), validators=[Optional(), Length(max=200)])
    company = StringField(_l("Company"), validators=[Optional(), Length(max=200)])
    title = StringField(_l("Job title"), validators=[Optional(), Length(max=200)])
    phone = TelField(_l("Phone"), validators=[Optional(), Length(max=50)])
    locale = SelectField(_l("Language for our email"), validators=[Optional()])

    def set_locales(self, locales: list[str]) -> None:
        self.locale.choices = [("", _l("No preference"))] + [(c, LANGUAGE_NAMES.get(c, c)) for c in locales]


# -- the minimum fill time of the public form ---------------------------------

def _stamper() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["PC_SECRET_KEYS"], salt="pc.subscribe-form-started")


def form_started_stamp() -> str:
    """A signed 'form shown at' value to put in the form."""
    return _stamper().dumps(0)


def filled_by_a_person(form: SubscribeForm) -> bool:
    """False for bots: honeypot filled, no or forged start stamp, or filled faster than a person can."""
    if form.website.data:
        return False
    try:
        _, shown_at = _stamper().loads(form.started.data or "", max_age=86400, return_timestamp=True)
    except BadSignature:
        return False
    minimum = current_app.config["PC_SUBSCRIBE_MIN_SECONDS"]
    return time.time() - shown_at.timestamp() >= minimum
