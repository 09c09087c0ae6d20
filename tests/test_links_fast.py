"""Links signed with one precomputed HMAC state are the very tokens itsdangerous makes, and verify after rotation."""
from __future__ import annotations

import itsdangerous.timed
import pytest

from preference_center import create_app, links
from preference_center.models import Contact


def _same_second(monkeypatch, when: float = 1_790_000_000.5) -> None:
    monkeypatch.setattr(itsdangerous.timed, "time", type("Clock", (), {"time": staticmethod(lambda: when)}))


@pytest.mark.parametrize("purpose, argument", [
    (links.PREFERENCES, 0), (links.UNSUBSCRIBE, 7), (links.UNSUBSCRIBE, 2**31 - 1), (links.CONFIRM, [3, 4, 5]),
    (links.STEP_UP, "export"), (links.CONFIRM, list(range(40))),  # long enough for itsdangerous to try zlib
])
def test_fast_tokens_are_byte_for_byte_the_serializers(ctx, monkeypatch, purpose, argument):
    _same_second(monkeypatch)
    contact = Contact(id=123456789, token_version=3)
    fast = links.make(purpose, contact, argument)
    slow = links._serializer(purpose).dumps([contact.id, contact.token_version, argument])
    assert fast == slow
    monkeypatch.undo()
    if purpose != links.UNSUBSCRIBE or isinstance(argument, int):
        assert links._serializer(purpose).loads(fast) == [contact.id, contact.token_version, argument]


def test_a_fast_token_of_one_purpose_does_not_verify_for_another(ctx):
    token = links.make(links.PREFERENCES, Contact(id=5, token_version=1))
    assert links.verify(links.PREFERENCES, token) == (5, 1, 0)
    with pytest.raises(links.LinkError):
        links.verify(links.UNSUBSCRIBE, token)
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    with pytest.raises(links.LinkError):
        links.verify(links.PREFERENCES, tampered)


def test_rotation_signs_with_the_newest_key_and_verifies_with_every_key(app_config):
    old, new = app_config["PC_SECRET_KEYS"]
    before = create_app(app_config)
    with before.app_context():
        signed_before = links.make(links.UNSUBSCRIBE, Contact(id=9, token_version=2), 4)
    rotated = create_app({**app_config, "PC_SECRET_KEYS": [old, new, "the-newest-signing-secret-3333"]})
    with rotated.app_context():
        signed_after = links.make(links.UNSUBSCRIBE, Contact(id=9, token_version=2), 4)
        assert signed_after != signed_before
        assert links.verify(links.UNSUBSCRIBE, signed_before) == (9, 2, 4)
        assert links.verify(links.UNSUBSCRIBE, signed_after) == (9, 2, 4)
    with before.app_context():  # an instance that does not know the newest key yet refuses its tokens
        with pytest.raises(links.LinkError):
            links.verify(links.UNSUBSCRIBE, signed_after)
