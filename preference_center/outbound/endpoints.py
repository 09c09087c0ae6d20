"""Webhook endpoints: their secrets, and the rule on where they may point.

A target must be http(s) and resolve only to public addresses: loopback,
private, link-local, shared, reserved and multicast addresses are refused (every
address the name resolves to is checked), so an endpoint cannot be aimed at
internal services. `PC_WEBHOOK_ALLOW_PRIVATE=1` lifts that for development and
tests. Delivery checks again at each attempt and connects to the address it
checked, so a name that later resolves elsewhere changes nothing.
"""
from __future__ import annotations

import base64
import ipaddress
import secrets
import socket
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import select

from .. import change_feed
from ..errors import N_, Code, DomainError
from ..extensions import db
from ..models import WebhookEndpoint

URL_MAX = 2000
SECRET_PREFIX = "whsec_"


class Refused(ValueError):
    """The target may not be called (its scheme, or an address it resolves to)."""


def new_secret() -> str:
    """A Standard Webhooks secret: whsec_ and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def allow_private() -> bool:
    return bool(current_app.config.get("PC_WEBHOOK_ALLOW_PRIVATE"))


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def target(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path with query) of a webhook URL; Refused if it is not one."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise Refused(N_("not a usable URL (%(reason)s)", reason=str(exc))) from None
    if parts.scheme not in ("http", "https"):
        raise Refused(N_("the URL must start with https:// (or http://)"))
    if not parts.hostname:
        raise Refused(N_("the URL has no host"))
    if parts.username is not None or parts.password is not None:
        raise Refused(N_("the URL must not carry a user name or password"))
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), path


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, each one allowed; Refused otherwise."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Refused(N_("the host %(host)r does not resolve (%(reason)s)", host=host, reason=str(exc))) from None
    addresses = list(dict.fromkeys(info[4][0] for info in found))
    if not addresses:
        raise Refused(N_("the host %(host)r does not resolve", host=host))
    if not allow_private():
        private = [a for a in addresses if not _public(a)]
        if private:
            raise Refused(N_("the host %(host)r resolves to %(address)s, a loopback, private or reserved address; "
                              "webhooks only go to public addresses (PC_WEBHOOK_ALLOW_PRIVATE=1 lifts this for "
                              "development)", host=host, address=private[0]))
    return addresses


def check_url(url: str) -> str:
    """A webhook URL that may be stored; DomainError (field "url") if not."""
    url = (url or "").strip()
    if not url or len(url) > URL_MAX:
        raise DomainError(N_("url must be 1 to %(limit)s characters", limit=URL_MAX), "url")
    try:
        _, host, port, _ = target(url)
        resolve(host, port)
    except Refused as exc:
        raise DomainError(N_("url: %(reason)s", reason=exc.args[0]), "url") from None
    return url


def check_events(events: object) -> list[str]:
    """The change types an endpoint asks for; DomainError (field "events") if any is unknown."""
    if not isinstance(events, list) or not events:
        raise DomainError(N_("events must be a non-empty list of change types"), "events")
    unknown = [e for e in events if e not in change_feed.TYPES]
    if unknown:
        raise DomainError(N_("events: unknown change type %(type)r; the types are %(types)s", type=str(unknown[0])[:60],
                              types=', '.join(change_feed.TYPES)), "events")
    return list(dict.fromkeys(events))


def get(name: str) -> WebhookEndpoint | None:
    return db.session.scalar(select(WebhookEndpoint).where(WebhookEndpoint.name == name))


def require(name: str) -> WebhookEndpoint:
    endpoint = get(name)
    if endpoint is None:
        raise DomainError(N_("no webhook named %(name)r", name=name), "name", code=Code.NOT_FOUND)
    return endpoint


def all_endpoints() -> list[WebhookEndpoint]:
    return list(db.session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.name)))


def as_dict(endpoint: WebhookEndpoint) -> dict:
    return {"name": endpoint.name, "url": endpoint.url, "events": list(endpoint.events or []),
            "enabled": endpoint.enabled, "disabled_reason": endpoint.disabled_reason,
            "created_at": endpoint.created_at.isoformat()}
