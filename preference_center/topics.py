"""Topics: create, change and retire them under the rules of their kind and legal basis.

A topic's kind never changes (subscriptions and ledger events rest on it);
system topics have basis `contract`; marketing topics need `consent` or
`legitimate_interest`, and only the latter reaches a relationship by default:
customers, and only customers (SPEC section 7, invariant 2).
"""
from __future__ import annotations

import re

from sqlalchemy import select

from .errors import N_, ValidationError
from .extensions import db
from .models import LEGAL_BASES, RELATIONSHIPS, TOPIC_KINDS, Topic
from .states import DEFAULT_RELATIONSHIPS_ALLOWED

KEY = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
NAME_MAX = 200
DESCRIPTION_MAX = 5000


def get(key: str) -> Topic | None:
    return db.session.scalar(select(Topic).where(Topic.key == key)) if isinstance(key, str) else None


def all_topics(include_retired: bool = True) -> list[Topic]:
    query = select(Topic).order_by(Topic.retired, Topic.kind, Topic.key)
    if not include_retired:
        query = query.where(Topic.retired.is_(False))
    return list(db.session.scalars(query))


def _clean(kind: str, data: dict, current: Topic | None) -> dict:
    """Validate the changeable fields against the topic's kind; return them cleaned."""
    name = data.get("name", current.name if current else None)
    if not isinstance(name, str) or not name.strip():
        raise ValidationError(N_("a topic needs a name"), "name")
    if len(name.strip()) > NAME_MAX:
        raise ValidationError(N_("name is longer than %(limit)s characters", limit=NAME_MAX), "name")
    default_basis = "contract" if kind == "system" else (current.legal_basis if current else None)
    basis = data.get("legal_basis") or default_basis
    if basis not in LEGAL_BASES:
        raise ValidationError(N_("legal_basis must be one of: %(bases)s", bases=', '.join(LEGAL_BASES)), "legal_basis")
    if kind == "system" and basis != "contract":
        raise ValidationError(N_("system topics have legal basis 'contract'"), "legal_basis")
    if kind == "marketing" and basis == "contract":
        raise ValidationError(N_("marketing topics need 'consent' or 'legitimate_interest'"), "legal_basis")
    relationships = data.get("default_relationships",
                             list(current.default_relationships or []) if current else [])
    relationships = relationships or []
    if not isinstance(relationships, (list, tuple)) or any(r not in RELATIONSHIPS for r in relationships):
        raise ValidationError(N_("default_relationships must be drawn from: %(relationships)s",
                                  relationships=', '.join(RELATIONSHIPS)),
                              "default_relationships")
    if relationships and basis != "legitimate_interest":
        raise ValidationError(N_("default relationships only apply to legitimate-interest topics"),
                              "default_relationships")
    if any(r not in DEFAULT_RELATIONSHIPS_ALLOWED for r in relationships):
        raise ValidationError(N_("legitimate interest reaches customers only by default; prospects, partners, "
                                  "suppliers and candidates need their consent"), "default_relationships")
    description = data.get("description", current.description if current else "") or ""
    if not isinstance(description, str) or len(description) > DESCRIPTION_MAX:
        raise ValidationError(N_("description must be text of at most %(limit)s characters", limit=DESCRIPTION_MAX),
                              "description")
    return {"name": name.strip(), "legal_basis": basis, "description": description.strip(),
            "default_relationships": list(dict.fromkeys(relationships))}


def create(key: str, data: dict) -> Topic:
    """A new topic; `kind` is fixed from here on."""
    if not isinstance(key, str) or not KEY.match(key):
        raise ValidationError(N_("topic keys are 1-64 of a-z, 0-9, '_', '.', '-' and start with a letter or digit"), "key")
    if get(key) is not None:
        raise ValidationError(N_("a topic with key %(key)r exists already", key=key), "key", code="conflict")
    kind = data.get("kind")
    if kind not in TOPIC_KINDS:
        raise ValidationError(N_("kind must be one of: %(kinds)s", kinds=', '.join(TOPIC_KINDS)), "kind")
    topic = Topic(key=key, kind=kind, retired=False, **_clean(kind, data, None))
    db.session.add(topic)
    db.session.flush()
    return topic


def update(topic: Topic, data: dict) -> list[str]:
    """Change name, basis, relationships or description; return the names of changed fields."""
    if data.get("kind", topic.kind) != topic.kind:
        raise ValidationError(N_("a topic's kind cannot change; create a new topic instead"), "kind", code="conflict")
    cleaned = _clean(topic.kind, data, topic)
    changed = [k for k, v in cleaned.items() if getattr(topic, k) != v]
    for key in changed:
        setattr(topic, key, cleaned[key])
    return changed


def retire(topic: Topic) -> None:
    """Stop offering and sending a topic; its history stays."""
    topic.retired = True


def restore(topic: Topic) -> None:
    topic.retired = False


def as_dict(topic: Topic) -> dict:
    return {"key": topic.key, "name": topic.name, "kind": topic.kind, "legal_basis": topic.legal_basis,
            "default_relationships": list(topic.default_relationships or []),
            "description": topic.description or "", "retired": topic.retired}
