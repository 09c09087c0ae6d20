"""Staff sign-in: password check with lockout, the session, and role checks on every view.

The session is Flask's signed cookie. Signing in clears it and starts a new
one (no fixation), marks it permanent, and pins a fingerprint of the password
hash: changing the password or deactivating the user ends every session.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from functools import wraps

from flask import abort, current_app, g, redirect, request, session, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from .. import actors
from ..commands import access
from ..extensions import db
from ..models import StaffUser, utcnow
from .labels import label

MAX_FAILURES, LOCK_FOR = access.MAX_FAILURES, access.LOCK_FOR
# One message for unknown users, wrong passwords and locked accounts: the
# page must not tell an attacker which addresses have accounts.
FAILED = _l("Wrong email or password, or the account is locked after too many attempts. Try again later.")
SESSION_KEYS = ("staff_id", "staff_fp", "staff_since", "staff_nonce", "staff_sid")

READ_METHODS = ("GET", "HEAD", "OPTIONS")


def _fingerprint(user: StaffUser) -> str:
    return hashlib.sha256(f"{user.id}:{user.password_hash}".encode()).hexdigest()[:32]


def session_lifetime() -> dt.timedelta:
    return dt.timedelta(hours=current_app.config["PC_STAFF_SESSION_HOURS"])


def start_session(user: StaffUser) -> None:
    """A fresh session for `user`: nothing from before sign-in survives; the server holds it open."""
    _clear()
    session.permanent = True
    session["staff_sid"] = access.open_session(user)
    session["staff_id"] = user.id
    session["staff_fp"] = _fingerprint(user)
    session["staff_since"] = utcnow().timestamp()
    session["staff_nonce"] = secrets.token_urlsafe(16)


def end_session() -> None:
    _clear()


def _clear() -> None:
    session.clear()
    # Flask-WTF caches this request's CSRF token; the new session needs a new one.
    g.pop("csrf_token", None)


def current_user() -> StaffUser | None:
    """The signed-in user of this request, if the session is still valid."""
    user_id = session.get("staff_id")
    if user_id is None:
        return None
    since = session.get("staff_since", 0)
    if utcnow().timestamp() - float(since) > session_lifetime().total_seconds():
        return None
    user = db.session.get(StaffUser, user_id)
    if user is None or not user.active or session.get("staff_fp") != _fingerprint(user):
        return None
    if not access.live_session(session.get("staff_sid"), user.id):
        return None  # signed out, deactivated or revoked: a copied cookie is worth nothing
    return user


def load_staff():
    """Before every admin view: require a session, and refuse changes to viewers."""
    g.staff = None
    if request.endpoint in ("admin.login", "admin.static"):
        return None
    user = current_user()
    if user is None:
        if session.get("staff_id") is not None:
            session.clear()
        if request.method in READ_METHODS:
            return redirect(url_for("admin.login", next=request.full_path if request.query_string else request.path))
        abort(401)
    g.staff = user
    # Viewers read; the only thing they may post is signing out.
    if user.role == "viewer" and request.method not in READ_METHODS and request.endpoint != "admin.logout":
        abort(403, _("Your role (viewer) can look but not change anything."))
    return None


def role_required(*roles: str):
    """Only these roles may open the view (GET included)."""
    def decorator(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            if g.get("staff") is None:
                abort(401)
            if g.staff.role not in roles:
                abort(403, _("This page is for: %(roles)s.", roles=", ".join(label(r, "role") for r in roles)))
            return view(*args, **kwargs)
        return wrapped
    return decorator


def login_required(view):
    @wraps(view)
    def wrapped(*args, **kwargs):
        if g.get("staff") is None:
            return redirect(url_for("admin.login", next=request.path))
        return view(*args, **kwargs)
    return wrapped


def current_actor() -> actors.Actor:
    """The signed-in staff member as the actor of the commands this request calls."""
    return actors.staff(g.staff.email, request.remote_addr)


def actor() -> str:
    return current_actor().label


def authenticate(email: str, password: str, *, ip: str | None = None) -> StaffUser | None:
    """The active user with this email and password, or None (see commands.access.sign_in)."""
    return access.sign_in(email, password, ip=ip)


def safe_next(target: str | None) -> str:
    """Only redirect back into /admin (no open redirect)."""
    if target and target.startswith("/admin") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("admin.dashboard")
