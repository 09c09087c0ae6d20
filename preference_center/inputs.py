"""Hostile input stops at the edge, the same way on SQLite and PostgreSQL.

Guarantees, for every request the app serves:

- an `<int:…>` in a path is a whole number from 1 to 2**63-1 (`IdConverter`),
  anything else matches no route (404), and `fits` keeps an id away from a
  32-bit column it cannot fit (PostgreSQL's INTEGER), so no lookup overflows;
- an id in a query string (`query_id`) is the same or a 400;
- a form body is UTF-8 text whose fields hold no control characters
  (`characters.refused`, line breaks allowed) and whose names and file names
  are one line: otherwise a 400 as soon as anyone reads `request.form`, before
  a view or the CSRF check sees a value; one-line form fields (`Form`) refuse
  line breaks too;
- a query string is UTF-8 and one-line text (`check_query_string`, a request
  hook of the pages): otherwise a 400; `request.args` itself never raises;
  a path variable holding control characters or line breaks names nothing
  (`check_path`): a 404;
- a body sent without Content-Length (chunked) is cut at the size limit with
  a 413, never silently truncated at it as Werkzeug does;
- the User-Agent and the client address come without control characters, so
  whatever stores them stores clean text; they are cleaned, never refused.
"""
from __future__ import annotations

import codecs
import re
from functools import cached_property
from urllib.parse import parse_qsl

from flask import Request as FlaskRequest
from flask import abort, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from sqlalchemy import BigInteger
from sqlalchemy import inspect as sa_inspect
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge
from werkzeug.formparser import FormDataParser, MultiPartParser
from werkzeug.routing import IntegerConverter
from werkzeug.wsgi import LimitedStream, get_input_stream
from wtforms import StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import ValidationError

from . import characters

# The largest ids a column holds: BIGINT, and INTEGER (32 bits in PostgreSQL, where a larger value is an error).
MAX_BIGINT = 2**63 - 1
MAX_INTEGER = 2**31 - 1


# -- ids --------------------------------------------------------------------------------

# Column (or model) -> its largest value: a column's type never changes, and reading it through a mapped
# attribute costs more than the check itself (every one-click verifies three ids). Keys are compared by
# identity first, so a mapped attribute's SQL `==` is never called on a hit.
_LARGEST: dict[object, int] = {}


def largest(column=None) -> int:
    """The largest value `column` (a model: its primary key; None: any id) holds on every database we run on."""
    if column is None:
        return MAX_BIGINT
    known = _LARGEST.get(column)
    if known is None:
        target = sa_inspect(column).primary_key[0] if isinstance(column, type) else column
        known = _LARGEST[column] = MAX_BIGINT if isinstance(target.type, BigInteger) else MAX_INTEGER
    return known


def fits(value, column=None, *, smallest: int = 1) -> bool:
    """Whether `value` is an int (not a bool) from `smallest` to the largest value `column` holds."""
    return isinstance(value, int) and not isinstance(value, bool) and smallest <= value <= largest(column)


class IdConverter(IntegerConverter):
    """`<int:…>` in every route: ASCII digits, 1 to 2**63-1; anything else is no match (404), never an overflow."""

    regex = r"[0-9]+"

    def __init__(self, map, fixed_digits: int = 0, min: int | None = 1, max: int | None = MAX_BIGINT,
                 signed: bool = False):
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


_DIGITS = re.compile(r"[0-9]{1,19}")


def query_id(name: str, column=None) -> int | None:
    """The id in query argument `name` (None when absent or empty); a 400 when it is not an id `column` holds."""
    raw = request.args.get(name, "")
    if raw == "":
        return None
    value = int(raw) if _DIGITS.fullmatch(raw) else None
    if not fits(value, column):
        abort(400, _("“%(name)s” must be a whole number from 1 to %(largest)s.", name=name, largest=largest(column)))
    return value


# -- text in query strings and path variables (a request hook of the pages) --------------

def check_query_string() -> None:
    """A 400 unless the raw query string is UTF-8 and every name and value is one line of text."""
    try:
        pairs = parse_qsl(request.query_string.decode(), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        abort(400, _("The address holds bytes that are not UTF-8 text."))
    for name, value in pairs:
        problem = characters.refused(name) or characters.refused(value)
        if problem:
            abort(400, _("The address holds %(problem)s, which no link or search may contain.", problem=problem))


def check_path() -> None:
    """A 404 when a path variable holds control characters or line breaks: such a URL names nothing."""
    for value in (request.view_args or {}).values():
        if isinstance(value, str) and characters.refused(value):
            abort(404)


# -- one-line form fields ------------------------------------------------------------------

def one_line(form, field) -> None:
    """WTForms validator: the field's text holds no control characters or line breaks."""
    problem = characters.refused(field.data) if isinstance(field.data, str) else None
    if problem:
        raise ValidationError(_l("This must be one line of text; it holds %(problem)s.", problem=problem))


class Form(FlaskForm):
    """FlaskForm whose one-line fields (every text input but a text area) refuse line breaks and controls."""

    class Meta:
        def bind_field(self, form, unbound_field, options):
            field = super().bind_field(form, unbound_field, options)
            if isinstance(field, StringField) and not isinstance(field, TextAreaField):
                field.validators = [*field.validators, one_line]
            return field


# -- the request: bodies within the limit, forms of clean text, clean headers -------------

_STRICT_UTF_8 = "pc_strict_utf_8"


def _find_strict_utf_8(name: str):
    # Werkzeug decodes multipart fields with errors="replace"; this codec ignores that and refuses bad bytes.
    if name != _STRICT_UTF_8:
        return None
    return codecs.CodecInfo(name=_STRICT_UTF_8, encode=codecs.utf_8_encode,
                            decode=lambda data, errors="strict": codecs.utf_8_decode(data, "strict", True))


codecs.register(_find_strict_utf_8)


class _StrictMultiPartParser(MultiPartParser):
    def get_part_charset(self, headers) -> str:
        charset = super().get_part_charset(headers)
        return _STRICT_UTF_8 if charset in ("utf-8", "ascii", "us-ascii") else charset


class _StrictFormDataParser(FormDataParser):
    """Werkzeug's parser, but bytes that are not UTF-8 (percent-encoded or not) are an error, not kept or replaced."""

    def _parse_urlencoded(self, stream, mimetype, content_length, options):
        items = parse_qsl(stream.read().decode(), keep_blank_values=True, errors="strict")
        return stream, self.cls(items), self.cls()

    def _parse_multipart(self, stream, mimetype, content_length, options):
        parser = _StrictMultiPartParser(stream_factory=self.stream_factory,
                                        max_form_memory_size=self.max_form_memory_size,
                                        max_form_parts=self.max_form_parts, cls=self.cls)
        boundary = options.get("boundary", "").encode("ascii")
        if not boundary:
            raise ValueError("Missing boundary")
        form, files = parser.parse(stream, boundary, content_length)
        return stream, form, files


class _Capped(LimitedStream):
    """A body of unknown length, read up to `limit`: one byte more is a 413 (Werkzeug would stop there silently)."""

    def __init__(self, stream, limit: int):
        super().__init__(stream, limit, is_max=True)
        self._source = stream

    def on_exhausted(self) -> None:
        if self._source.read(1):
            raise RequestEntityTooLarge()

    def readall(self) -> bytes:
        data = super().readall()
        if self.is_exhausted:
            self.on_exhausted()
        return data


def _form_problem(form: MultiDict, files: MultiDict) -> str | None:
    for name, value in form.items(multi=True):
        problem = characters.refused(name) or characters.refused(value, multiline=True)
        if problem:
            return _("The form field “%(name)s” holds %(problem)s, which text may not contain.",
                     name=characters.printable(name)[:60], problem=problem)
    for name, upload in files.items(multi=True):
        problem = characters.refused(name) or characters.refused(upload.filename or "")
        if problem:
            return _("The name of the uploaded file holds %(problem)s; rename the file and try again.",
                     problem=problem)
    return None


class Request(FlaskRequest):
    """Flask's request, held to the guarantees in this module's docstring."""

    form_data_parser_class = _StrictFormDataParser

    def __init__(self, environ, populate_request: bool = True, shallow: bool = False):
        super().__init__(environ, populate_request, shallow)
        self.remote_addr = characters.printable(self.remote_addr)

    @cached_property
    def stream(self):
        if self.shallow:
            raise RuntimeError("This request was created with 'shallow=True', reading from the input stream is"
                               " disabled.")
        environ, limit = self.environ, self.max_content_length
        chunked = environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked"
        # A chunked body reaches the app de-chunked (PEP 3333 leaves chunking to the server): read it to its end.
        if self.content_length is None and limit is not None and (chunked or "wsgi.input_terminated" in environ):
            return _Capped(environ["wsgi.input"], limit)
        return get_input_stream(environ, max_content_length=limit)

    def make_form_data_parser(self) -> FormDataParser:
        # Not silent: a body that cannot be read is a 400 below, not an empty form that fails some other check.
        return self.form_data_parser_class(stream_factory=self._get_file_stream,
                                           max_form_memory_size=self.max_form_memory_size,
                                           max_content_length=self.max_content_length,
                                           max_form_parts=self.max_form_parts, cls=self.parameter_storage_class,
                                           silent=False)

    def _load_form_data(self) -> None:
        if "form" in self.__dict__:
            return
        try:
            super()._load_form_data()
        except UnicodeDecodeError:
            self._no_form()
            raise BadRequest(_("The form holds bytes that are not UTF-8 text.")) from None
        except ValueError:
            self._no_form()
            raise BadRequest(_("The form could not be read.")) from None
        problem = _form_problem(self.form, self.files)
        if problem:
            self._no_form()
            raise BadRequest(problem)

    def _no_form(self) -> None:
        # Whoever looks again (an error page) finds an empty form instead of the refused one.
        self.__dict__["form"], self.__dict__["files"] = self.parameter_storage_class(), \
            self.parameter_storage_class()

    @cached_property
    def args(self):
        # Undecodable bytes stay percent-encoded (as Werkzeug does for %-escapes) instead of raising here:
        # error pages read the arguments too. `check_query_string` refuses such a request.
        text = self.query_string.decode("utf-8", "werkzeug.url_quote")
        return self.parameter_storage_class(parse_qsl(text, keep_blank_values=True, errors="werkzeug.url_quote"))

    @property
    def full_path(self) -> str:
        return f"{self.path}?{self.query_string.decode('utf-8', 'werkzeug.url_quote')}"

    @cached_property
    def user_agent(self):
        return self.user_agent_class(characters.printable(self.headers.get("User-Agent", "")))


def options(pairs) -> list[SelectChoice]:
    """(value, label) pairs as WTForms options (tuples are deprecated from WTForms 3.3)."""
    return [SelectChoice(value, label) for value, label in pairs]
