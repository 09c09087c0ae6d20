"""Forms of the staff pages (Flask-WTF: every POST carries a CSRF token; one-line fields refuse line breaks)."""
from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from flask_babel import gettext as _
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
from ..imports import BASES, FIELDS
from ..imports.files import attribute_key
from ..imports.settings import ATTRIBUTE
from ..inputs import Form, options
from ..models import RELATIONSHIPS
from ..staff import ROLES
from .labels import choices, label


class CheckboxesField(SelectMultipleField):
    """Several checkboxes sharing one name."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class ActionForm(Form):
    """A button that only needs the CSRF token (retire, cancel, sign out…)."""


class LoginForm(Form):
    email = StringField(_l("Email"), validators=[DataRequired(), Length(max=320)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=1000)])


class TopicForm(Form):
    key = StringField(_l("Key (used in the API and in links; cannot change)"),
                      validators=[DataRequired(), Length(max=64)])
    name = StringField(_l("Name shown to recipients"), validators=[DataRequired(), Length(max=200)])
    kind = SelectField(_l("Kind (cannot change later)"), choices=options([
        ("marketing", _l("Marketing: newsletters, offers; people can always opt out")),
        ("system", _l("System: orders, invoices, account notices; sent on the basis of the contract"))]))
    legal_basis = SelectField(_l("Legal basis (marketing topics)"),
                              choices=options(choices("legal_basis", ("consent", "legitimate_interest"))),
                              validators=[Optional()])
    default_relationships = CheckboxesField(
        _l("On by default for (legitimate interest only)"), choices=options(choices("relationship", RELATIONSHIPS)))
    description = TextAreaField(_l("Description shown on the preference page"), validators=[Length(max=5000)])

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

    q = StringField(_l("Email or name"), validators=[Optional(), Length(max=320)])


class SuppressForm(Form):
    scope = SelectField(_l("Block"), choices=options([
        ("marketing", _l("Marketing only (system mail such as invoices still goes out)")),
        ("all", _l("All mail, including system mail"))]))
    reason = StringField(_l("Reason (kept in the ledger)"), validators=[DataRequired(), Length(max=60)])


class LiftSuppressionForm(Form):
    scope = SelectField(_l("Suppression"), choices=options(choices("suppression_scope")))
    why = StringField(_l("Why it is lifted (kept in the ledger)"), validators=[DataRequired(), Length(max=200)])


class UploadForm(Form):
    file = FileField(_l("CSV file (UTF-8; comma, semicolon or tab separated)"), validators=[FileRequired()])


class ImportSettingsForm(Form):
    has_header = BooleanField(_l("The first row names the columns"))
    legal_basis = SelectField(_l("Legal basis for holding these contacts"),
                              choices=options([("", _l("— choose —"))] + choices("import_basis", BASES)),
                              validators=[Optional()])
    source_text = StringField(_l("Where do these contacts come from?"), validators=[Length(max=150)])
    third_party = StringField(_l("The company that gave us the list (empty if we collected it ourselves)"),
                              validators=[Length(max=200)])
    share_evidence = StringField(_l("Its evidence that these people consented to sharing their address with us"),
                                 validators=[Length(max=500)])
    default_relationship = SelectField(_l("Relationship for rows that have none"),
                                       choices=options([("", _l("keep / prospect"))] +
                                                       choices("relationship", RELATIONSHIPS)),
                                       validators=[Optional()])
    topic = SelectField(_l("Subscribe them to (consent only)"), choices=options([("", _l("— no subscription —"))]),
                        validators=[Optional()])
    consent_collected = BooleanField(
        _l("I confirm these people gave their consent to this topic, collected as described in the source above."))
    confirmed_opt_in = BooleanField(
        _l("Their consent was confirmed (double opt-in or signed form), so they may be sent mail right away. "
           "Leave unticked to record it as awaiting confirmation."))
    # The column selects (map_email, map_name…) are added per file by import_settings_form.
    COLUMN_LABELS = {"email": _l("Email address (required)"), "name": _l("Name"), "company": _l("Company"),
                     "title": _l("Title"), "phone": _l("Phone"), "locale": _l("Locale"),
                     "relationship": _l("Relationship")}

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
    columns_offered = options([("", _l("— not in the file —"))] +
                              [(str(i), f"{i + 1}: {name}") for i, name in enumerate(columns)])

    class Form(ImportSettingsForm):
        pass

    for name in FIELDS:
        column = ImportSettingsForm.COLUMN_LABELS.get(name, name.capitalize())
        setattr(Form, f"map_{name}", SelectField(column, choices=columns_offered, validators=[Optional()]))
    Form.columns = list(columns)
    form = Form(**kwargs)
    form.attribute_columns.choices = [(str(i), name) for i, name in enumerate(columns)]
    form.topic.choices = options([("", _l("— no subscription —"))] + [
        (t.key, _("%(name)s (%(key)s, basis: %(basis)s)", name=t.name, key=t.key,
                  basis=label(t.legal_basis, "legal_basis"))) for t in topics])
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
    name = StringField(_l("Internal name"), validators=[DataRequired(), Length(max=200)])
    topic = SelectField(_l("Topic"), validators=[DataRequired()])
    subject = StringField(_l("Subject"), validators=[DataRequired(), Length(max=500)])
    html = TextAreaField(_l("HTML body"), validators=[Length(max=200_000)])
    text = TextAreaField(_l("Text body"), validators=[Length(max=200_000)])
    relationships = CheckboxesField(_l("Only these relationships (none ticked: everyone eligible)"),
                                    choices=options(choices('relationship', RELATIONSHIPS)))
    locales = StringField(_l("Only these locales (comma-separated, e.g. en, es; empty: all)"),
                          validators=[Optional(), Length(max=200)])
    companies = StringField(_l("Only these companies (comma-separated; any case)"),
                            validators=[Optional(), Length(max=2000)])
    sources = StringField(_l("Only contacts from these sources (comma-separated, e.g. import:12)"),
                          validators=[Optional(), Length(max=2000)])
    created_after = DateField(_l("Created on or after"), validators=[Optional()])
    created_before = DateField(_l("Created before"), validators=[Optional()])
    interacted_after = DateField(_l("Last interaction on or after"), validators=[Optional()])
    interacted_before = DateField(_l("Last interaction before"), validators=[Optional()])
    attribute_filters = AttributeFiltersField()
    preview_email = StringField(_l("Preview for contact (email)"), validators=[Optional(), Length(max=320)])

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
        raise ValueError(str(_l("unknown time zone %(zone)s", zone=repr(zone)))) from exc
    aware = local.replace(tzinfo=tz)
    back = aware.astimezone(dt.UTC).astimezone(tz)
    if back.replace(tzinfo=None) != local:
        moment = local.strftime("%Y-%m-%d %H:%M")
        raise ValueError(str(_l("%(moment)s does not exist in %(zone)s (the clocks change then)", moment=moment,
                                zone=zone)))
    return aware.astimezone(dt.UTC)


class ScheduleForm(Form):
    at = DateTimeLocalField(_l("Send at (local time)"), format=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"],
                            validators=[Optional()])
    zone = SelectField(_l("Time zone"), default="UTC")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.zone.choices = zone_choices()

    def moment(self) -> dt.datetime | None:
        """The chosen moment in UTC, or None for 'now'."""
        if self.at.data is None:
            return None
        return to_utc(self.at.data, self.zone.data)


class TestSendForm(Form):
    preview_email = StringField(_l("Fill in as contact (email, optional)"), validators=[Optional(), Length(max=320)])


class UserForm(Form):
    email = StringField(_l("Email"), validators=[DataRequired(), Length(max=320)])
    role = SelectField(_l("Role"), choices=options(choices("role", ROLES)))
    password = PasswordField(_l("Initial password (10+ characters)"),
                             validators=[DataRequired(), Length(min=10, max=1000)])


class TokenForm(Form):
    name = StringField(_l("Token name (which system uses it)"), validators=[DataRequired(), Length(max=100)])
    admin = BooleanField(_l("Admin token: may read every system message, not only the ones it sent"))


class RequestFilterForm(Form):
    class Meta:
        csrf = False

    status = SelectField(_l("Show"), choices=options(choices("request_status") + [("all", _l("All"))]),
                         default="open", validators=[Optional()])


class WordingForm(Form):
    """Publish a new consent wording: a new version, never an edit."""

    locale = SelectField(_l("Language"), choices=options([("en", _l("English (en)")), ("es", _l("Spanish (es)"))]),
                         validators=[DataRequired()])
    version = StringField(_l("Version"), validators=[DataRequired(), Length(max=32)])
    text = TextAreaField(_l("Wording, exactly as people will see it"), validators=[DataRequired(), Length(max=5000)])


class RefuseForm(Form):
    reason = TextAreaField(_l("Why the request is refused (shown and mailed to the person)"),
                           validators=[DataRequired(), Length(max=2000)])


class ExtendForm(Form):
    months = SelectField(_l("Extend by"), choices=options([("1", _l("one month")), ("2", _l("two months"))]),
                         validators=[DataRequired()])
    reason = TextAreaField(_l("Why more time is needed (mailed to the person)"), validators=[DataRequired(),
                                                                                            Length(max=2000)])
