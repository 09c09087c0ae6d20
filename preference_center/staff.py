"""Staff users: roles and password hashing (argon2)."""
from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select

from .emails import normalize
from .errors import N_
from .extensions import db
from .models import StaffUser

ROLES = ("admin", "marketer", "viewer")
_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password(user: StaffUser, password: str) -> bool:
    """Verify a password, upgrading the stored hash when parameters changed."""
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return True


def create_user(email: str, role: str, password: str) -> StaffUser:
    if role not in ROLES:
        raise ValueError(N_("role must be one of %(roles)s", roles=', '.join(ROLES)))
    if len(password) < 10:
        raise ValueError(N_("passwords need at least 10 characters"))
    address = normalize(email)
    if db.session.scalar(select(StaffUser).where(StaffUser.email == address)) is not None:
        raise ValueError(N_("a staff user %(address)s exists already", address=address))
    user = StaffUser(email=address, role=role, password_hash=hash_password(password))
    db.session.add(user)
    return user
