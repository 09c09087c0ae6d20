"""Recipient pages of issue 14: the complete copy as a ZIP, and the one-time link to hand it to another company."""
from __future__ import annotations

from flask import Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from .. import actors, links, notify
from ..commands import DomainError, people
from ..emails import InvalidEmail
from ..extensions import db
from ..limits import PAGE_VIEWS, SENDS_MAIL, limiter
from . import bp, details
from .forms import ActionForm
from .routes import DATA_PAGE, _client, _link, _person, _step_up, _submitted

HANDOVER_PAGE = "portability-link"


@bp.post("/p/<token>/data/confirm/<step_token>/handover")
@limiter.limit(PAGE_VIEWS)
def make_handover(token: str, step_token: str):
    """Behind the mailed step-up link: make the one-time link for another company and show it."""
    contact, action = _step_up(token, step_token)
    if action != "export":
        raise links.LinkError("invalid")
    _submitted(ActionForm())
    handover = people.handover_link(_person(DATA_PAGE), contact)
    db.session.commit()
    return render_template("public/handover.html", url=links.url("/portability/", handover), token=token,
                           days=current_app.config["PC_PORTABILITY_LINK_DAYS"])


@bp.get("/portability/<handover>")
@limiter.limit(PAGE_VIEWS)
def handover_page(handover: str):
    """What the link holds and a button: a GET changes nothing (link scanners prefetch)."""
    _link(links.HANDOVER, handover)
    return render_template("public/handover_download.html", form=ActionForm(), handover=handover)


@bp.post("/portability/<handover>")
@limiter.limit(PAGE_VIEWS)
def handover_download(handover: str):
    """The complete copy as a ZIP, once."""
    link = _link(links.HANDOVER, handover)
    _submitted(ActionForm())
    try:
        body = people.hand_over(actors.link(HANDOVER_PAGE, **_client()), link.contact, link.argument)
    except DomainError as exc:
        db.session.rollback()
        status = 410 if exc.status == 409 else exc.status
        return render_template("public/link_error.html", kind="used" if status == 410 else "invalid"), status
    db.session.commit()
    return Response(body, mimetype="application/zip",
                    headers={"Content-Disposition": 'attachment; filename="personal-data.zip"'})


# -- change of address: confirmed through the new address ------------------------------------

@bp.post("/p/<token>/data/address")
@limiter.limit(SENDS_MAIL)
def ask_address_change(token: str):
    contact = _link(links.PREFERENCES, token).contact
    _submitted(ActionForm())
    if not details.unlocked(contact):
        abort(403, _("Open the link we email you from your data page first."))
    try:
        people.ask_address_change(_person(DATA_PAGE), contact, request.form.get("email", ""))
    except (DomainError, InvalidEmail) as exc:
        db.session.rollback()
        flash(_("The new address: %(problem)s", problem=str(exc)), "error")
        return redirect(url_for("public.data_page", token=token), 303)
    db.session.commit()
    return render_template("public/address_sent.html", token=token,
                           hours=current_app.config["PC_CONFIRM_MAX_AGE_HOURS"])


def _address_change(token: str, change: str):
    contact = _link(links.PREFERENCES, token).contact
    step = links.load(links.CHANGE_ADDRESS, change)
    if step.contact.id != contact.id or not isinstance(step.argument, str):
        raise links.LinkError("invalid")
    return contact, step.argument


@bp.get("/p/<token>/data/address/<change>")
@limiter.limit(PAGE_VIEWS)
def address_change_page(token: str, change: str):
    """A button: a GET changes nothing (link scanners prefetch)."""
    _contact, address = _address_change(token, change)
    return render_template("public/address_confirm.html", address=address, form=ActionForm(), token=token,
                           change=change)


@bp.post("/p/<token>/data/address/<change>")
@limiter.limit(PAGE_VIEWS)
def change_address(token: str, change: str):
    contact, address = _address_change(token, change)
    _submitted(ActionForm())
    try:
        people.change_address(_person(DATA_PAGE), contact, address)
    except DomainError as exc:
        db.session.rollback()
        return render_template("error.html", status=exc.status, title=_("Not possible"), message=str(exc)), \
            exc.status
    db.session.commit()
    details.unlock(contact)  # opened in the new inbox: the person has shown they read it
    return redirect(url_for("public.data_page", token=links.make(links.PREFERENCES, contact)), 303)


# -- personal details behind a mailed link ------------------------------------------------------

@bp.post("/p/<token>/data/details")
@limiter.limit(SENDS_MAIL)
def ask_details(token: str):
    """Mail the link that shows and unlocks the person's details on this browser."""
    contact = _link(links.PREFERENCES, token).contact
    _submitted(ActionForm())
    step = links.make(links.STEP_UP, contact, "details")
    url = links.url("/p/", token) + "/data/details/" + step
    hours = current_app.config["PC_STEPUP_MAX_AGE_HOURS"]
    notify.later((contact.email, _("See and correct your details"),
                  _("Open this link to see and correct the details we hold about you:") + f"\n\n{url}\n\n"
                  + _("If you did not ask for this, ignore this email.") + "\n"))
    db.session.commit()  # nothing changed: the commit sends the mail
    return render_template("public/address_sent.html", token=token, hours=hours, details=True)


@bp.get("/p/<token>/data/details/<step_token>")
@limiter.limit(PAGE_VIEWS)
def open_details(token: str, step_token: str):
    contact = _link(links.PREFERENCES, token).contact
    step = links.load(links.STEP_UP, step_token)
    if step.contact.id != contact.id or step.argument != "details":
        raise links.LinkError("invalid")
    details.unlock(contact)
    return redirect(url_for("public.data_page", token=token), 303)
