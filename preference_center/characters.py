"""Which characters a piece of text may hold: one rule for every door and for the domain.

No text we keep holds NUL, another C0 control (tab, line feed and carriage
return aside), DEL or a C1 control (U+0080..U+009F, such as U+0085 NEL):
PostgreSQL refuses NUL in text outright, and the others break mail headers,
CSV cells and log lines. One-line text (a name, a subject, a search, a query
string) holds no tab or line break either, U+2028 and U+2029 included, so a
subject built from a contact's name cannot grow a second header line.
Multi-line text (a description, a mail body, a reason) may hold tabs and
line breaks. Headers are not refused but cleaned (`printable`): an RFC 8058
one-click whose User-Agent holds a NUL is still recorded.
"""
from __future__ import annotations

import re

# C0 but tab, LF and CR; DEL; C1.
_NEVER = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
_LINE_BREAKS = "\t\n\r\u2028\u2029"
_MULTI_LINE = re.compile(f"[{_NEVER}]")
_ONE_LINE = re.compile(f"[{_NEVER}{_LINE_BREAKS}]")
_ANY_CONTROL = _ONE_LINE

NAMES = {"\x00": "NUL", "\t": "tab", "\n": "line feed", "\r": "carriage return", "\x7f": "DEL",
         "\x85": "NEL", "\u2028": "line separator", "\u2029": "paragraph separator"}


def refused(value: str, *, multiline: bool = False) -> str | None:
    """What `value` holds that text may not (e.g. 'U+0000 (NUL)'), or None when it is fine."""
    found = (_MULTI_LINE if multiline else _ONE_LINE).search(value)
    if found is None:
        return None
    char = found.group()
    name = NAMES.get(char, "control character")
    return f"U+{ord(char):04X} ({name})"


def printable(value: str | None) -> str | None:
    """`value` without control characters or line breaks (for header text we keep, such as a User-Agent)."""
    if value is None:
        return None
    return _ANY_CONTROL.sub("", value)
