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


def _clock(monkeypatch, when: float) -> None:
    monkeypatch.setattr(itsdangerous.timed, "time", type("Clock", (), {"time": staticmethod(lambda: when)}))


def _serializer_says(purpose: str, token: str, max_age: int) -> object:
    """What itsdangerous itself answers for `token`: the payload, or the name of the error it raises."""
    try:
        return links._serializer(purpose).loads(token, max_age=max_age)
    except itsdangerous.SignatureExpired:
        return "expired"
    except itsdangerous.BadData:
        return "invalid"


def _verify_says(purpose: str, token: str) -> object:
    try:
        return list(links.verify(purpose, token))
    except links.LinkError as error:
        return error.kind


@pytest.mark.parametrize("age_days, shift", [(0, 0), (30, 0), (179, 0), (180, 0), (180, 1), (400, 0), (0, -5)])
def test_verification_agrees_with_itsdangerous_at_every_age(ctx, monkeypatch, age_days, shift):
    """Signed now, checked `age_days` (+ `shift` seconds) later; a negative age is a token from the future."""
    signed_at = 1_790_000_000
    _clock(monkeypatch, signed_at)
    token = links.make(links.UNSUBSCRIBE, Contact(id=42, token_version=2), 7)
    _clock(monkeypatch, signed_at + age_days * 86400 + shift)
    max_age = links._max_age(links.UNSUBSCRIBE)
    assert _verify_says(links.UNSUBSCRIBE, token) == _serializer_says(links.UNSUBSCRIBE, token, max_age)
    expected = [42, 2, 7] if 0 <= age_days * 86400 + shift <= max_age else "expired"
    assert _verify_says(links.UNSUBSCRIBE, token) == expected


def test_verification_agrees_with_itsdangerous_on_altered_and_odd_tokens(ctx):
    token = links.make(links.UNSUBSCRIBE, Contact(id=42, token_version=2), 7)
    payload, stamp, signature = token.split(".")
    compressed = links._serializer(links.UNSUBSCRIBE).dumps([42, 2, list(range(40))])  # zlib: the serializer's path
    odd = [token, token[:-1] + ("A" if token[-1] != "A" else "B"), f"{payload}.{stamp}", f"{payload}..{signature}",
           f".{token}", f"x{token}", f"{payload}.{stamp}.{signature}.", "", ".", "..", "a.b.c", f"{token}é",
           f"{payload}.{stamp}.{signature[:-4]}", compressed, links.make(links.PREFERENCES, Contact(id=42,
                                                                                              token_version=2))]
    max_age = links._max_age(links.UNSUBSCRIBE)
    for candidate in odd:
        said = _serializer_says(links.UNSUBSCRIBE, candidate, max_age)
        if isinstance(said, list) and len(said) == 3 and not isinstance(said[2], int):
            said = "invalid"  # verify's own check: an unsubscribe link names a topic id
        assert _verify_says(links.UNSUBSCRIBE, candidate) == said, candidate
