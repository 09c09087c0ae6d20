"""Personal details behind a mailed step-up link (issue 14): a forwarded newsletter shows only topic choices.

Opening the link mailed to the address unlocks, in that browser's session and for PC_STEPUP_MAX_AGE_HOURS,
the person's details on their data page, correcting them and changing the address. Erasure or a change of
address (a new token version) locks them again.
"""
from __future__ import annotations

import time

from flask import current_app, session

from ..models import Contact

KEY = "pc_details"


def unlocked(contact: Contact) -> bool:
    entry = (session.get(KEY) or {}).get(str(contact.id))
    return bool(entry) and entry[0] == contact.token_version and entry[1] > time.time()


def unlock(contact: Contact) -> None:
    until = time.time() + current_app.config["PC_STEPUP_MAX_AGE_HOURS"] * 3600
    held = {k: v for k, v in (session.get(KEY) or {}).items() if v[1] > time.time()}
    held[str(contact.id)] = [contact.token_version, until]
    session[KEY] = held
