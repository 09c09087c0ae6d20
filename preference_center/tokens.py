"""API tokens: random, shown once, stored only as a SHA-256 hash; a role says what a token may read.

A `client` token (the default) reads back only the system messages it sent itself; an `admin` token reads
every one. Idempotency keys are scoped to the token that sent them (see `messages`).
"""
from __future__ import annotations

import hashlib
import re
import secrets
from enum import StrEnum

from sqlalchemy import select

from . import characters
from .errors import N_
from .extensions import db
from .models import ApiToken, SystemMessage, utcnow

PREFIX = "pc_"
NAME_MAX = 100
# A token's name becomes the API actor's name in the audit log and in ledger sources: one line of text
# (the rule of `characters`), and no lone surrogate (what undecodable command-line bytes turn into).
_SURROGATE = re.compile("[\ud800-\udfff]")


class TokenRole(StrEnum):
    CLIENT = "client"
    ADMIN = "admin"


def _digest(plaintext: str) -> str:
    # Tokens carry 256 bits of randomness, so a fast hash is enough; a slow
    # password hash would only cost latency on every API call.
    return hashlib.sha256(plaintext.encode()).hexdigest()


def create(name: str, *, admin: bool = False) -> tuple[ApiToken, str]:
    """Make a token (an admin token when `admin`); the plaintext is returned once and never stored."""
    if not isinstance(name, str) or not name or len(name) > NAME_MAX:
        raise ValueError(N_("a token name of 1 to %(limit)s characters is required", limit=NAME_MAX))
    if characters.refused(name) or _SURROGATE.search(name) or name != name.strip():
        raise ValueError(N_("a token name is one line of printable characters, without surrounding spaces"))
    if db.session.scalar(select(ApiToken).where(ApiToken.name == name)) is not None:
        raise ValueError(N_("a token named %(name)r exists already", name=name))
    plaintext = PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(name=name, token_hash=_digest(plaintext), prefix=plaintext[:10],
                     role=TokenRole.ADMIN if admin else TokenRole.CLIENT)
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


def is_admin(token: ApiToken) -> bool:
    return token.role == TokenRole.ADMIN


def may_read(token: ApiToken, message: SystemMessage) -> bool:
    """Whether `token` may see `message`: the token that sent it, or any admin token."""
    return is_admin(token) or (message.api_token_id is not None and message.api_token_id == token.id)


def by_name(name: str) -> ApiToken | None:
    return db.session.scalar(select(ApiToken).where(ApiToken.name == name))


def revoke(name: str) -> bool:
    token = by_name(name)
    if token is None or token.revoked_at is not None:
        return False
    token.revoked_at = utcnow()
    return True
