"""Signing in and out, and the dashboard."""
from __future__ import annotations

from flask import flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _

from ...commands import access
from ...extensions import db
from ...limits import limiter
from .. import auth, bp, queries
from ..forms import LoginForm

LOGIN_LIMIT = "20/minute"


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(LOGIN_LIMIT, methods=["POST"])
def login():
    if auth.current_user() is not None and request.method == "GET":
        return redirect(url_for("admin.dashboard"))
    form = LoginForm()
    error = None
    if form.validate_on_submit():
        user = auth.authenticate(form.email.data, form.password.data, ip=request.remote_addr)
        if user is not None:
            auth.start_session(user)
        db.session.commit()
        if user is not None:
            return redirect(auth.safe_next(request.args.get("next")))
        error = str(auth.FAILED)
    elif request.method == "POST":
        error = str(auth.FAILED) if not form.errors.get("csrf_token") else _("The form expired; please try again.")
    return render_template("admin/login.html", form=form, error=error), 401 if error else 200


@bp.post("/logout")
def logout():
    access.sign_out(auth.current_actor(), session.get("staff_sid"))
    db.session.commit()
    auth.end_session()
    flash(_("You are signed out."))
    return redirect(url_for("admin.login"))


@bp.get("/")
def dashboard():
    return render_template("admin/dashboard.html", counts=queries.counts())
