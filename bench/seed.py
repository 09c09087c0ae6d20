"""Seed N contacts in a realistic mix of states into PostgreSQL with COPY."""
from __future__ import annotations

import hashlib
import hmac
import random

from sqlalchemy import text

from preference_center import ledger
from preference_center.extensions import db
from preference_center.models import Topic

MIX = (  # state, share
    ("consent_granted", 0.40),   # prospects with a confirmed grant
    ("customer_li", 0.25),       # customers under legitimate interest
    ("withdrawn", 0.08),
    ("pending", 0.07),
    ("objected", 0.05),          # opted out of all marketing
    ("restricted", 0.03),
    ("suppressed", 0.05),        # hard bounce / complaint
    ("erased", 0.02),
    ("prospect_no_basis", 0.05),
)


def seed(n: int, suppression_key: str, seed_value: int = 42) -> Topic:
    """Fresh schema, one legitimate-interest topic for customers, n contacts; returns the topic."""
    db.drop_all()
    db.create_all()
    ledger.ensure_head()
    topic = Topic(key="news", name="News", kind="marketing", legal_basis="legitimate_interest",
                  default_relationships=["customer"], description="")
    db.session.add(topic)
    db.session.commit()
    topic_id = topic.id
    rng = random.Random(seed_value)
    states, weights = zip(*MIX, strict=False)
    raw = db.session.connection().connection.dbapi_connection
    cur = raw.cursor()
    subs, supps = [], []
    now = "2026-11-01 00:00:00+00"
    with cur.copy("COPY contacts (id, email, email_hash, name, relationship, status, marketing_opt_out_event_id, "
                  "relationship_event_id, token_version, soft_bounces, created_at, updated_at, last_interaction_at) "
                  "FROM STDIN") as copy:
        for i in range(1, n + 1):
            state = rng.choices(states, weights)[0]
            email = f"user{i}@bench.example.com"
            digest = hmac.new(suppression_key.encode(), email.encode(), hashlib.sha256).hexdigest()
            relationship = "customer" if state in ("customer_li", "objected", "restricted") else "prospect"
            status = {"restricted": "restricted", "erased": "erased"}.get(state, "active")
            opt_out = 1 if state == "objected" else None
            copy.write_row((i, None if state == "erased" else email, digest, f"User {i}", relationship, status,
                            opt_out, 1, 1, 0, now, now, now))
            if state == "consent_granted":
                subs.append((i, topic_id, "subscribed", 1, now))
            elif state == "withdrawn":
                subs.append((i, topic_id, "unsubscribed", 1, now))
            elif state == "pending":
                subs.append((i, topic_id, "pending", 1, now))
            elif state in ("suppressed", "erased"):
                supps.append((digest, "all", "bench", "bench", now))
    with cur.copy("COPY subscriptions (contact_id, topic_id, state, event_id, updated_at) FROM STDIN") as copy:
        for row in subs:
            copy.write_row(row)
    with cur.copy("COPY suppressions (email_hash, scope, reason, source, created_at) FROM STDIN") as copy:
        for row in supps:
            copy.write_row(row)
    raw.commit()
    db.session.execute(text("SELECT setval('contacts_id_seq', :n)"), {"n": n})
    db.session.execute(text("ANALYZE"))
    db.session.commit()
    return db.session.get(Topic, topic_id)
