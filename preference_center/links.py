"""Signed links in email: one salt per purpose, rotating keys, per-contact revocation.

A token carries [contact id, contact token version, purpose argument]. Bumping
a contact's token version (erasure, "sign out all links") revokes every link
made before. Keys come from PC_SECRET_KEYS, oldest first: the newest signs,
all of them verify, so keys can be rotated without breaking links in old mail.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from binascii import b2a_base64
from dataclasses import dataclass
from functools import lru_cache

from flask import current_app
from itsdangerous import BadSignature, Serializer, SignatureExpired, URLSafeTimedSerializer
from itsdangerous import timed as _timed  # its module's `time` is the clock tokens are stamped with
from itsdangerous.encoding import base64_decode, base64_encode, bytes_to_int, int_to_bytes
from itsdangerous.signer import HMACAlgorithm

from . import inputs
from .extensions import db
from .models import Contact, Topic

PREFERENCES = "preferences"
UNSUBSCRIBE = "unsubscribe"
CONFIRM = "confirm"
STEP_UP = "data-rights-step-up"
# A one-time link to the person's copy that they hand to another company (portability, issue 14).
HANDOVER = "portability-handover"
# A change of address, confirmed through the new address (argument: the new address).
CHANGE_ADDRESS = "change-address"

# Long enough that old mail keeps working (CAN-SPAM asks 30 days, CASL 60).
LONG_LIVED = (PREFERENCES, UNSUBSCRIBE)


class LinkError(Exception):
    """A link that cannot be used; `kind` is invalid, expired or revoked."""

    def __init__(self, kind: str):
        super().__init__(kind)
        self.kind = kind


@dataclass(frozen=True)
class Link:
    contact: Contact
    argument: object


class _OneShotHMAC(HMACAlgorithm):
    """itsdangerous's HMAC-SHA1, through the one-shot C `hmac.digest` (the same bytes, several times faster)."""

    def get_signature(self, key: bytes, value: bytes) -> bytes:
        return hmac.digest(key, value, "sha1")


class _Serializer(URLSafeTimedSerializer):
    """URLSafeTimedSerializer without the zlib attempt on short payloads.

    itsdangerous compresses every payload and keeps the result when shorter;
    a [contact, version, argument] list gains nothing from it, and loading
    accepts either form, so short payloads go out as plain base64 JSON.
    """

    def dump_payload(self, obj) -> bytes:
        plain = Serializer.dump_payload(self, obj)
        return base64_encode(plain) if len(plain) <= 64 else super().dump_payload(obj)


@lru_cache(maxsize=64)
def _serializer_for(keys: tuple[str, ...], purpose: str) -> URLSafeTimedSerializer:
    return _Serializer(list(keys), salt=f"pc.{purpose}", signer_kwargs={"algorithm": _OneShotHMAC()})


def _purpose_key(purpose: str, key: str) -> bytes:
    """The HMAC key itsdangerous derives from a secret key for our serializer of `purpose` (its "django-concat"
    derivation: sha1(salt + b"signer" + key), the salt being "pc.<purpose>")."""
    return hashlib.sha1(f"pc.{purpose}".encode() + b"signer" + key.encode()).digest()


class _FastSigner:
    """Makes the very tokens `_Serializer.dumps` makes, for short payloads, with precomputed HMAC states.

    itsdangerous derives the key (sha1(salt + b"signer" + newest key)) and
    starts an HMAC for every token; here both are done once per key set and
    purpose: HMAC-SHA1 as RFC 2104 defines it, sha1(key ^ opad + sha1(key ^
    ipad + value)), from the two SHA-1 states with the padded key already
    hashed, which each link copies (what `hmac` does, without its Python
    wrapper). Payloads over 64 bytes (which itsdangerous may compress) go
    through the serializer itself.
    """

    def __init__(self, keys: tuple[str, ...], purpose: str) -> None:
        self.serializer = _serializer_for(keys, purpose)
        key = _purpose_key(purpose, keys[-1]).ljust(_SHA1_BLOCK, b"\0")  # 20 bytes: shorter than the block, so padded, never hashed
        self._inner = hashlib.sha1(key.translate(_IPAD))
        self._outer = hashlib.sha1(key.translate(_OPAD))
        self._stamp = (None, b"")  # (second, its base64 timestamp): a campaign signs thousands per second

    def dumps(self, contact_id: int, version: int, argument: object) -> str:
        if type(contact_id) is int and type(version) is int and type(argument) is int:
            payload = b"[%d,%d,%d]" % (contact_id, version, argument)
        else:
            payload = json.dumps([contact_id, version, argument], separators=(",", ":")).encode()
        if len(payload) > 64:
            return self.serializer.dumps([contact_id, version, argument])
        return self.sign(payload)

    def sign(self, payload: bytes) -> str:
        """The token of a payload of at most 64 bytes, stamped now."""
        now = int(_timed.time.time())
        second, stamp = self._stamp
        if second != now:
            stamp = b"." + base64_encode(int_to_bytes(now))
            self._stamp = (now, stamp)
        value = _b64(payload) + stamp
        inner = self._inner.copy()
        inner.update(value)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return (value + b"." + _b64(outer.digest())).decode("ascii")


_SHA1_BLOCK = hashlib.sha1().block_size
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))
_URLSAFE = bytes.maketrans(b"+/", b"-_")


class _FastVerifier:
    """Checks tokens as `_Serializer.loads` does, with the keys derived once per key set and purpose.

    itsdangerous derives every key (sha1(salt + b"signer" + key)) and builds
    its HMAC objects on each call. Here the common case (an uncompressed
    payload, a signature one of the keys made, an age from 0 to `max_age`) is
    answered with one `hmac.digest` per key tried; anything else goes to the
    serializer itself, so every refusal (bad signature, expired, malformed) is
    exactly itsdangerous's.
    """

    def __init__(self, keys: tuple[str, ...], purpose: str) -> None:
        self.serializer = _serializer_for(keys, purpose)
        self.keys = tuple(_purpose_key(purpose, key) for key in reversed(keys))

    def loads(self, token: str, max_age: int):
        signed, _, signature = token.rpartition(".")
        payload, _, stamp = signed.rpartition(".")
        if payload and not payload.startswith(".") and token.isascii():
            try:
                digest, value = base64_decode(signature), signed.encode("ascii")
                if any(hmac.compare_digest(digest, hmac.digest(key, value, "sha1")) for key in self.keys):
                    age = int(_timed.time.time()) - bytes_to_int(base64_decode(stamp))
                    if 0 <= age <= max_age:
                        return json.loads(base64_decode(payload).decode("utf-8"))
            except Exception:  # noqa: BLE001, S110 - the serializer below says what is wrong
                pass
        return self.serializer.loads(token, max_age=max_age)


@lru_cache(maxsize=64)
def _verifier_for(keys: tuple[str, ...], purpose: str) -> _FastVerifier:
    return _FastVerifier(keys, purpose)


def _b64(data: bytes) -> bytes:
    """itsdangerous's base64_encode for bytes: URL-safe, without padding (urlsafe_b64encode, one call less)."""
    return b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=")


class UrlMaker:
    """Signed links of one purpose for many contacts, with the keys and the base URL read once (a campaign
    batch): `maker(contact, argument)` is `url(path, make(purpose, contact, argument))`."""

    def __init__(self, purpose: str, path: str) -> None:
        self.signer = _signer_for(tuple(current_app.config["PC_SECRET_KEYS"]), purpose)
        self.prefix = f"{current_app.config['PC_BASE_URL']}{path}"

    def __call__(self, contact, argument: object = 0) -> str:
        return self.of(contact.id, contact.token_version, argument)

    def of(self, contact_id: int, version: int, argument: object = 0) -> str:
        """The link of a contact known by its id and token version (read once for several links)."""
        return self.prefix + self.signer.dumps(contact_id, version, argument)


@lru_cache(maxsize=64)
def _signer_for(keys: tuple[str, ...], purpose: str) -> _FastSigner:
    return _FastSigner(keys, purpose)


def _serializer(purpose: str) -> URLSafeTimedSerializer:
    """One serializer per (keys, purpose), built once: signing mail for a million recipients builds none."""
    return _serializer_for(tuple(current_app.config["PC_SECRET_KEYS"]), purpose)


def _max_age(purpose: str) -> int:
    config = current_app.config
    if purpose in LONG_LIVED:
        return config["PC_LINK_MAX_AGE_DAYS"] * 86400
    if purpose in (CONFIRM, CHANGE_ADDRESS):
        return config["PC_CONFIRM_MAX_AGE_HOURS"] * 3600
    if purpose == HANDOVER:
        return config["PC_PORTABILITY_LINK_DAYS"] * 86400
    return config["PC_STEPUP_MAX_AGE_HOURS"] * 3600


def make(purpose: str, contact: Contact, argument: object = 0) -> str:
    """Sign a token for `purpose` about `contact`."""
    return _signer_for(tuple(current_app.config["PC_SECRET_KEYS"]), purpose).dumps(
        contact.id, contact.token_version, argument)


def verify(purpose: str, token: str) -> tuple[int, int, object]:
    """Check a token's signature and age only: (contact id, token version, argument).

    No database read: `load` goes on to check the contact, the one-click path
    checks it inside its INSERT.
    """
    try:
        payload = _verifier_for(tuple(current_app.config["PC_SECRET_KEYS"]), purpose).loads(
            token, max_age=_max_age(purpose))
    except SignatureExpired:
        raise LinkError("expired") from None
    except BadSignature:
        raise LinkError("invalid") from None
    # A token signed by us holds what `make` put in; anything else (a key leaked, a bug) is just a bad link,
    # never an int too large for the database or a type the pages do not expect.
    if not (isinstance(payload, list) and len(payload) == 3 and inputs.fits(payload[0], Contact.id)
            and inputs.fits(payload[1], Contact.token_version)
            and (purpose != UNSUBSCRIBE or _names_a_topic(payload[2]))):
        raise LinkError("invalid")
    return payload[0], payload[1], payload[2]


def _names_a_topic(argument: object) -> bool:
    """An unsubscribe link's argument: a topic id, or 0 for all marketing."""
    return inputs.fits(argument, Topic.id, smallest=0)


def load(purpose: str, token: str) -> Link:
    """Verify a token for `purpose`; raise LinkError if it is not good now."""
    contact_id, version, argument = verify(purpose, token)
    contact = db.session.get(Contact, contact_id)
    if contact is None or contact.token_version != version or contact.status == "erased":
        raise LinkError("revoked")
    return Link(contact, argument)


def url(endpoint_path: str, token: str) -> str:
    """Absolute URL under PC_BASE_URL, e.g. url('/p/', token)."""
    return f"{current_app.config['PC_BASE_URL']}{endpoint_path}{token}"


def preferences_url(contact: Contact) -> str:
    return url("/p/", make(PREFERENCES, contact))


def unsubscribe_url(contact: Contact, topic_id: int | None = None) -> str:
    """One-click unsubscribe link; topic 0 means all marketing."""
    return url("/u/", make(UNSUBSCRIBE, contact, topic_id or 0))
