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
from sqlalchemy import select

from .. import audit, staff
from ..emails import InvalidEmail, normalize
from ..extensions import db
from ..models import StaffUser, utcnow

MAX_FAILURES = 5
LOCK_FOR = dt.timedelta(minutes=15)
# One message for unknown users, wrong passwords and locked accounts: the
# page must not tell an attacker which addresses have accounts.
FAILED = "Wrong email or password, or the account is locked after too many attempts. Try again later."
SESSION_KEYS = ("staff_id", "staff_fp", "staff_since", "staff_nonce")
# A real argon2 hash to verify against when the user is unknown, so both paths take as long.
_DUMMY_HASH = staff.hash_password(secrets.token_urlsafe(16))

READ_METHODS = ("GET", "HEAD", "OPTIONS")


def _fingerprint(user: StaffUser) -> str:
    return hashlib.sha256(f"{user.id}:{user.password_hash}".encode()).hexdigest()[:32]


def session_lifetime() -> dt.timedelta:
    return dt.timedelta(hours=int(current_app.config.get("PC_STAFF_SESSION_HOURS", 8)))


def authenticate(email: str, password: str, *, ip: str | None = None) -> StaffUser | None:
    """The active user with this email and password, or None; counts failures and locks.

    The caller commits (failure counters are state too).
    """
    try:
        address = normalize(email or "")
    except InvalidEmail:
        address = None
    user = db.session.scalar(select(StaffUser).where(StaffUser.email == address)) if address else None
    if user is None:
        staff.check_password(StaffUser(password_hash=_DUMMY_HASH), password or "")
        return None
    now = utcnow()
    if user.locked_until is not None and user.locked_until > now:
        audit.record(f"staff:{user.email}", "staff.login_refused_locked", target_type="staff_user",
                     target_id=user.email, ip=ip)
        return None
    if not staff.check_password(user, password or "") or not user.active:
        user.failed_logins = (user.failed_logins or 0) + 1
        detail = {"failed_logins": user.failed_logins}
        if user.failed_logins >= MAX_FAILURES:
            user.locked_until = now + LOCK_FOR
            user.failed_logins = 0
            detail["locked_until"] = user.locked_until.isoformat()
            audit.record(f"staff:{user.email}", "staff.locked", target_type="staff_user",
                         target_id=user.email, detail=detail, ip=ip)
        else:
            audit.record(f"staff:{user.email}", "staff.login_failed", target_type="staff_user",
                         target_id=user.email, detail=detail, ip=ip)
        return None
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = now
    audit.record(f"staff:{user.email}", "staff.login", target_type="staff_user", target_id=user.email, ip=ip)
    return user


def start_session(user: StaffUser) -> None:
    """A fresh session for `user`: nothing from before sign-in survives."""
    _clear()
    session.permanent = True
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
        abort(403, "Your role (viewer) can look but not change anything.")
    return None


def role_required(*roles: str):
    """Only these roles may open the view (GET included)."""
    def decorator(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            if g.get("staff") is None:
                abort(401)
            if g.staff.role not in roles:
                abort(403, f"This page is for: {', '.join(roles)}.")
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


def actor() -> str:
    return f"staff:{g.staff.email}"


def record(action: str, *, target_type: str | None = None, target_id=None, detail: dict | None = None):
    """An audit entry by the signed-in staff member (in the caller's transaction)."""
    return audit.record(actor(), action, target_type=target_type, target_id=target_id, detail=detail,
                        ip=request.remote_addr)


def safe_next(target: str | None) -> str:
    """Only redirect back into /admin (no open redirect)."""
    if target and target.startswith("/admin") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("admin.dashboard")
