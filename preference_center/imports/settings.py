"""Import settings: the column mapping and the legal basis, source and consent stated for the whole file."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from .. import attributes, erasure
from ..errors import N_
from ..extensions import db
from ..models import RELATIONSHIPS, ImportJob, Topic
from .files import ImportProblem, _open, column_names

FIELDS = ("email", "name", "company", "title", "phone", "locale", "relationship")
# A mapping key "attribute:plan" imports that column as the custom attribute `plan`.
ATTRIBUTE = "attribute:"
# The basis the staff member states for holding the whole file.
BASES = ("consent", "legitimate_interest", "contract")
BASIS_NAMES = {
    "consent": "Consent (the people in the file opted in)",
    "legitimate_interest": "Legitimate interest (an existing relationship, e.g. customers)",
    "contract": "Contract (people we have a contract with; system mail only)",
}
SOURCE_MAX = 150
THIRD_PARTY_MAX = 200
EVIDENCE_MAX = 500


@dataclass
class Settings:
    mapping: dict
    legal_basis: str
    source_text: str
    topic_key: str | None = None
    consent_collected: bool = False
    confirmed_opt_in: bool = False
    default_relationship: str | None = None
    has_header: bool | None = None
    third_party: str | None = None
    share_evidence: str | None = None


def configure(job: ImportJob, settings: Settings) -> ImportJob:
    """Check and store how to read the file and on what basis; the file's rows are not touched."""
    if job.status not in ("uploaded", "previewed"):
        raise ImportProblem(N_("this import is %(status)s; its settings can no longer change", status=job.status),
                            "status")
    width = len(job.columns)
    mapping = {}
    for name, index in (settings.mapping or {}).items():
        if name.startswith(ATTRIBUTE):  # a column imported as a custom attribute (attributes.py)
            if not attributes.KEY.match(name[len(ATTRIBUTE):]):
                raise ImportProblem(N_("%(key)r cannot be an attribute key: lower-case letters, digits and '_', "
                                       "starting with a letter, at most 40", key=name[len(ATTRIBUTE):]), "attributes")
        elif name not in FIELDS:
            raise ImportProblem(N_("unknown contact field %(name)r", name=name), name)
        if index is None or index == "":
            continue
        index = int(index)
        if not 0 <= index < width:
            raise ImportProblem(N_("%(field)s: there is no column %(column)s", field=name, column=index + 1), name)
        if index in mapping.values():
            raise ImportProblem(N_("%(field)s: column %(column)s is mapped twice", field=name, column=index + 1),
                                "attributes" if name.startswith(ATTRIBUTE) else name)
        mapping[name] = index
    if "email" not in mapping:
        raise ImportProblem(N_("choose the column that holds the email address"), "email")
    if sum(name.startswith(ATTRIBUTE) for name in mapping) > attributes.MAX_KEYS:
        raise ImportProblem(N_("at most %(n)s columns can be attributes", n=attributes.MAX_KEYS), "attributes")
    if settings.legal_basis not in BASES:
        raise ImportProblem(N_("choose the legal basis on which we hold these contacts"), "legal_basis")
    source = (settings.source_text or "").strip()
    if not source:
        raise ImportProblem(N_("say where these contacts come from (e.g. 'trade fair 2026 sign-up sheet')"),
                           "source_text")
    if len(source) > SOURCE_MAX:
        raise ImportProblem(N_("the source is longer than %(limit)s characters", limit=SOURCE_MAX), "source_text")
    erasure.refuse_addresses(source, "source_text")
    third_party = (settings.third_party or "").strip() or None
    evidence = (settings.share_evidence or "").strip() or None
    for name, value, limit in (("third_party", third_party, THIRD_PARTY_MAX), ("share_evidence", evidence,
                                                                               EVIDENCE_MAX)):
        if value and len(value) > limit:
            raise ImportProblem(N_("%(field)s is longer than %(limit)s characters", field=name.replace('_', ' '),
                                   limit=limit),
                                name)
        erasure.refuse_addresses(value, name)
    if evidence and not third_party:
        raise ImportProblem(N_("name the company the list comes from, or leave the evidence empty"), "third_party")
    if settings.default_relationship and settings.default_relationship not in RELATIONSHIPS:
        raise ImportProblem(N_("relationship must be one of %(relationships)s", relationships=', '.join(RELATIONSHIPS)),
                            "default_relationship")
    topic = None
    if settings.topic_key:
        topic = db.session.scalar(select(Topic).where(Topic.key == settings.topic_key))
        if topic is None:
            raise ImportProblem(N_("unknown topic %(topic)r", topic=settings.topic_key), "topic")
        if topic.kind != "marketing" or topic.retired:
            raise ImportProblem(N_("subscriptions can only be granted to a live marketing topic"), "topic")
        if settings.legal_basis != "consent":
            raise ImportProblem(N_("a subscription from an import needs the legal basis 'consent'; "
                               "legitimate-interest topics reach people through their relationship"), "topic")
    if settings.legal_basis == "consent":
        if topic is None:
            raise ImportProblem(N_("with the basis 'consent', choose the topic these people consented to"), "topic")
        if not settings.consent_collected:
            raise ImportProblem(N_("tick the box stating that these people gave their consent, and where"),
                               "consent_collected")
    elif settings.consent_collected or settings.confirmed_opt_in:
        raise ImportProblem(N_("consent statements only apply to the basis 'consent'"), "consent_collected")
    if third_party and settings.legal_basis == "consent" and not evidence:
        raise ImportProblem(N_("a list from %(company)s may only subscribe people to a consent topic with evidence that "
                                "they consented to it being shared with us (e.g. the wording of its sign-up form, "
                                "naming us)", company=third_party), "share_evidence")
    if settings.confirmed_opt_in and not settings.consent_collected:
        raise ImportProblem(N_("a confirmed opt-in is a collected consent: tick both boxes"), "confirmed_opt_in")
    if settings.has_header is not None and settings.has_header != job.has_header:
        _switch_header(job, settings.has_header)
    job.mapping = mapping
    job.legal_basis = settings.legal_basis
    job.source_text = source
    job.topic_id = topic.id if topic else None
    job.consent_collected = bool(settings.consent_collected)
    job.confirmed_opt_in = bool(settings.confirmed_opt_in)
    job.default_relationship = settings.default_relationship or None
    job.third_party, job.share_evidence = third_party, evidence
    return job


def _switch_header(job: ImportJob, has_header: bool) -> None:
    """The staff member knows better than the guess: the first row is (not) a header."""
    with _open(Path(job.stored_path)) as fh:
        first = next((r for r in csv.reader(fh, delimiter=job.delimiter) if any(c.strip() for c in r)), [])
    job.total += -1 if has_header else 1
    job.has_header = has_header
    job.columns = column_names(first, has_header)
