"""Address normalisation: the quick path for plain addresses gives exactly what the full validator gives."""
from __future__ import annotations

import random

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from preference_center import emails


def full_check(text: str) -> tuple[str, str]:
    """What the validator alone says of an address: ("ok", canonical) or ("invalid", its message)."""
    if not text.strip():
        return "invalid", "an email address is required"
    try:
        return "ok", validate_email(text.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        return "invalid", str(exc)


def ours(text: str) -> tuple[str, str]:
    try:
        return "ok", emails.normalize(text)
    except emails.InvalidEmail as exc:
        return "invalid", str(exc)


TRICKY = [
    "Person@Example.COM", " spaced@example.com ", "a.b.c@example.com", "a..b@example.com", ".a@example.com",
    "a.@example.com", "a@b.c", "a@localhost", "a@example", "a@example.invalid", "a@example.local", "a@x.test",
    "a@-x.com", "a@x-.com", "a@x..com", "a@.x.com", "a@x.com.", "a@x_y.com", "a@123.com", "a@x.123",
    "a@xn--bcher-kva.example", "a@BÜCHER.example", "ü@example.com", '"quoted"@example.com', '"a b"@example.com',
    "Ann <ann@example.com>", "a@[192.0.2.1]", "postmaster@EXAMPLE.com", "Abuse@example.com", "a+tag@example.com",
    "o'neil@example.com", "x" * 64 + "@example.com", "x" * 65 + "@example.com", "a@" + "b" * 63 + ".com",
    "a@" + "b" * 64 + ".com", "a@" + ".".join(["abcdefghi"] * 30) + ".com", "x" * 90 + "@e.com", "@example.com",
    "a@", "a@@example.com", "a@b@example.com", "a b@example.com", "a\t@example.com", "a@exa mple.com",
    "{weird}|~!#$%&*=?^`@example.com", "a@example.com\x00", "a@EXAMPLE.arpa", "a@onion.onion", "a@x.co.uk",
]


@pytest.mark.parametrize("text", TRICKY)
def test_normalize_answers_as_the_full_validator_on_tricky_addresses(text):
    assert ours(text) == full_check(text)


def test_normalize_answers_as_the_full_validator_on_thousands_of_random_plain_looking_addresses():
    rng = random.Random(7)
    pieces = ["a", "B", "z9", ".", "-", "_", "+", "'", "@", "xn--", "..", "é", " ", "com", "local", "test", "1"]
    for _ in range(5000):
        local = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 6)))
        domain = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 6)))
        text = f"{local}@{domain}" if rng.random() < 0.9 else local + domain
        assert ours(text) == full_check(text), text


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("abXY09.-_+@'é \"<>[]"), max_size=40))
def test_normalize_answers_as_the_full_validator_on_any_text(text):
    assert ours(text) == full_check(text)


def test_a_remembered_domain_does_not_make_a_bad_local_part_good():
    assert ours("good@example.com") == ("ok", "good@example.com")
    assert ours("bad..local@example.com") == full_check("bad..local@example.com")
    assert ours("bad..local@example.com")[0] == "invalid"
