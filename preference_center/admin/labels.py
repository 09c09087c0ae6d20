"""Staff-side names of the states and kinds stored as plain values: one translatable label each, in one place.

Templates show a stored value through the `label` filter (`{{ contact.status|label('contact_status') }}`); forms
build their choices with `choices(group)`. A value with no label (a state added later) is shown as it is stored.
The relationship and data-request kind names are the msgids the recipient pages already translate.
"""
from __future__ import annotations

from flask_babel import lazy_gettext as _l

from . import bp

LABELS = {
    "contact_status": {"active": _l("active"), "restricted": _l("restricted"), "erased": _l("erased")},
    "relationship": {"prospect": _l("prospect"), "customer": _l("customer"), "partner": _l("partner"),
                     "supplier": _l("supplier"), "candidate": _l("candidate")},
    "topic_kind": {"marketing": _l("marketing"), "system": _l("system")},
    "legal_basis": {"consent": _l("Consent"), "legitimate_interest": _l("Legitimate interest"),
                    "contract": _l("Contract")},
    "import_basis": {"consent": _l("Consent (the people in the file opted in)"),
                     "legitimate_interest": _l("Legitimate interest (an existing relationship, e.g. customers)"),
                     "contract": _l("Contract (people we have a contract with; system mail only)")},
    "topic_state": {"subscribed": _l("subscribed"), "pending": _l("pending"), "unsubscribed": _l("unsubscribed"),
                    "none": _l("never subscribed")},
    "request_kind": {"access": _l("access"), "erasure": _l("erasure"), "restriction": _l("restriction"),
                     "objection": _l("objection"), "rectification": _l("rectification"),
                     "portability": _l("portability")},
    "request_status": {"open": _l("Open"), "completed": _l("Completed"), "refused": _l("Refused")},
    "request_channel": {"phone": _l("by phone"), "letter": _l("by letter"), "email": _l("by email to staff"),
                        "in_person": _l("in person")},
    "suppression_scope": {"marketing": _l("marketing mail"), "all": _l("all mail")},
    "suppression_reason": {"erased": _l("erased at the person's request"), "opt_out": _l("opted out"),
                           "spam_complaint": _l("spam complaint"), "hard_bounce": _l("hard bounce"),
                           "soft_bounce_limit": _l("too many soft bounces")},
    "suppression_kept": {"opt_out": _l("the person opted out of marketing themselves; only their own fresh "
                                       "consent lifts it"),
                         "erased": _l("the person's data was erased; the address stays blocked")},
    "import_status": {"uploaded": _l("uploaded"), "previewed": _l("previewed"), "queued": _l("queued"),
                      "running": _l("running"), "done": _l("done"), "failed": _l("failed"),
                      "discarded": _l("discarded")},
    "import_outcome": {"new": _l("new"), "update": _l("update"), "unchanged": _l("unchanged"),
                       "suppressed": _l("suppressed"), "erased": _l("erased"), "duplicate": _l("duplicate"),
                       "invalid": _l("invalid")},
    # Why a delivery was skipped (the sending rule's reasons) or a bulk action passed a contact by.
    "skip_reason": {"suppressed_all": _l("blocked from all mail"), "erased": _l("erased"),
                    "suppressed_marketing": _l("blocked from marketing"), "restricted": _l("processing restricted"),
                    "opted_out_all": _l("opted out of all marketing"), "unsubscribed": _l("unsubscribed from the topic"),
                    "no_consent": _l("no consent"), "unconfirmed": _l("consent not confirmed"),
                    "relationship_not_covered": _l("relationship not covered by the topic"),
                    "no_basis": _l("no legal basis"), "topic_retired": _l("topic retired"),
                    "not_informed": _l("not yet told where their address came from"),
                    "cancelled": _l("campaign cancelled"), "unknown": _l("reason not recorded"),
                    "already suppressed": _l("already suppressed")},
    "campaign_status": {"draft": _l("draft"), "scheduled": _l("scheduled"), "sending": _l("sending"),
                        "sent": _l("sent"), "cancelled": _l("cancelled"), "failed": _l("failed"),
                        "paused": _l("paused")},
    # Outcomes of deliveries as the report's chart and table group them (queries.CHART_STATUSES).
    "delivery_outcome": {"sent": _l("Sent"), "skipped": _l("Skipped"), "failed": _l("Failed"),
                         "unknown": _l("Unknown"), "pending": _l("Pending")},
    "audience_filter": {"relationships": _l("relationships"), "locales": _l("locales"), "companies": _l("companies"),
                        "sources": _l("sources"), "created_after": _l("created after"),
                        "created_before": _l("created before"), "interacted_after": _l("interacted after"),
                        "interacted_before": _l("interacted before")},
    "ledger_action": {"grant": _l("grant"), "withdraw": _l("withdrawal"), "object": _l("objection"),
                      "restrict": _l("restriction"), "lift_restriction": _l("restriction lifted"),
                      "rectify": _l("rectification"), "erase": _l("erasure"), "export": _l("export"),
                      "suppress": _l("address blocked"), "lift_suppression": _l("block lifted"),
                      "relationship": _l("relationship recorded"), "tracking": _l("tracking choice")},
    "delivery_status": {"queued": _l("queued"), "sending": _l("sending"), "sent": _l("sent"),
                        "failed": _l("failed"), "unknown": _l("unknown"), "skipped": _l("skipped")},
    "webhook_status": {"pending": _l("pending"), "delivered": _l("delivered")},
    "role": {"admin": _l("admin"), "marketer": _l("marketer"), "viewer": _l("viewer"), "client": _l("client")},
    "topic_status": {"live": _l("live"), "retired": _l("retired")},
}


def label(value, group: str) -> str:
    """The translated name of a stored value of `group`, or the value itself when it has none."""
    if value is None:
        return ""
    name = LABELS[group].get(str(value))
    return str(name) if name is not None else str(value)


def choices(group: str, values=None) -> list[tuple[str, object]]:
    """(value, lazy label) pairs of a group, in the group's order or in the order of `values`."""
    names = LABELS[group]
    return [(str(v), names.get(str(v), str(v))) for v in (names if values is None else values)]


@bp.app_template_filter("label")
def _label_filter(value, group: str) -> str:
    return label(value, group)
