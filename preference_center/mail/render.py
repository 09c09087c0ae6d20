"""Rendering staff-written templates in a sandbox that cannot reach Python internals, within limits.

Guarantees (each limit is a render failure, `TemplateError`, with a message staff can act on):

- time: a render finishes by its deadline (`RENDER_SECONDS` from its start, or the deadline a
  caller shares between a message's parts); the clock is checked on every loop step, call, filter,
  operator and piece of output, so nested loops that print nothing are stopped too;
- output: at most `MAX_OUTPUT` characters per rendered part, counted as the text streams out of
  `generate()`; text built in buffers along the way (macros, `set` blocks, filter blocks) is
  counted as it is written, up to `MAX_WORK` in all;
- values: a string at most `MAX_OUTPUT` characters, a list at most `MAX_ITEMS` items, an integer
  at most `MAX_INT_BITS` bits, checked after every call, filter, operator and `~`; operations that
  could build a far bigger value in one step (repeating, powers, padding, indenting, joining,
  replacing, format widths) are refused before they run.

The limits of the render in progress live in a context variable, so concurrent renders in a
worker's or a web server's threads each keep their own.
"""
from __future__ import annotations

import re
import string
import time
from contextvars import ContextVar
from functools import lru_cache, wraps
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

MAX_REPEAT = 10_000
MAX_EXPONENT = 100
MAX_OUTPUT = 1_000_000  # characters per rendered part (subject, text, HTML)
MAX_WORK = 4 * MAX_OUTPUT  # characters of output produced along the way, buffers included
MAX_ITEMS = 100_000  # the sandbox's own cap on range()
MAX_INT_BITS = 8192
RENDER_SECONDS = 2.0
# What one buffered piece of output costs beyond its characters: a buffer of a million
# empty strings holds memory although it holds no text.
PIECE_COST = 8


class TemplateError(Exception):
    """A template does not parse, fails to render, or goes beyond what the sandbox allows.

    `field` names the part that failed (subject, text, html) when the caller knows it.
    """

    field: str | None = None


class LimitExceeded(Exception):
    """A render went beyond a limit (deliberately no subclass of what Jinja or Python code catches)."""


class _Limits:
    """The budget of one render in progress."""

    __slots__ = ("deadline", "work")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.work = 0

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise LimitExceeded(f"it took longer than {RENDER_SECONDS:g} s to render (a loop that runs too long?)")

    def spend(self, cost: int) -> None:
        self.work += cost
        if self.work > MAX_WORK:
            raise LimitExceeded(f"its macros and blocks build more than {MAX_WORK:,} characters of text")
        self.tick()


_current: ContextVar[_Limits | None] = ContextVar("render_limits", default=None)


def _tick() -> None:
    limits = _current.get()
    if limits is not None:
        limits.tick()


def _checked(value: Any) -> Any:
    """The value, if it stays within the value limits."""
    if isinstance(value, str):
        if len(value) > MAX_OUTPUT:
            raise LimitExceeded(f"it builds a text longer than {MAX_OUTPUT:,} characters")
    elif isinstance(value, (list, tuple, dict, set, frozenset)):
        if len(value) > MAX_ITEMS:
            raise LimitExceeded(f"it builds a list of more than {MAX_ITEMS:,} items")
    elif isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise LimitExceeded(f"it computes a number larger than {MAX_INT_BITS} bits")
    return value


# -- operations that can build much more than they are given, checked before they run --------

_PADDING = frozenset({"center", "ljust", "rjust", "zfill"})
_PER_LINE = frozenset({"indent", "expandtabs"})
_PER_ITEM = frozenset({"wordwrap", "urlize", "translate", "tojson", "batch", "slice"})
_FORMATS = frozenset({"format", "format_map", "%"})
AMPLIFIERS = _PADDING | _PER_LINE | _PER_ITEM | _FORMATS | {"join", "replace"}

_TEMPLATE_KWARGS = frozenset({"_loop_vars", "_block_vars"})
_PRINTF_WIDTHS = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\d*)(?:\.(\d*))?")
_DIGITS = re.compile(r"\d+")


def _size(value: Any) -> int:
    """Roughly how many characters a value stands for (one level deep)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return len(value) + sum(len(v) for v in value if isinstance(v, str))
    if isinstance(value, dict):
        return len(value) + sum(len(v) for v in (*value, *value.values()) if isinstance(v, str))
    return 16


def _format_widths(fmt: str, new_style: bool) -> int:
    """The widths and precisions written inside a format string ('%09d', '{:>80}')."""
    if new_style:
        try:
            specs = [spec or "" for _, _, spec, _ in string.Formatter().parse(fmt)]
        except ValueError:
            return 0  # the format call itself reports the mistake
        return sum(int(d) for spec in specs for d in _DIGITS.findall(spec))
    return sum(int(n) for groups in _PRINTF_WIDTHS.findall(fmt) for n in groups if n)


def _precheck(name: str, value: Any, args: tuple, kwargs: dict) -> tuple:
    """Refuse an amplifying operation whose result would be too large; return (value, *args) to call with."""
    extra = (*args, *kwargs.values())
    numbers = [abs(a) for a in extra if isinstance(a, int)]
    big = max(numbers, default=0)
    if big > MAX_OUTPUT:
        raise LimitExceeded(f"{name}: {big:,} is more than the {MAX_OUTPUT:,} allowed")
    texts = sum(_size(a) for a in extra if isinstance(a, (str, dict)))
    size = _size(value)
    if name == "replace" and isinstance(value, str) and len(args) >= 2 and all(isinstance(a, str) for a in args[:2]):
        old, new = args[0], args[1]
        count = len(value) + 1 if old == "" else value.count(old)
        bound = len(value) + count * max(0, len(new) - len(old))
    elif name == "join":
        items = value if isinstance(value, (str, list, tuple)) else list(value)
        _checked(items)
        separator = next((a for a in extra if isinstance(a, str)), "")
        bound = _size(items) + len(items) * len(separator)
        value = items
    elif name in _PADDING:
        bound = max(size, big) + texts
    elif name in _PER_LINE:
        lines = (value.count("\t") if name == "expandtabs" else value.count("\n")) + 1 if isinstance(value, str) else 1
        width = next((a for a in extra if isinstance(a, (int, str)) and not isinstance(a, bool)), 8)
        bound = size + lines * (len(width) if isinstance(width, str) else abs(width))
    elif name == "tojson":
        if big > 64:
            raise LimitExceeded("tojson: an indent of more than 64 is not allowed")
        bound = 0  # bounded by the value itself; checked after the call
    elif name in _FORMATS:
        widths = _format_widths(value, new_style=name != "%") if isinstance(value, str) else 0
        flat = [v for a in extra for v in (a if isinstance(a, tuple) else a.values() if isinstance(a, dict) else (a,))]
        bound = size + widths + big + sum(_size(v) for v in flat)
    else:  # _PER_ITEM: each item or line may gain every extra text
        bound = (size + 1) * (1 + texts)
    if bound > MAX_OUTPUT:
        raise LimitExceeded(f"{name} would build a text of about {bound:,} characters, more than {MAX_OUTPUT:,}")
    return (value, *args)


def _guard_filter(name: str, func):
    # Filters marked pass_context / pass_eval_context / pass_environment get that first.
    offset = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0
    check = "%" if name == "format" else name  # the format filter is printf-style

    @wraps(func)  # keeps jinja_pass_arg, which the compiler reads
    def guarded(*args, **kwargs):
        _tick()
        if check in AMPLIFIERS and len(args) > offset:
            args = (*args[:offset], *_precheck(check, args[offset], args[offset + 1:], kwargs))
        return _checked(func(*args, **kwargs))

    return guarded


def _join_output(parts) -> str:
    """Join a buffer of output (a macro's, a `set` block's, a filter block's) within the size limit."""
    parts = list(parts)
    total = sum(map(len, parts))
    if total > MAX_OUTPUT:
        raise LimitExceeded(f"it builds a text longer than {MAX_OUTPUT:,} characters")
    return "".join(parts)


# -- the compiled template calls back into the environment -------------------------------

class _GuardedCodeGenerator(CodeGenerator):
    """Jinja's code generator, with loops, `~` and every piece of buffered output going through the limits.

    Output that streams straight out of `generate()` is counted there, by `render`.
    """

    _buffered = False

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        # Step through the iterable via environment.guarded_iter (Jinja allows no custom node types).
        guard = nodes.EnvironmentAttribute("guarded_iter", lineno=node.iter.lineno)
        if not (isinstance(node.iter, nodes.Call) and node.iter.node == guard):
            node.iter = nodes.Call(guard, [node.iter], [], None, None, lineno=node.iter.lineno)
        super().visit_For(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:  # noqa: N802
        self.write("environment.guarded_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        if frame.eval_ctx.volatile:
            self.write("), (markup_join if context.eval_ctx.volatile else str_join))")
        else:
            self.write(f"), {'markup_join' if frame.eval_ctx.autoescape else 'str_join'})")

    def visit_Output(self, node: nodes.Output, frame: Frame) -> None:  # noqa: N802
        self._buffered = frame.buffer is not None
        super().visit_Output(node, frame)

    def _output_child_pre(self, node, frame, finalize) -> None:
        if self._buffered:
            self.write("environment.guarded_output(")
        super()._output_child_pre(node, frame, finalize)

    def _output_child_post(self, node, frame, finalize) -> None:
        super()._output_child_post(node, frame, finalize)
        if self._buffered:
            self.write(")")

    def _output_const_repr(self, group) -> str:
        text = super()._output_const_repr(group)
        return f"environment.guarded_output({text})" if self._buffered else text


class _Sandbox(ImmutableSandboxedEnvironment):
    """Raise on unsafe attribute access instead of rendering it silently as empty; enforce the limits."""

    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})
    code_generator_class = _GuardedCodeGenerator
    concat = staticmethod(_join_output)

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.filters = {name: _guard_filter(name, func) for name, func in self.filters.items()}
        # lipsum(n) writes n paragraphs in one call, out of the clock's reach; mail has no use for it.
        self.globals.pop("lipsum", None)

    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        raise SecurityError(f"access to {attribute!r} of a {type(obj).__name__} is not allowed")

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 - the sandbox's own signature
        _tick()
        # The sandbox hands out str.format wrapped (functools.update_wrapper keeps __wrapped__).
        method = getattr(__obj, "__wrapped__", __obj)
        owner, name = getattr(method, "__self__", None), getattr(method, "__name__", "")
        if isinstance(owner, str) and name in AMPLIFIERS:
            if name == "join" and args:  # "sep".join(items): the items are the value, the separator the extra
                args = (_precheck("join", args[0], (owner,), {})[0], *args[1:])
            else:  # (the compiled template passes its own _loop_vars / _block_vars along)
                _precheck(name, owner, args, {k: v for k, v in kwargs.items() if k not in _TEMPLATE_KWARGS})
        return _checked(super().call(__context, __obj, *args, **kwargs))

    def call_binop(self, context: jinja2.runtime.Context, op: str, left: Any, right: Any) -> Any:
        _tick()
        if op == "**":
            if isinstance(right, (int, float)) and abs(right) > MAX_EXPONENT:
                raise SecurityError(f"exponent larger than {MAX_EXPONENT} is not allowed")
            if isinstance(left, int) and isinstance(right, int) and left.bit_length() * abs(right) > MAX_INT_BITS:
                raise LimitExceeded(f"it computes a number larger than {MAX_INT_BITS} bits")
        elif op == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(count, int) and len(seq) * count > MAX_REPEAT:
                    raise SecurityError(f"repeating a value beyond {MAX_REPEAT} items is not allowed")
            if isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise LimitExceeded(f"it computes a number larger than {MAX_INT_BITS} bits")
        elif op == "%" and isinstance(left, str):
            _precheck("%", left, (right,), {})
        return _checked(self.binop_table[op](left, right))

    # Called by the compiled template (see _GuardedCodeGenerator).

    def guarded_iter(self, iterable):
        limits = _current.get()
        for item in iterable:
            if limits is not None:
                limits.tick()
            yield item

    def guarded_concat(self, parts: tuple, join) -> str:
        _tick()
        total = sum(len(p) if isinstance(p, str) else len(str(p)) for p in parts)
        if total > MAX_OUTPUT:
            raise LimitExceeded(f"it builds a text longer than {MAX_OUTPUT:,} characters")
        return _checked(join(parts))

    def guarded_output(self, value: str) -> str:
        limits = _current.get()
        if limits is not None:
            limits.spend(len(value) + PIECE_COST)
        return value


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
    except (RecursionError, MemoryError, SyntaxError) as exc:
        # Python refuses code nested this deep (e.g. more than 20 loops inside each other).
        raise TemplateError(f"template is nested too deeply to compile: {exc}") from exc


def deadline_from_now(seconds: float | None = None) -> float:
    """The moment a render started now must end by; pass it to each part of one message to share it."""
    return time.monotonic() + (RENDER_SECONDS if seconds is None else seconds)


def render(source: str, context: dict, html: bool = False, *, deadline: float | None = None) -> str:
    """Render a template with the context; html=True escapes values for HTML.

    Raises TemplateError if the template does not parse, fails, or goes beyond a limit.
    """
    return run(_compile(source, html), context, deadline=deadline)


def parse(source: str, html: bool = False) -> nodes.Template:
    """The template's syntax tree (a fresh one each call: callers may rewrite it); raises TemplateError."""
    try:
        return (_HTML if html else _TEXT).parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error on line {exc.lineno}: {exc.message}") from exc
    except (RecursionError, MemoryError) as exc:
        raise TemplateError(f"template is nested too deeply to compile: {exc}") from exc


def compile_tree(tree: nodes.Template, html: bool = False) -> jinja2.Template:
    """Compile a syntax tree from `parse` (possibly rewritten) in the sandbox; raises TemplateError."""
    env = _HTML if html else _TEXT
    tree.set_environment(env)
    tree.set_lineno(1)  # only fills in nodes added by a rewrite
    try:
        return env.template_class.from_code(env, env.compile(tree), env.make_globals(None), None)
    except jinja2.TemplateError as exc:  # e.g. an unknown filter
        raise TemplateError(f"template error: {exc.message}") from exc
    except (RecursionError, MemoryError, SyntaxError) as exc:
        raise TemplateError(f"template is nested too deeply to compile: {exc}") from exc


def global_names() -> frozenset[str]:
    """Names every template may use without being given them (range, namespace, ...)."""
    return frozenset(_TEXT.globals)


def run(template: jinja2.Template, context: dict, *, deadline: float | None = None) -> str:
    """Render a compiled template within the limits (see `render`)."""
    token = _current.set(_Limits(deadline if deadline is not None else deadline_from_now()))
    try:
        limits, pieces, size = _current.get(), [], 0
        for piece in template.generate(context):
            size += len(piece)
            if size > MAX_OUTPUT:
                raise LimitExceeded(f"the rendered text is longer than {MAX_OUTPUT:,} characters")
            limits.tick()
            if piece:  # a million empty pieces would hold memory for no text
                pieces.append(piece)
        return "".join(pieces)
    except LimitExceeded as exc:
        raise TemplateError(f"template goes beyond the limits: {exc}") from exc
    except SecurityError as exc:
        raise TemplateError(f"template not allowed: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - staff input: any failure while rendering is the template's fault
        raise TemplateError(f"template failed to render: {exc}") from exc
    finally:
        _current.reset(token)


def check(source: str) -> None:
    """Raise TemplateError if the template does not parse (for validating staff input)."""
    _compile(source, True)
