"""Topic commands: create, update, retire, restore; the rules of kinds and bases live in `topics`."""
from __future__ import annotations

from .. import audit, topics
from ..actors import Actor
from ..errors import N_, DomainError
from ..models import Topic


def create(actor: Actor, key: str, data: dict) -> Topic:
    """A new topic (its kind is fixed from here on)."""
    topic = topics.create(key, data)
    _extras(topic, data)
    audit.record(actor, "topic.create", target_type="topic", target_id=topic.key, detail=topics.as_dict(topic))
    return topic


def update(actor: Actor, topic: Topic, data: dict) -> list[str]:
    """Change a topic's name, basis, relationships, description (and, from the API, retired/group); the changes."""
    changed = topics.update(topic, data) + _extras(topic, data)
    if changed:
        audit.record(actor, "topic.update", target_type="topic", target_id=topic.key,
                     detail={"changed": changed, **topics.as_dict(topic)})
    return changed


def put(actor: Actor, key: str, data: dict) -> tuple[Topic, bool]:
    """Create or update by key (the API's PUT); (topic, created)."""
    topic = topics.get(key)
    if topic is None:
        return create(actor, key, data), True
    update(actor, topic, data)
    return topic, False


def _extras(topic: Topic, data: dict) -> list[str]:
    """`retired` and `sendgrid_group_id`, when given: checked, set, and named if they changed."""
    changed = []
    if data.get("retired") is not None:
        if not isinstance(data["retired"], bool):
            raise DomainError(N_("retired must be true or false"), "retired")
        if topic.retired != data["retired"]:
            topic.retired = data["retired"]
            changed.append("retired")
    if "sendgrid_group_id" in data:
        group = data["sendgrid_group_id"]
        if group is not None and (not isinstance(group, int) or isinstance(group, bool) or not 0 < group < 2**31):
            raise DomainError(N_("sendgrid_group_id must be a positive integer"), "sendgrid_group_id")
        if topic.sendgrid_group_id != group:
            topic.sendgrid_group_id = group
            changed.append("sendgrid_group_id")
    return changed


def retire(actor: Actor, topic: Topic) -> None:
    """Stop offering and sending a topic; its history stays."""
    if not topic.retired:
        topics.retire(topic)
        audit.record(actor, "topic.retire", target_type="topic", target_id=topic.key)


def restore(actor: Actor, topic: Topic) -> None:
    if topic.retired:
        topics.restore(topic)
        audit.record(actor, "topic.restore", target_type="topic", target_id=topic.key)
