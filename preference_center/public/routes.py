"""Recipient pages: each view checks the signed link, calls one command with the person as the actor, commits, renders."""
from __future__ import annotations

import datetime as dt
from typing import NoReturn

from flask import Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import format_datetime, get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import validate_csrf
from wtforms import ValidationError

from .. import actors, assessments, contacts, engagement, links, notify, rights
from ..commands import DomainError, consent, people, requests, wordings
from ..extensions import csrf, db
from ..i18n import use_contact_locale
from ..limits import ONE_CLICK, PAGE_VIEWS, SENDS_MAIL, limiter, per_link
from ..models import Contact
from ..states import LinkSource
from . import bp, choices, details
from .forms import (
    ActionForm,
    PreferencesForm,
    RectifyForm,
    SubscribeForm,
    UndoForm,
    filled_by_a_person,
    form_started_stamp,
)

DATA_PAGE = LinkSource.DATA_PAGE
STEP_UP_ACTIONS = tuple(requests.STEP_UP_KINDS)
ONE_CLICK_BODY = ("List-Unsubscribe", "One-Click")
ONE_CLICK_RAW = b"List-Unsubscribe=One-Click"


def _client() -> dict:
    return {"ip": request.remote_addr, "user_agent": request.user_agent.string or None}


def _person(page: str) -> actors.Actor:
    """The recipient, acting through `page`, with this request's IP and user agent."""
    return actors.link(page, **_client())


def _link(purpose: str, token: str) -> links.Link:
    """The verified link, its contact settled (one-click opt-outs in), the page in its contact's language."""
    link = links.load(purpose, token)
    people.settled(link.contact)
    use_contact_locale(link.contact.locale)
    return link


def _form_expired() -> NoReturn:
    """A stale or forged form: 400 with a hint to reload; nothing changes."""
    abort(400, _("The form has expired. Please reload the page and try again."))


def _submitted(form):
    """`form`, if it was posted with a valid CSRF token (a 400 otherwise)."""
    if not form.validate_on_submit():
        _form_expired()
    return form


@bp.app_template_filter("when")
def when(iso: str) -> str:
    """An ISO timestamp as a local-language date and time (UTC)."""
    return format_datetime(dt.datetime.fromisoformat(iso), "medium") + " UTC"


@bp.errorhandler(links.LinkError)
def link_error(error: links.LinkError):
    db.session.rollback()
    return render_template("public/link_error.html", kind=error.kind), 410 if error.kind == "expired" else 404


# -- preferences ------------------------------------------------------------------

def _preferences_page(token: str, contact: Contact, form: PreferencesForm, status: int = 200, page=None):
    page = page if page is not None else choices.preferences(contact)
    return render_template("public/preferences.html", token=token, page=page, form=form, contact_email=contact.email,
                           tracking_allowed=contact.id in engagement.agreed([contact.id]),
                           all_form=ActionForm(), unsubscribe_all_url=links.unsubscribe_url(contact),
                           interests=assessments.for_page(contact, [t for t, _ in page["marketing"]])), status


def _preferences_form(topics) -> PreferencesForm:
    form = PreferencesForm()
    form.topics.choices = [(t.key, t.name) for t in topics]
    return form


@bp.get("/p/<token>")
@limiter.limit(PAGE_VIEWS)
def preferences(token: str):
    contact = _link(links.PREFERENCES, token).contact
    page = choices.preferences(contact)
    form = _preferences_form(page["topics"])
    form.topics.data = page["subscribed"]
    return _preferences_page(token, contact, form, page=page)


@bp.post("/p/<token>")
@limiter.limit(PAGE_VIEWS)
def save_preferences(token: str):
    contact = _link(links.PREFERENCES, token).contact
    form = _preferences_form(choices.marketing_topics())
    if not form.validate_on_submit():
        return _preferences_page(token, contact, form, 400)
    consent.save_preferences(_person(choices.PREFERENCES_PAGE), contact, set(form.topics.data or []),
                             choices.marketing_topics())
    db.session.commit()
    flash(_("Your choices are saved."))
    return redirect(url_for("public.preferences", token=token), 303)


@bp.post("/p/<token>/unsubscribe-all")
@limiter.limit(PAGE_VIEWS)
def unsubscribe_all(token: str):
    contact = _link(links.PREFERENCES, token).contact
    _submitted(ActionForm())
    consent.withdraw(_person(choices.PREFERENCES_PAGE), contact, None)
    db.session.commit()
    flash(_("You are unsubscribed from all marketing email."))
    return redirect(url_for("public.preferences", token=token), 303)


# -- unsubscribe (including RFC 8058 one-click) ------------------------------------

@bp.get("/u/<token>")
@limiter.limit(PAGE_VIEWS)
def unsubscribe_page(token: str):
    link = _link(links.UNSUBSCRIBE, token)
    topic = choices.unsubscribe_target(link.argument)
    return render_template("public/unsubscribe.html", topic=topic, form=ActionForm(),
                           preferences_url=links.preferences_url(link.contact))


def _delivery() -> int | None:
    """The campaign delivery an unsubscribe link came in (`?d=`), for the campaign's report; checked by the
    command against the link's contact. Anything that is not a plain id is ignored."""
    if not request.query_string:  # a one-click post carries none: no arguments to parse
        return None
    value = request.args.get("d", "")
    return int(value) if value.isdigit() and len(value) <= 19 else None


def _is_one_click() -> bool:
    # The body mail providers post (RFC 8058), byte for byte, is recognised without the form parser; any other
    # body (multipart, more fields, another encoding) is parsed and checked field by field.
    if (request.content_length == len(ONE_CLICK_RAW) and request.mimetype == "application/x-www-form-urlencoded"
            and request.get_data(cache=True) == ONE_CLICK_RAW):
        return True
    name, value = ONE_CLICK_BODY
    return request.form.get(name) == value


@bp.post("/u/<token>")
@limiter.limit(ONE_CLICK, key_func=per_link)
@csrf.exempt  # RFC 8058: mail providers post without cookies or a token; our own button is checked below
def unsubscribe(token: str):
    if _is_one_click():
        return _one_click(token)
    link = _link(links.UNSUBSCRIBE, token)
    topic = choices.unsubscribe_target(link.argument)
    try:
        validate_csrf(request.form.get("csrf_token"))
    except ValidationError:
        _form_expired()
    event = consent.withdraw(_person(choices.UNSUBSCRIBE_PAGE), link.contact, topic, delivery_id=_delivery())
    db.session.commit()
    undo = UndoForm(event=event.id) if consent.undoable(link.contact, event) else None
    return render_template("public/unsubscribed.html", topic=topic, token=token, undo=undo,
                           preferences_url=links.preferences_url(link.contact))


def _one_click(token: str):
    """RFC 8058: one INSERT, committed before the 200; the ledger event follows (see optouts)."""
    contact_id, version, topic_id = links.verify(links.UNSUBSCRIBE, token)
    if not consent.take_one_click(_person(choices.ONE_CLICK), contact_id, version, topic_id, _delivery()):
        # Revoked, erased or a topic that is gone: let the full check say which.
        link = _link(links.UNSUBSCRIBE, token)
        topic = choices.unsubscribe_target(link.argument)
        consent.withdraw(_person(choices.ONE_CLICK), link.contact, topic, delivery_id=_delivery())
        db.session.commit()
    return Response(_("You are unsubscribed.") + "\n", 200, mimetype="text/plain")


@bp.post("/u/<token>/undo")
@limiter.limit(PAGE_VIEWS)
def undo_unsubscribe(token: str):
    link = _link(links.UNSUBSCRIBE, token)
    topic = choices.unsubscribe_target(link.argument)
    form = _submitted(UndoForm())
    event = consent.undo_unsubscribe(_person(choices.UNSUBSCRIBE_PAGE), link.contact, form.event.data)
    db.session.commit()
    return render_template("public/resubscribed.html", topic=topic, undone=event is not None,
                           preferences_url=links.preferences_url(link.contact))


# -- the public consent form and its confirmation -------------------------------------

@bp.route("/subscribe", methods=["GET", "POST"])
@limiter.limit(PAGE_VIEWS, methods=["GET"])
@limiter.limit(SENDS_MAIL, methods=["POST"])
def subscribe():
    locale = str(get_locale())
    form = SubscribeForm()
    form.topics.choices = [(t.key, t.name) for t in choices.consent_topics()]
    text = wordings.current(locale, form.consent_version.data)
    if form.validate_on_submit():
        # Bots and known or unknown addresses all get the very same answer.
        if filled_by_a_person(form):
            wanted = [t for t in choices.consent_topics() if t.key in set(form.topics.data or [])]
            contact, pending = consent.subscribe(_person(choices.SUBSCRIBE_FORM), form.email.data, form.name.data,
                                                 wanted, text, locale=locale)
            if pending:
                notify.later(notify.confirmation(contact, pending))
            db.session.commit()
        return render_template("public/subscribe_sent.html")
    db.session.commit()  # keeps a consent text created on first use
    form.consent_version.data = text.version
    form.started.data = form_started_stamp()
    topics = {t.key: t for t in choices.consent_topics()}
    return render_template("public/subscribe.html", form=form, text=text, topics=topics), \
        400 if form.is_submitted() else 200


@bp.get("/confirm/<token>")
@limiter.limit(PAGE_VIEWS)
def confirm_page(token: str):
    link = _link(links.CONFIRM, token)
    topics = choices.topics_to_confirm(link.contact, link.argument)
    return render_template("public/confirm.html", topics=topics, form=ActionForm())


@bp.post("/confirm/<token>")
@limiter.limit(PAGE_VIEWS)
def confirm(token: str):
    link = _link(links.CONFIRM, token)
    _submitted(ActionForm())
    topics = choices.topics_to_confirm(link.contact, link.argument)
    consent.confirm(_person(choices.SUBSCRIBE_CONFIRM), link.contact, link.argument, choices.marketing_topics())
    db.session.commit()
    subscribed = choices.preferences(link.contact)["subscribed"]
    return render_template("public/confirmed.html", topics=[t for t in topics if t.key in subscribed],
                           preferences_url=links.preferences_url(link.contact))


# -- data rights ----------------------------------------------------------------------

def _rectify_form(contact: Contact | None = None) -> RectifyForm:
    form = RectifyForm(obj=contact) if contact is not None else RectifyForm()
    form.set_locales(current_app.config["PC_LOCALES"])
    if contact is not None and contact.locale and contact.locale not in current_app.config["PC_LOCALES"]:
        form.locale.choices.append((contact.locale, contact.locale))
    return form


def _data_page(token: str, contact: Contact, form: RectifyForm, status: int = 200):
    return render_template("public/data.html", token=token, contact=contact, form=form, actions=ActionForm(),
                           data=rights.holdings(contact), objected=rights.has_objected(contact),
                           details=details.unlocked(contact)), status


@bp.get("/p/<token>/data")
@limiter.limit(PAGE_VIEWS)
def data_page(token: str):
    contact = _link(links.PREFERENCES, token).contact
    return _data_page(token, contact, _rectify_form(contact))


@bp.post("/p/<token>/data/rectify")
@limiter.limit(PAGE_VIEWS)
def rectify(token: str):
    contact = _link(links.PREFERENCES, token).contact
    form = _rectify_form()
    if form.locale.data and form.locale.data not in dict(form.locale.choices):
        form.locale.choices.append((form.locale.data, form.locale.data))
    if not form.validate_on_submit():
        return _data_page(token, contact, form, 400)
    try:
        changed = people.rectify(_person(DATA_PAGE), contact,
                                 {name: form[name].data for name in contacts.PROFILE_FIELDS})
    except DomainError as exc:
        form[exc.field].errors = [str(exc)] if exc.field in contacts.PROFILE_FIELDS else []
        db.session.rollback()
        return _data_page(token, contact, form, 400)
    if not details.unlocked(contact):  # input checked first; then: a forwarded link may not change details
        db.session.rollback()
        abort(403, _("Open the link we email you from your data page first."))
    db.session.commit()
    use_contact_locale(contact.locale)  # a new language applies from this very message
    flash(_("Your details are updated.") if changed else _("Nothing to change."))
    return redirect(url_for("public.data_page", token=token), 303)


SIMPLE_RIGHTS = {
    "restrict": (people.restrict, _l("Processing is restricted: we send you no marketing email until you lift it.")),
    "lift-restriction": (people.lift_restriction, _l("The restriction is lifted.")),
    "object": (people.object_to_marketing, _l("Your objection is recorded: we send you no more marketing email.")),
}


@bp.post("/p/<token>/data/<any(restrict, 'lift-restriction', object):right>")
@limiter.limit(PAGE_VIEWS)
def exercise_right(token: str, right: str):
    contact = _link(links.PREFERENCES, token).contact
    _submitted(ActionForm())
    action, message = SIMPLE_RIGHTS[right]
    action(_person(DATA_PAGE), contact)
    db.session.commit()
    flash(str(message))
    return redirect(url_for("public.data_page", token=token), 303)


@bp.post("/p/<token>/data/<any(export, erase):action>")
@limiter.limit(SENDS_MAIL)
def request_step_up(token: str, action: str):
    contact = _link(links.PREFERENCES, token).contact
    _submitted(ActionForm())
    requests.receive(_person(DATA_PAGE), contact, requests.STEP_UP_KINDS[action])
    notify.later_step_up(contact, action)
    db.session.commit()
    return render_template("public/check_inbox.html", action=action, token=token,
                           hours=current_app.config["PC_STEPUP_MAX_AGE_HOURS"])


def _step_up(token: str, step_token: str) -> tuple[Contact, str]:
    contact = _link(links.PREFERENCES, token).contact
    step = links.load(links.STEP_UP, step_token)
    if step.contact.id != contact.id or step.argument not in STEP_UP_ACTIONS:
        raise links.LinkError("invalid")
    return contact, step.argument


@bp.get("/p/<token>/data/confirm/<step_token>")
@limiter.limit(PAGE_VIEWS)
def step_up_page(token: str, step_token: str):
    _contact, action = _step_up(token, step_token)
    return render_template("public/step_up.html", action=action, form=ActionForm(), token=token,
                           step_token=step_token)


@bp.post("/p/<token>/data/confirm/<step_token>")
@limiter.limit(PAGE_VIEWS)
def step_up(token: str, step_token: str):
    contact, action = _step_up(token, step_token)
    _submitted(ActionForm())
    if action == "erase":
        people.erase(_person(DATA_PAGE), contact)
        db.session.commit()
        return render_template("public/erased.html")
    fmt = request.args.get("format") if request.args.get("format") in ("csv", "zip") else "json"
    body = people.export(_person(DATA_PAGE), contact, fmt)
    db.session.commit()
    mimetype = {"csv": "text/csv", "zip": "application/zip"}.get(fmt, "application/json")
    return Response(body, mimetype=mimetype,
                    headers={"Content-Disposition": f'attachment; filename="my-data.{fmt}"'})
