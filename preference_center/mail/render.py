"""Rendering staff-written templates in a sandbox that cannot reach Python internals."""
from __future__ import annotations

import operator
from functools import lru_cache
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

# Caps on what a template may compute, so one bad template cannot exhaust memory.
MAX_REPEAT = 10_000
MAX_EXPONENT = 100


class TemplateError(Exception):
    """A template does not parse, or tried something the sandbox forbids."""


class _Sandbox(ImmutableSandboxedEnvironment):
    """Raise on unsafe attribute access instead of rendering it silently as empty."""

    intercepted_binops = frozenset({"*", "**"})

    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        raise SecurityError(f"access to {attribute!r} of a {type(obj).__name__} is not allowed")

    def call_binop(self, context: jinja2.runtime.Context, op: str, left: Any, right: Any) -> Any:
        if op == "**":
            if isinstance(right, (int, float)) and abs(right) > MAX_EXPONENT:
                raise SecurityError(f"exponent larger than {MAX_EXPONENT} is not allowed")
            return operator.pow(left, right)
        for seq, count in ((left, right), (right, left)):
            if isinstance(seq, (str, list, tuple)) and isinstance(count, int) and len(seq) * count > MAX_REPEAT:
                raise SecurityError(f"repeating a value beyond {MAX_REPEAT} items is not allowed")
        return operator.mul(left, right)


def _environment(autoescape: bool) -> _Sandbox:
    # ChainableUndefined: {{ contact.first_name }} renders empty when contact
    # is missing, instead of failing a whole send on a typo.
    return _Sandbox(autoescape=autoescape, undefined=jinja2.ChainableUndefined)


_TEXT = _environment(autoescape=False)
_HTML = _environment(autoescape=True)


@lru_cache(maxsize=256)
def _compile(source: str, html: bool) -> jinja2.Template:
    env = _HTML if html else _TEXT
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error on line {exc.lineno}: {exc.message}") from exc
    except jinja2.TemplateError as exc:  # e.g. an unknown filter
        raise TemplateError(f"template error: {exc.message}") from exc


def render(source: str, context: dict, html: bool = False) -> str:
    """Render a template with the context; html=True escapes values for HTML."""
    template = _compile(source, html)
    try:
        return template.render(context)
    except SecurityError as exc:
        raise TemplateError(f"template not allowed: {exc}") from exc
    except (jinja2.TemplateError, TypeError, ValueError, ArithmeticError, LookupError) as exc:
        # Staff input: any failure while rendering is the template's fault.
        raise TemplateError(f"template failed to render: {exc}") from exc


def check(source: str) -> None:
    """Raise TemplateError if the template does not parse (for validating staff input)."""
    _compile(source, True)
