"""Every string the product marks for translation has its Spanish translation (recipients read them)."""
from __future__ import annotations

from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from preference_center.states import RequestKind

ROOT = Path(__file__).resolve().parent.parent
METHODS = [("preference_center/**.py", "python"), ("templates/**.html", "jinja2"), ("templates/**.txt", "jinja2")]
OPTIONS = {pattern: {"extensions": "jinja2.ext.i18n"} for pattern, method in METHODS if method == "jinja2"}
# `N_` builds the domain errors' messages (errors.N_), translated where a staff page shows them.
KEYWORDS = {"_": None, "_l": None, "gettext": None, "lazy_gettext": None, "ngettext": (1, 2), "lazy_ngettext": (1, 2),
            "N_": None}
# `._("global")` is the sendgrid client's URL builder, not a translation.
NOT_TEXT = {"global"}


def marked_strings() -> dict[str, str]:
    found: dict[str, str] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
            str(ROOT), METHODS, keywords=KEYWORDS, options_map=OPTIONS):
        msgid = message[0] if isinstance(message, tuple) else message
        if msgid and msgid not in NOT_TEXT:
            found.setdefault(msgid, f"{filename}:{lineno}")
    # Translated at run time from a variable: the data-request kinds named in notices.
    found.update({str(kind): "states.RequestKind" for kind in RequestKind})
    return found


def test_every_marked_string_has_a_spanish_translation():
    with (ROOT / "preference_center/translations/es/LC_MESSAGES/messages.po").open("rb") as po:
        catalog = read_po(po)
    translated = {m.id if isinstance(m.id, str) else m.id[0] for m in catalog if m.id and m.string and not m.fuzzy}
    found = marked_strings()
    assert len(found) > 200  # the extraction saw the code and the templates
    missing = {f"{where}: {msgid}" for msgid, where in found.items() if msgid not in translated}
    assert not missing, "\n".join(sorted(missing))


def test_the_compiled_catalog_is_up_to_date():
    po = ROOT / "preference_center/translations/es/LC_MESSAGES/messages.po"
    mo = po.with_suffix(".mo")
    from babel.messages.mofile import read_mo

    def pairs(messages) -> dict:
        flat = (lambda value: value if isinstance(value, str) else tuple(value))  # noqa: E731 - plurals are lists
        return {flat(m.id): flat(m.string) for m in messages if m.id and m.string and not m.fuzzy}

    with mo.open("rb") as compiled, po.open("rb") as source:
        assert pairs(read_mo(compiled)) == pairs(read_po(source)), "run: pybabel compile -d preference_center/translations"
