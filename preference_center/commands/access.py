"""Staff users and API tokens: create, deactivate, activate, revoke."""
from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from sqlalchemy import select, update

from .. import actors, audit, staff, tokens
from ..actors import Actor
from ..emails import InvalidEmail, normalize
from ..errors import N_, Code, DomainError
from ..extensions import db
from ..models import ApiToken, StaffSession, StaffUser, utcnow

MAX_FAILURES = 5
LOCK_FOR = dt.timedelta(minutes=15)
# A real argon2 hash to verify against when the user is unknown, so both paths take as long.
_DUMMY_HASH = staff.hash_password(secrets.token_urlsafe(16))


def create_user(actor: Actor, email: str, role: str, password: str) -> StaffUser:
    try:
        user = staff.create_user(email, role, password)
    except InvalidEmail as exc:
        raise DomainError(N_("invalid email address: %(reason)s", reason=exc.args[0]), "email",
                          code=Code.INVALID_EMAIL) from exc
    except ValueError as exc:
        raise DomainError(exc.args[0], "email" if "exists" in str(exc) else "password") from exc
    audit.record(actor, "staff.create", target_type="staff_user", target_id=user.email, detail={"role": role})
    return user


def deactivate_user(actor: Actor, user: StaffUser, *, own_id: int | None = None) -> None:
    """Stop a user signing in; every session of theirs ends."""
    if own_id is not None and user.id == own_id:
        raise DomainError(N_("you cannot deactivate yourself"), code=Code.CONFLICT)
    if user.active:
        user.active = False
        end_sessions(user)
        audit.record(actor, "staff.deactivate", target_type="staff_user", target_id=user.email)


def activate_user(actor: Actor, user: StaffUser) -> None:
    user.active = True
    user.failed_logins, user.locked_until = 0, None
    audit.record(actor, "staff.activate", target_type="staff_user", target_id=user.email)


def create_token(actor: Actor, name: str, *, admin: bool = False) -> tuple[ApiToken, str]:
    """A new API token (an admin token reads every system message); the plaintext is returned once, never stored."""
    try:
        token, plaintext = tokens.create((name or "").strip(), admin=admin)
    except ValueError as exc:
        raise DomainError(exc.args[0], "name", code=Code.CONFLICT if "exists" in str(exc) else Code.VALIDATION) from exc
    audit.record(actor, "token.create", target_type="api_token", target_id=token.name, detail={"role": token.role})
    return token, plaintext


def revoke_token(actor: Actor, token: ApiToken) -> bool:
    if not tokens.revoke(token.name):
        return False
    audit.record(actor, "token.revoke", target_type="api_token", target_id=token.name)
    return True


def sign_in(email: str, password: str, *, ip: str | None = None) -> StaffUser | None:
    """The active user with this email and password, or None; counts failures, locks, audits each attempt.

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
        # As slow as any other refusal: the answer's timing must not tell that the account exists.
        staff.check_password(StaffUser(password_hash=_DUMMY_HASH), password or "")
        audit.record(actors.staff(user.email, ip), "staff.login_refused_locked", target_type="staff_user",
                     target_id=user.email, ip=ip)
        return None
    if not staff.check_password(user, password or "") or not user.active:
        user.failed_logins = (user.failed_logins or 0) + 1
        detail = {"failed_logins": user.failed_logins}
        if user.failed_logins >= MAX_FAILURES:
            user.locked_until = now + LOCK_FOR
            user.failed_logins = 0
            detail["locked_until"] = user.locked_until.isoformat()
            audit.record(actors.staff(user.email, ip), "staff.locked", target_type="staff_user",
                         target_id=user.email, detail=detail, ip=ip)
        else:
            audit.record(actors.staff(user.email, ip), "staff.login_failed", target_type="staff_user",
                         target_id=user.email, detail=detail, ip=ip)
        return None
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = now
    audit.record(actors.staff(user.email, ip), "staff.login", target_type="staff_user", target_id=user.email, ip=ip)
    return user


def open_session(user: StaffUser) -> str:
    """A new server-side session for `user`; returns the random id the cookie carries (stored only hashed)."""
    session_id = secrets.token_urlsafe(32)
    db.session.add(StaffSession(id=_session_hash(session_id), user_id=user.id, created_at=utcnow()))
    return session_id


def live_session(session_id: str | None, user_id: int | None) -> bool:
    """Whether the cookie's session is still open on the server for this user."""
    if not session_id or not isinstance(session_id, str) or len(session_id) > 100:
        return False
    row = db.session.get(StaffSession, _session_hash(session_id))
    return row is not None and row.user_id == user_id and row.revoked_at is None


def sign_out(actor: Actor, session_id: str | None) -> None:
    """End this session on the server (every copy of the cookie stops working) and note it."""
    if session_id and isinstance(session_id, str):
        row = db.session.get(StaffSession, _session_hash(session_id))
        if row is not None and row.revoked_at is None:
            row.revoked_at = utcnow()
    audit.record(actor, "staff.logout", target_type="staff_user", target_id=actor.name)


def end_sessions(user: StaffUser) -> int:
    """Revoke every open session of `user` (deactivation, password change)."""
    result = db.session.execute(update(StaffSession).where(StaffSession.user_id == user.id,
                                                           StaffSession.revoked_at.is_(None))
                                .values(revoked_at=utcnow()))
    return result.rowcount or 0


def _session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()
