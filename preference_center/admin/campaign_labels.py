"""The words staff read for stored values on the campaign pages: campaign states, delivery outcomes, skip reasons,
relationships, legal bases and the names of audience filters.

The values stay English identifiers in the database and the API; only what a page shows goes through here, in
the page's language. A value without a label (a new state nobody named yet) is shown as it is.
"""
from __future__ import annotations

from flask_babel import lazy_gettext as _l

CAMPAIGN_STATUS = {
    "draft": _l("draft"),
    "scheduled": _l("scheduled"),
    "sending": _l("sending"),
    "sent": _l("sent"),
    "cancelled": _l("cancelled"),
    "failed": _l("failed"),
    "paused": _l("paused"),
}

# Outcomes of single deliveries, as the report's chart and table group them (queries.CHART_STATUSES).
DELIVERY_STATUS = {
    "sent": _l("Sent"),
    "skipped": _l("Skipped"),
    "failed": _l("Failed"),
    "unknown": _l("Unknown"),
    "pending": _l("Pending"),
}

SKIP_REASON = {
    "suppressed_all": _l("blocked from all mail"),
    "erased": _l("erased"),
    "suppressed_marketing": _l("blocked from marketing"),
    "restricted": _l("processing restricted"),
    "opted_out_all": _l("opted out of all marketing"),
    "unsubscribed": _l("unsubscribed from the topic"),
    "no_consent": _l("no consent"),
    "unconfirmed": _l("consent not confirmed"),
    "relationship_not_covered": _l("relationship not covered by the topic"),
    "no_basis": _l("no legal basis"),
    "topic_retired": _l("topic retired"),
    "not_informed": _l("not yet told where their address came from"),
    "cancelled": _l("campaign cancelled"),
    "unknown": _l("reason not recorded"),
}

# The same words as the recipient pages use for relationships (templates/public/_macros.html).
RELATIONSHIP = {
    "prospect": _l("prospect"),
    "customer": _l("customer"),
    "partner": _l("partner"),
    "supplier": _l("supplier"),
    "candidate": _l("candidate"),
}

LEGAL_BASIS = {
    "consent": _l("consent"),
    "legitimate_interest": _l("legitimate interest"),
    "contract": _l("contract"),
}

ROLE = {
    "admin": _l("admin"),
    "marketer": _l("marketer"),
    "viewer": _l("viewer"),
}

AUDIENCE_FILTER = {
    "relationships": _l("relationships"),
    "locales": _l("locales"),
    "companies": _l("companies"),
    "sources": _l("sources"),
    "created_after": _l("created after"),
    "created_before": _l("created before"),
    "interacted_after": _l("interacted after"),
    "interacted_before": _l("interacted before"),
}


def label(names: dict, value: str | None) -> str:
    """The translated name of `value`, or the value itself when it has none."""
    if value is None:
        return ""
    return str(names.get(value, value))


def relationship_choices(values) -> list[tuple[str, object]]:
    """(value, label) pairs for relationship checkboxes, labelled in the page's language when shown."""
    return [(value, RELATIONSHIP.get(value, value)) for value in values]
