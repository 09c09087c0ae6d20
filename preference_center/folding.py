"""Text folded for searching: case and accents ignored the same way on every database.

"García", "GARCIA" and "garcia" fold to "garcia"; "Straße" to "strasse"; ligatures and full-width letters
to their plain forms. Folding happens in Python when a contact is written (its `search_text` column), and
to the search words, so SQLite and PostgreSQL agree without an unaccent extension.
"""
from __future__ import annotations

import unicodedata


def fold(text: str | None) -> str:
    """Lower-case, accent-free, compatibility-normalised text with single spaces."""
    if not text:
        return ""
    if text.isascii():  # nothing to decompose or strip: the same result without a loop over every character
        return " ".join(text.lower().split())
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(unicodedata.normalize("NFKC", plain).split())


def contact_text(email: str | None, name: str | None, company: str | None) -> str | None:
    """What a contact is found by (None once erased: nothing personal stays)."""
    if not email:
        return None
    return " | ".join(fold(part) for part in (email, name, company) if part)
