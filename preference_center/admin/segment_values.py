"""A saved audience (topic and filters) as the audience fields of the campaign and segment forms."""
from __future__ import annotations

import datetime as dt

from .. import attributes


def segment_values(topic_key: str, filters: dict) -> dict:
    values = {"topic": topic_key, "relationships": filters.get("relationships") or []}
    for key in ("locales", "companies", "sources"):
        values[key] = ", ".join(filters.get(key) or [])
    for key in ("created_after", "created_before", "interacted_after", "interacted_before"):
        if filters.get(key):
            values[key] = dt.date.fromisoformat(filters[key])
    values["attribute_filters"] = attributes.conditions_text(filters.get("attributes"))
    return values
