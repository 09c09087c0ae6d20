"""API tokens: random, shown once, stored only as a SHA-256 hash."""
from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select

from .extensions import db
from .models import ApiToken, utcnow

PREFIX = "pc_"


def _digest(plaintext: str) -> str:
    # Tokens carry 256 bits of randomness, so a fast hash is enough; a slow
    # password hash would only cost latency on every API call.
    return hashlib.sha256(plaintext.encode()).hexdigest()


def create(name: str) -> tuple[ApiToken, str]:
    """Make a token; the plaintext is returned once and never stored."""
    if not name or len(name) > 100:
        raise ValueError("a token name of 1 to 100 characters is required")
    if db.session.scalar(select(ApiToken).where(ApiToken.name == name)) is not None:
        raise ValueError(f"a token named {name!r} exists already")
    plaintext = PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(name=name, token_hash=_digest(plaintext), prefix=plaintext[:10])
    db.session.add(token)
    return token, plaintext


def authenticate(plaintext: str) -> ApiToken | None:
    """The live token matching `plaintext`, or None."""
    if not plaintext or not plaintext.startswith(PREFIX) or len(plaintext) > 200:
        return None
    token = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == _digest(plaintext)))
    if token is None or token.revoked_at is not None:
        return None
    return token


def revoke(name: str) -> bool:
    token = db.session.scalar(select(ApiToken).where(ApiToken.name == name))
    if token is None or token.revoked_at is not None:
        return False
    token.revoked_at = utcnow()
    return True
