"""Reusable mail layouts: an HTML frame with one `{{ content }}` marker where a campaign's content goes.

A layout is checked like a campaign's HTML (syntax, variables, the sandbox's limits) with the marker left
out, so wrapping content in it cannot make a campaign invalid by itself. Applying a layout writes the
wrapped HTML into the compose form for staff to edit; the campaign keeps its own copy (changing the layout
later changes no campaign).
"""
from __future__ import annotations

from sqlalchemy import select

from . import characters
from .errors import N_, Code, DomainError
from .extensions import db
from .mail import TemplateError
from .mail.personal import compile_part
from .models import MailTemplate

MARKER = "{{ content }}"


def all_layouts() -> list[MailTemplate]:
    return list(db.session.scalars(select(MailTemplate).order_by(MailTemplate.name)))


def get(layout_id: int) -> MailTemplate | None:
    return db.session.get(MailTemplate, layout_id) if 0 < layout_id < 2**31 else None


def check(name: str, html: str) -> tuple[str, str]:
    """The cleaned name and HTML; DomainError naming the field if either is wrong."""
    name = (name or "").strip()
    if not name or len(name) > 200 or characters.refused(name):
        raise DomainError(N_("a layout needs a one-line name of at most 200 characters"), "name")
    if not isinstance(html, str) or len(html) > 200_000:
        raise DomainError(N_("the layout is longer than 200,000 characters"), "html")
    if html.count(MARKER) != 1:
        raise DomainError(N_("the layout needs %(marker)s exactly once, where the campaign's content goes",
                              marker=MARKER), "html")
    try:
        compile_part("html", html.replace(MARKER, ""), True)
    except TemplateError as exc:
        raise DomainError(f"html: {exc}", "html") from exc
    return name, html


def save(name: str, html: str, *, layout: MailTemplate | None, by: str) -> MailTemplate:
    """Create a layout, or change one; a name already taken is refused."""
    name, html = check(name, html)
    taken = db.session.scalar(select(MailTemplate.id).where(MailTemplate.name == name))
    if taken is not None and (layout is None or taken != layout.id):
        raise DomainError(N_("another layout has this name"), "name", code=Code.CONFLICT)
    if layout is None:
        layout = MailTemplate(name=name, html=html, updated_by=by)
        db.session.add(layout)
    else:
        layout.name, layout.html, layout.updated_by = name, html, by
    db.session.flush()
    return layout


def wrap(layout: MailTemplate, content: str) -> str:
    """The layout with the content in place of its marker."""
    return layout.html.replace(MARKER, content or "", 1)
