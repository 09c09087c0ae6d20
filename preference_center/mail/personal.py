"""Personalised templates: what a staff template may use, and how it is filled in per recipient.

A template is compiled once (per part: subject, text, HTML) and then filled in for each
recipient with the same result as rendering the whole template for them in the sandbox:

- Every top-level piece that does not mention `contact` renders once, into the shared body.
- A top-level `{{ expression }}` that mentions `contact` is a *hole*: the shared body holds a
  placeholder, and each recipient gets the value of that expression alone (a plain
  `{{ contact.name }}` is read straight from the values, escaped for HTML as Jinja would;
  anything else, `{{ contact.name|title }}` or `{{ contact.company or 'there' }}`, renders
  in the sandbox, under the usual time and size limits). A top-level `{% if %}` or `{% for %}`
  that mentions `contact` and assigns nothing is one hole too.
- A template whose use of `contact` cannot be cut that way (inside a `{% set %}`, a macro, a
  filter block...) renders whole per recipient (`Part.split` is False).

The transport substitutes the placeholders per envelope (SendGrid does it on its side), so a
campaign whose holes are small still goes out as one request per 1,000 recipients.

Values: a contact's fields that are empty are *missing* (undefined), so `default(...)` and
`or` fallbacks apply, and a missing field renders as nothing. Names a template may use are
checked when it is saved: an unknown variable or contact field is an error naming it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import jinja2
from jinja2 import meta, nodes
from markupsafe import escape

from .render import TemplateError, compile_tree, global_names, parse, run

# The fields of a contact a template may use, in the order the error message lists them.
FIELDS = ("name", "first_name", "email", "company", "title", "locale", "relationship")
# contact.attributes.<any key>: the contact's custom attributes (attributes.py); one they lack is undefined.
ATTRIBUTES = "attributes"
LINKS = ("unsubscribe_url", "preferences_url")
CAMPAIGN_NAMES = frozenset({"contact", *LINKS})
SYSTEM_NAMES = CAMPAIGN_NAMES | {"data"}
# Filled in for the checks at the door and for previews without a chosen contact.
SAMPLE = {"name": "Sample Recipient", "first_name": "Sample", "email": "recipient@example.com",
          "company": "Example Ltd", "title": "Head of Marketing", "locale": "en", "relationship": "customer",
          "attributes": {}}
# Nodes that change names outside themselves: a hole holding one could not render alone.
_ASSIGNING = (nodes.Assign, nodes.AssignBlock, nodes.Macro, nodes.CallBlock, nodes.Import, nodes.FromImport,
              nodes.Block, nodes.Extends, nodes.Include, nodes.FilterBlock, nodes.With, nodes.Scope)


def field_value(contact, name: str) -> str:
    """One field of `contact_values(contact)`, "" when missing (what a plain `{{ contact.x }}` prints);
    "attributes.plan" is one attribute, printed as Jinja prints it."""
    column, text = field_column(name)
    return text(getattr(contact, column, None))


def field_column(name: str):
    """(the contact's column a field is read from, the function giving `field_value` from that column's value):
    chosen once per campaign, called per recipient."""
    if name.startswith("attributes."):
        key = name[len("attributes."):]

        def attribute(attributes) -> str:
            value = (attributes or {}).get(key)
            return "" if value is None else str(value)
        return ATTRIBUTES, attribute
    if name == "name":
        return "name", _stripped
    if name == "first_name":
        def first_name(full) -> str:
            full = (full or "").strip()
            return full.split()[0] if full else ""
        return "name", first_name
    return name, _text


def _stripped(value) -> str:
    return (value or "").strip()


def _text(value) -> str:
    return value or ""


def contact_values(contact) -> dict[str, str]:
    """The fields of a contact (model or row) a template sees; empty ones are left out (undefined)."""
    name = (getattr(contact, "name", None) or "").strip()
    values = {
        "name": name,
        "first_name": name.split()[0] if name else "",
        "email": getattr(contact, "email", None) or "",
        "company": getattr(contact, "company", None) or "",
        "title": getattr(contact, "title", None) or "",
        "locale": getattr(contact, "locale", None) or "",
        "relationship": getattr(contact, "relationship", None) or "",
    }
    values = {key: value for key, value in values.items() if value}
    # Always there (an attribute the contact lacks is undefined, not the whole object); a copy, so a
    # template cannot reach the stored one.
    values[ATTRIBUTES] = dict(getattr(contact, "attributes", None) or {})
    return values


def _value_of(values: dict, name: str) -> str:
    """A plain hole's text from `contact_values` (what `{{ contact.x }}` prints; "" when missing)."""
    if name.startswith("attributes."):
        value = (values.get(ATTRIBUTES) or {}).get(name[len("attributes."):])
        return "" if value is None else str(value)
    return values.get(name, "")


def _name_of(node: nodes.Node) -> str | None:
    """'x' for `.x` or `['x']` (a constant text); None for anything else."""
    if isinstance(node, nodes.Getattr):
        return node.attr
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
        return node.arg.value
    return None


def _field_of(node: nodes.Node) -> str | None:
    """'name' for `contact.name` or `contact['name']`; None for anything else."""
    if isinstance(node, nodes.Getattr | nodes.Getitem) and isinstance(node.node, nodes.Name) \
            and node.node.name == "contact":
        return _name_of(node)
    return None


def _plain_field_of(node: nodes.Node) -> str | None:
    """The field a hole prints as it is: 'name' for `contact.name`, 'attributes.plan' for
    `contact.attributes.plan` (or with brackets); None for anything else."""
    field_name = _field_of(node)
    if field_name is not None:
        return None if field_name == ATTRIBUTES else field_name
    if isinstance(node, nodes.Getattr | nodes.Getitem) and _field_of(node.node) == ATTRIBUTES:
        key = _name_of(node)
        return f"{ATTRIBUTES}.{key}" if key is not None else None
    return None


def _uses_contact(node: nodes.Node) -> bool:
    return any(n.name == "contact" for n in node.find_all(nodes.Name))


def _unknown_names(tree: nodes.Template, allowed: frozenset[str]) -> list[str]:
    return sorted(meta.find_undeclared_variables(tree) - allowed - global_names())


def check_names(tree: nodes.Template, allowed: frozenset[str]) -> None:
    """Raise TemplateError for a variable or contact field the template may not use."""
    unknown = _unknown_names(tree, allowed)
    names = (", ".join(f"contact.{f}" for f in FIELDS) + f", contact.{ATTRIBUTES}.<key>, "
             + ", ".join(sorted(allowed - {"contact"})))
    if unknown:
        raise TemplateError(f"unknown variable {unknown[0]!r}; the variables are {names}")
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        attr = _field_of(node)
        if attr is not None and attr not in FIELDS and attr != ATTRIBUTES:
            raise TemplateError(f"unknown variable 'contact.{attr}': a contact has no attribute {attr!r}; "
                                f"the variables are {names}")


@dataclass(frozen=True)
class Hole:
    """One per-recipient value: a contact field read directly, or an expression rendered alone."""

    key: str
    field: str | None = None
    template: jinja2.Template | None = None


@dataclass
class Part:
    """One part (subject, text or HTML) of a template, compiled for filling in per recipient."""

    name: str
    html: bool
    template: jinja2.Template  # the whole part, for rendering it per recipient
    split: bool = False
    base: jinja2.Template | None = None  # the shared body with placeholders, when split
    holes: list[Hole] = field(default_factory=list)

    def render_base(self, context: dict, deadline: float) -> str:
        """The shared body (placeholders where the holes go); only when split."""
        return self._run(self.base, context, deadline)

    def render_whole(self, context: dict, deadline: float) -> str:
        return self._run(self.template, context, deadline)

    def fill_holes(self, values: dict, context: dict, deadline: float) -> dict[str, str]:
        """Each hole's value for one recipient (context holds their values and real links)."""
        filled = {}
        for hole in self.holes:
            if hole.field is not None:
                value = _value_of(values, hole.field)
                filled[hole.key] = str(escape(value)) if self.html else value
            else:
                filled[hole.key] = self._run(hole.template, context, deadline)
        return filled

    def _run(self, template: jinja2.Template, context: dict, deadline: float) -> str:
        try:
            return run(template, context, deadline=deadline)
        except TemplateError as exc:
            exc.field = self.name
            raise


def compile_part(name: str, source: str, html: bool, allowed: frozenset[str] = CAMPAIGN_NAMES) -> Part:
    """Check the names a part uses and cut it into shared body and holes; raises TemplateError (with .field)."""
    try:
        tree = parse(source, html)
        part = Part(name, html, compile_tree(parse(source, html), html))  # unknown filters fail here
        check_names(tree, allowed)
        _split(part, tree, allowed)
    except TemplateError as exc:
        exc.field = name
        raise
    return part


def _split(part: Part, tree: nodes.Template, allowed: frozenset[str]) -> None:
    """Cut the tree into a shared body and holes, if every use of `contact` is in a hole-shaped piece."""
    holes: list[Hole] = []
    trees: list[nodes.Template] = []
    body: list[nodes.Node] = []

    def hole(node: nodes.Node) -> nodes.TemplateData:
        attr = _plain_field_of(node)
        if attr is not None:
            key = f"-pc_{attr.replace('.', '_')}_html-" if part.html else f"-pc_{attr.replace('.', '_')}-"
            if all(h.key != key for h in holes):
                holes.append(Hole(key, field=attr))
            return nodes.TemplateData(key)
        key = f"-pc_{part.name}{len(trees) + 1}-"
        alone = nodes.Template([node if isinstance(node, nodes.Output) or not isinstance(node, nodes.Expr)
                                else nodes.Output([node])])
        trees.append(alone)
        holes.append(Hole(key, template=None))
        return nodes.TemplateData(key)

    for node in tree.body:
        if not _uses_contact(node):
            body.append(node)
        elif isinstance(node, nodes.Output):
            body.append(nodes.Output([
                child if isinstance(child, nodes.TemplateData) or not _uses_contact(child) else hole(child)
                for child in node.nodes]))
        elif isinstance(node, (nodes.If, nodes.For)) and not any(True for _ in node.find_all(_ASSIGNING)):
            body.append(nodes.Output([hole(node)]))
        else:
            return  # renders whole per recipient
    base = nodes.Template(body)
    for new in (base, *trees):
        new.set_environment(tree.environment)
        new.set_lineno(1)
    if _unknown_names(base, allowed) or any(_unknown_names(t, allowed) for t in trees):
        return  # a hole needs a name set elsewhere in the template: renders whole
    compiled = iter([compile_tree(t, part.html) for t in trees])
    part.holes = [h if h.field is not None else Hole(h.key, template=next(compiled)) for h in holes]
    part.base = compile_tree(base, part.html)
    part.split = True
