"""Languages of the public pages: Flask-Babel and the rule that picks a locale.

Order: an explicit ?lang= on this request, then the switch remembered in a
cookie, then the locale stored on the contact the link is for, then the
browser's Accept-Language, among PC_LOCALES.
"""
from __future__ import annotations

from pathlib import Path

from flask import Flask, current_app, g, request
from flask_babel import Babel, get_locale, gettext, refresh

from .errors import Text

LANG_COOKIE = "pc_lang"
LANG_COOKIE_AGE = 365 * 86400

babel = Babel()


def supported() -> list[str]:
    return list(current_app.config["PC_LOCALES"])


def _language(value: str | None) -> str | None:
    """'es-MX' -> 'es' when supported, else None."""
    if not value:
        return None
    language = value.replace("_", "-").split("-")[0].lower()
    return language if language in supported() else None


def select_locale() -> str:
    """The locale of this request (see the module docstring for the order)."""
    default = current_app.config["BABEL_DEFAULT_LOCALE"]
    if not request:
        return default
    return (
        _language(request.args.get("lang"))
        or _language(request.cookies.get(LANG_COOKIE))
        or _language(g.get("contact_locale"))
        or request.accept_languages.best_match(supported())
        or default
    )


def use_contact_locale(locale: str | None) -> None:
    """Tell the selector which contact this page is for (call before rendering)."""
    g.contact_locale = locale
    refresh()


def localized(error: BaseException | str) -> str:
    """An error's message in this page's language when it was made with `errors.N_`, else its text as it is."""
    message = error if isinstance(error, str) else getattr(error, "message", None)
    if not isinstance(message, Text) and isinstance(error, BaseException) and error.args:
        message = error.args[0]
    if not isinstance(message, Text) or not message.msgid:
        return str(error)
    # A parameter that is itself a message made with N_() is shown in the same language; other text stays as is.
    params = {name: localized(value) if isinstance(value, Text) else value for name, value in message.params.items()}
    return gettext(message.msgid, **params)


def _remember_switch(response):
    chosen = _language(request.args.get("lang"))
    if chosen:
        response.set_cookie(
            LANG_COOKIE, chosen, max_age=LANG_COOKIE_AGE, httponly=True, samesite="Lax",
            secure=current_app.config.get("PC_ENV") == "production",
        )
    return response


def _template_globals() -> dict:
    return {"page_locale": str(get_locale()), "page_locales": supported()}


def init_babel(app: Flask) -> None:
    """Wire Flask-Babel with our selector, the language cookie and template globals."""
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(Path(__file__).parent / "translations"))
    babel.init_app(app, locale_selector=select_locale)
    app.after_request(_remember_switch)
    app.context_processor(_template_globals)
