"""Forms of the staff pages (Flask-WTF: every POST carries a CSRF token; one-line fields refuse line breaks)."""
from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from flask_babel import lazy_gettext as _l
from flask_wtf.file import FileField, FileRequired
from wtforms import (
    BooleanField,
    DateField,
    DateTimeLocalField,
    PasswordField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, Optional
from wtforms.validators import ValidationError as WTFormsValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from .. import attributes
from ..imports import BASES, BASIS_NAMES, FIELDS
from ..imports.files import attribute_key
from ..imports.settings import ATTRIBUTE
from ..inputs import Form, options
from ..models import RELATIONSHIPS
from ..staff import ROLES


class CheckboxesField(SelectMultipleField):
    """Several checkboxes sharing one name."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class ActionForm(Form):
    """A button that only needs the CSRF token (retire, cancel, sign out…)."""


class LoginForm(Form):
    email = StringField("Email", validators=[DataRequired(), Length(max=320)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1000)])


BASIS_CHOICES = options([("consent", "Consent"), ("legitimate_interest", "Legitimate interest")])


class TopicForm(Form):
    key = StringField("Key (used in the API and in links; cannot change)",
                      validators=[DataRequired(), Length(max=64)])
    name = StringField("Name shown to recipients", validators=[DataRequired(), Length(max=200)])
    kind = SelectField("Kind (cannot change later)", choices=options([
        ("marketing", "Marketing: newsletters, offers; people can always opt out"),
        ("system", "System: orders, invoices, account notices; sent on the basis of the contract")]))
    legal_basis = SelectField("Legal basis (marketing topics)", choices=BASIS_CHOICES, validators=[Optional()])
    default_relationships = CheckboxesField(
        "On by default for (legitimate interest only)", choices=options((r, r) for r in RELATIONSHIPS))
    description = TextAreaField("Description shown on the preference page", validators=[Length(max=5000)])

    def data_for_domain(self) -> dict:
        data = {"name": self.name.data, "description": self.description.data or ""}
        # Fields removed for system topics (see TopicEditForm) are None here.
        if self.kind is not None and self.kind.data == "system":
            return data
        if self.legal_basis is not None:
            data["legal_basis"] = self.legal_basis.data
        if self.default_relationships is not None:
            data["default_relationships"] = list(self.default_relationships.data or [])
        return data


class TopicEditForm(TopicForm):
    def __init__(self, *args, kind: str, **kwargs):
        super().__init__(*args, **kwargs)
        del self.key
        del self.kind
        if kind == "system":
            del self.legal_basis
            del self.default_relationships


class SearchForm(Form):
    class Meta:
        csrf = False

    q = StringField("Email or name", validators=[Optional(), Length(max=320)])


class SuppressForm(Form):
    scope = SelectField("Block", choices=options([
        ("marketing", "Marketing only (system mail such as invoices still goes out)"),
        ("all", "All mail, including system mail")]))
    reason = StringField("Reason (kept in the ledger)", validators=[DataRequired(), Length(max=60)])


class LiftSuppressionForm(Form):
    scope = SelectField("Suppression", choices=options([("marketing", "Marketing"), ("all", "All mail")]))
    why = StringField("Why it is lifted (kept in the ledger)", validators=[DataRequired(), Length(max=200)])


class UploadForm(Form):
    file = FileField("CSV file (UTF-8; comma, semicolon or tab separated)", validators=[FileRequired()])


class ImportSettingsForm(Form):
    has_header = BooleanField("The first row names the columns")
    legal_basis = SelectField("Legal basis for holding these contacts",
                              choices=options([("", "— choose —")] + [(b, BASIS_NAMES[b]) for b in BASES]),
                              validators=[Optional()])
    source_text = StringField("Where do these contacts come from?", validators=[Length(max=150)])
    third_party = StringField("The company that gave us the list (empty if we collected it ourselves)",
                              validators=[Length(max=200)])
    share_evidence = StringField("Its evidence that these people consented to sharing their address with us",
                                 validators=[Length(max=500)])
    default_relationship = SelectField("Relationship for rows that have none",
                                       choices=options([("", "keep / prospect")] + [(r, r) for r in RELATIONSHIPS]),
                                       validators=[Optional()])
    topic = SelectField("Subscribe them to (consent only)", choices=options([("", "— no subscription —")]),
                        validators=[Optional()])
    consent_collected = BooleanField(
        "I confirm these people gave their consent to this topic, collected as described in the source above.")
    confirmed_opt_in = BooleanField(
        "Their consent was confirmed (double opt-in or signed form), so they may be sent mail right away. "
        "Leave unticked to record it as awaiting confirmation.")

    # Columns imported as custom attributes (rendered by templates/admin/_import_attributes.html).
    attribute_columns = SelectMultipleField(_l("Import as custom attributes"), choices=[], validate_choice=True)
    columns: list[str] = []

    def mapping(self) -> dict:
        mapping = {name: int(self[f"map_{name}"].data) for name in FIELDS
                   if self[f"map_{name}"].data not in (None, "")}
        for value in self.attribute_columns.data or []:
            index = int(value)
            mapping[ATTRIBUTE + attribute_key(self.columns[index], index)] = index
        return mapping

    def attribute_choices(self) -> list[tuple[str, str, str]]:
        """(value, column label, attribute key) of each column, for the attribute checkboxes."""
        return [(str(i), f"{i + 1}: {name}", attribute_key(name, i)) for i, name in enumerate(self.columns)]


def import_settings_form(columns: list[str], topics: list, **kwargs) -> ImportSettingsForm:
    """The settings form with one column select per contact field."""
    choices = options([("", "— not in the file —")] + [(str(i), f"{i + 1}: {name}") for i, name in enumerate(columns)])

    class Form(ImportSettingsForm):
        pass

    for name in FIELDS:
        label = "Email address (required)" if name == "email" else name.capitalize()
        setattr(Form, f"map_{name}", SelectField(label, choices=choices, validators=[Optional()]))
    Form.columns = list(columns)
    form = Form(**kwargs)
    form.attribute_columns.choices = [(str(i), name) for i, name in enumerate(columns)]
    form.topic.choices = options([("", "— no subscription —")] + [
        (t.key, f"{t.name} ({t.key}, basis: {t.legal_basis.replace('_', ' ')})") for t in topics])
    return form


def _conditions_readable(form, field) -> None:
    try:
        attributes.check_filters(attributes.parse_conditions(field.data or ""))
    except attributes.ValidationError as exc:
        raise WTFormsValidationError(str(exc)) from None


def AttributeFiltersField() -> TextAreaField:  # noqa: N802 - a field factory, named like the fields it makes
    """Custom-attribute conditions, one a line (rendered by templates/admin/_attribute_filters.html)."""
    return TextAreaField(_l("Only contacts whose custom attributes match"),
                         validators=[Optional(), Length(max=2000), _conditions_readable])


class CampaignForm(Form):
    name = StringField("Internal name", validators=[DataRequired(), Length(max=200)])
    topic = SelectField("Topic", validators=[DataRequired()])
    subject = StringField("Subject", validators=[DataRequired(), Length(max=500)])
    html = TextAreaField("HTML body", validators=[Length(max=200_000)])
    text = TextAreaField("Text body", validators=[Length(max=200_000)])
    relationships = CheckboxesField("Only these relationships (none ticked: everyone eligible)",
                                    choices=options((r, r) for r in RELATIONSHIPS))
    locales = StringField("Only these locales (comma-separated, e.g. en, es; empty: all)",
                          validators=[Optional(), Length(max=200)])
    companies = StringField("Only these companies (comma-separated; any case)", validators=[Optional(), Length(max=2000)])
    sources = StringField("Only contacts from these sources (comma-separated, e.g. import:12)",
                          validators=[Optional(), Length(max=2000)])
    created_after = DateField("Created on or after", validators=[Optional()])
    created_before = DateField("Created before", validators=[Optional()])
    interacted_after = DateField("Last interaction on or after", validators=[Optional()])
    interacted_before = DateField("Last interaction before", validators=[Optional()])
    attribute_filters = AttributeFiltersField()
    preview_email = StringField("Preview for contact (email)", validators=[Optional(), Length(max=320)])

    def data_for_domain(self) -> dict:
        return {"name": self.name.data, "topic": self.topic.data, "subject": self.subject.data,
                "html": self.html.data or "", "text": self.text.data or "", "audience": audience_of(self)}


def audience_of(form) -> dict:
    """The audience filter a form's audience fields describe (the campaign and segment forms share them)."""
    audience = {}
    if form.relationships.data:
        audience["relationships"] = list(form.relationships.data)
    for key in ("locales", "companies", "sources"):
        values = [x.strip() for x in (form[key].data or "").split(",") if x.strip()]
        if values:
            audience[key] = values
    for key in ("created_after", "created_before", "interacted_after", "interacted_before"):
        if form[key].data:
            audience[key] = form[key].data.isoformat()
    conditions = attributes.parse_conditions(form.attribute_filters.data or "")
    if conditions:
        audience["attributes"] = conditions
    return audience


@lru_cache(maxsize=1)
def zone_choices() -> list[tuple[str, str]]:
    zones = sorted(z for z in available_timezones() if "/" in z and not z.startswith(("Etc/", "SystemV/")))
    return [("UTC", "UTC")] + [(z, z.replace("_", " ")) for z in zones]


def to_utc(local: dt.datetime, zone: str) -> dt.datetime:
    """A wall-clock time in an IANA zone as UTC; refuses times a clock change skips."""
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {zone!r}") from exc
    aware = local.replace(tzinfo=tz)
    back = aware.astimezone(dt.UTC).astimezone(tz)
    if back.replace(tzinfo=None) != local:
        raise ValueError(f"{local:%Y-%m-%d %H:%M} does not exist in {zone} (the clocks change then)")
    return aware.astimezone(dt.UTC)


class ScheduleForm(Form):
    at = DateTimeLocalField("Send at (local time)", format=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"],
                            validators=[Optional()])
    zone = SelectField("Time zone", default="UTC")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.zone.choices = zone_choices()

    def moment(self) -> dt.datetime | None:
        """The chosen moment in UTC, or None for 'now'."""
        if self.at.data is None:
            return None
        return to_utc(self.at.data, self.zone.data)


class TestSendForm(Form):
    preview_email = StringField("Fill in as contact (email, optional)", validators=[Optional(), Length(max=320)])


class UserForm(Form):
    email = StringField("Email", validators=[DataRequired(), Length(max=320)])
    role = SelectField("Role", choices=options((r, r) for r in ROLES))
    password = PasswordField("Initial password (10+ characters)", validators=[DataRequired(), Length(min=10, max=1000)])


class TokenForm(Form):
    name = StringField("Token name (which system uses it)", validators=[DataRequired(), Length(max=100)])
    admin = BooleanField("Admin token: may read every system message, not only the ones it sent")


class RequestFilterForm(Form):
    class Meta:
        csrf = False

    status = SelectField("Show", choices=options([("open", "Open"), ("completed", "Completed"),
                                                  ("refused", "Refused"), ("all", "All")]),
                         default="open", validators=[Optional()])


class WordingForm(Form):
    """Publish a new consent wording: a new version, never an edit."""

    locale = SelectField("Language", choices=options([("en", "English (en)"), ("es", "Spanish (es)")]),
                         validators=[DataRequired()])
    version = StringField("Version", validators=[DataRequired(), Length(max=32)])
    text = TextAreaField("Wording, exactly as people will see it", validators=[DataRequired(), Length(max=5000)])


class RefuseForm(Form):
    reason = TextAreaField("Why the request is refused (shown and mailed to the person)",
                           validators=[DataRequired(), Length(max=2000)])


class ExtendForm(Form):
    months = SelectField("Extend by", choices=options([("1", "one month"), ("2", "two months")]), validators=[DataRequired()])
    reason = TextAreaField("Why more time is needed (mailed to the person)", validators=[DataRequired(),
                                                                                        Length(max=2000)])
