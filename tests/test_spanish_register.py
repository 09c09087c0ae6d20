"""Spanish speaks formally to recipients ("usted") and informally to staff ("tú"), consistently.

Recipients are customers: every string they may read (public pages, mail, footers, notices) says "usted".
Staff read the admin pages and the command-layer refusals (`N_`) shown there: those say "tú". A string both
audiences read stays formal. Where a msgid is used comes from babel's extractor, as in test_translations.py.
"""
from __future__ import annotations

import re
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent
PO = ROOT / "preference_center/translations/es/LC_MESSAGES/messages.po"
METHODS = [("preference_center/**.py", "python"), ("templates/**.html", "jinja2"), ("templates/**.txt", "jinja2")]
OPTIONS = {pattern: {"extensions": "jinja2.ext.i18n"} for pattern, method in METHODS if method == "jinja2"}
GETTEXT = {"_": None, "_l": None, "gettext": None, "lazy_gettext": None, "ngettext": (1, 2),
           "lazy_ngettext": (1, 2)}
STAFF_PLACES = ("templates/admin/", "preference_center/admin/")

# Words only the informal register uses: pronouns and second-person forms (bare imperatives such as "usa" or "abre"
# also read as third person, so they are left out; "Escribe tu dirección" is caught by "tu").
TU = re.compile(r"\b(tú|tu|tus|te|ti|contigo|puedes|quieres|tienes|recibes|recibirás|estás|has|eres|vuelves|usas|"
                r"utilizas|haces|abres|compruebas|lees|confírmalo|suscríbete|inténtalo|oponerte|enviarte|levantes|"
                r"confirmes|abriste|hiciste|aceptaste|rechazaste|marcaste|pediste|volviste|podéis|vuestros)\b", re.I)
# Words only the formal register uses towards the reader.
USTED = re.compile(r"\b(usted|ustedes|elija|indique|suba|pida|cree|deje|déjelo|cópielo|copie|use|utilice|imprima|"
                   r"publique|vuelva|revise|asigne|cámbielo|escriba|introduzca|seleccione|pulse|marque|compruebe|"
                   r"inténtelo|añada|guarde|puede usted)\b", re.I)


def _places(keywords: dict) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for filename, _lineno, message, _comments, _context in extract_from_dir(
            str(ROOT), METHODS, keywords=keywords, options_map=OPTIONS):
        msgid = message[0] if isinstance(message, tuple) else message
        if msgid:
            found.setdefault(msgid, set()).add(filename)
    return found


def audiences() -> tuple[set[str], set[str]]:
    """(msgids a recipient may read, msgids only staff read): staff-only means admin code or `N_` refusals."""
    shown = _places(GETTEXT)
    refusals = set(_places({"N_": None}))
    recipient = {msgid for msgid, files in shown.items() if any(not f.startswith(STAFF_PLACES) for f in files)}
    staff = (set(shown) | refusals) - recipient
    return recipient, staff


def spanish() -> dict[str, str]:
    with PO.open("rb") as po:
        catalog = read_po(po)
    return {(m.id if isinstance(m.id, str) else m.id[0]): (m.string if isinstance(m.string, str) else " ".join(m.string))
            for m in catalog if m.id and m.string}


def test_the_formality_words_tell_the_registers_apart():
    assert TU.search("Escribe tu dirección de correo.") and not USTED.search("Escribe tu dirección de correo.")
    assert USTED.search("Elija un color oscuro.") and not TU.search("Elija un color oscuro.")


def test_recipients_are_addressed_as_usted_and_staff_as_tu():
    recipient, staff = audiences()
    assert len(recipient) > 100 and len(staff) > 500  # the extraction saw both sides
    catalogue = spanish()
    informal_to_recipients = sorted(f"{msgid!r}: {catalogue[msgid]}" for msgid in recipient
                                    if msgid in catalogue and TU.search(catalogue[msgid]))
    formal_to_staff = sorted(f"{msgid!r}: {catalogue[msgid]}" for msgid in staff
                             if msgid in catalogue and USTED.search(catalogue[msgid]))
    assert not informal_to_recipients, "tú on a recipient string:\n" + "\n".join(informal_to_recipients)
    assert not formal_to_staff, "usted on a staff string:\n" + "\n".join(formal_to_staff)


def test_the_data_request_notices_mailed_from_the_command_layer_are_formal():
    recipient, _staff = audiences()
    catalogue = spanish()
    assert "About your data request" in recipient
    assert catalogue["About your data request"] == "Sobre su solicitud de datos"
