"""Helpers that build real rows through the domain functions."""
from __future__ import annotations

from sqlalchemy import select

from preference_center import contacts
from preference_center.extensions import db
from preference_center.models import Topic


def topic(key: str, kind: str = "marketing", basis: str = "consent", relationships=(), retired: bool = False) -> Topic:
    row = Topic(key=key, name=key.title(), kind=kind, legal_basis=basis,
                default_relationships=list(relationships), retired=retired, description="")
    db.session.add(row)
    db.session.flush()
    return row


def contact(email: str, relationship: str = "prospect", **fields):
    row, _ = contacts.upsert(email, {"relationship": relationship, **fields}, source="test")
    return row


def get_topic(key: str) -> Topic:
    return db.session.scalar(select(Topic).where(Topic.key == key))
