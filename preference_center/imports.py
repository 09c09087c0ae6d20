"""CSV import of contacts: store, sniff, map columns, preview, apply in chunks with progress.

An import never turns "imported" into "consented": the staff member states a
legal basis and a source for the whole file; a consent grant is recorded only
when they say the consent was collected, and it counts as a confirmed opt-in
only when they also affirm that. Addresses on the suppression list (erased,
bounced, complained, opted out) are skipped, so a re-import cannot bring
anyone back. Every change is a ledger event with source ``import:<job id>``.
"""
from __future__ import annotations

import codecs
import csv
import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from flask import current_app
from sqlalchemy import select, text, update

from . import contacts, ledger
from .admin_models import ImportJob
from .emails import InvalidEmail, normalize
from .extensions import db
from .models import RELATIONSHIPS, Contact, Subscription, Suppression, Topic, utcnow

log = logging.getLogger(__name__)

FIELDS = ("email", "name", "company", "title", "phone", "locale", "relationship")
PROFILE = ("name", "company", "title", "phone", "locale")
# The basis the staff member states for holding the whole file.
BASES = ("consent", "legitimate_interest", "contract")
BASIS_NAMES = {
    "consent": "Consent (the people in the file opted in)",
    "legitimate_interest": "Legitimate interest (an existing relationship, e.g. customers)",
    "contract": "Contract (people we have a contract with; system mail only)",
}
CHUNK = 500
SAMPLE_ROWS = 20
INVALID_LISTED = 200
SNIFF_BYTES = 64 * 1024
DELIMITERS = ",;\t|"
SOURCE_MAX = 150

# Header names we recognise when guessing the column mapping.
SYNONYMS = {
    "email": ("email", "e-mail", "email address", "e-mail address", "mail", "emailaddress", "correo"),
    "name": ("name", "full name", "fullname", "contact name", "nombre"),
    "company": ("company", "organisation", "organization", "company name", "employer", "empresa"),
    "title": ("title", "job title", "position", "role", "cargo"),
    "phone": ("phone", "telephone", "phone number", "mobile", "tel", "telefono", "teléfono"),
    "locale": ("locale", "language", "lang", "idioma"),
    "relationship": ("relationship", "type", "contact type", "relation", "segment"),
}


class ImportProblem(contacts.ValidationError):
    """The file or the import settings cannot be used; the message says why."""


# -- the file ------------------------------------------------------------------------

def uploads_folder() -> Path:
    folder = Path(current_app.config["PC_INSTANCE_PATH"]) / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def store(stream, filename: str, *, created_by: str) -> ImportJob:
    """Save an uploaded CSV under the instance's uploads folder and describe it."""
    target = uploads_folder() / f"{uuid.uuid4().hex}.csv"
    with target.open("wb") as out:
        while chunk := stream.read(1024 * 1024):
            out.write(chunk)
    try:
        delimiter, columns, has_header, total = describe(target)
    except ImportProblem:
        target.unlink(missing_ok=True)
        raise
    job = ImportJob(created_by=created_by[:200], filename=(filename or "upload.csv")[:255],
                    stored_path=str(target), status="uploaded", delimiter=delimiter, has_header=has_header,
                    columns=columns, mapping=guess_mapping(columns) if has_header else {}, total=total,
                    processed=0)
    db.session.add(job)
    db.session.flush()
    return job


def _check_utf8(path: Path) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")()
    with path.open("rb") as fh:
        try:
            while chunk := fh.read(1024 * 1024):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise ImportProblem("the file is not UTF-8 text; save it as 'CSV UTF-8' and upload it again",
                               "file") from exc


def _open(path: Path):
    # utf-8-sig drops the byte-order mark spreadsheet programs put at the start.
    return path.open("r", encoding="utf-8-sig", newline="")


def describe(path: Path) -> tuple[str, list[str], bool, int]:
    """(delimiter, first-row cells, whether the first row is a header, number of data rows)."""
    if path.stat().st_size == 0:
        raise ImportProblem("the file is empty", "file")
    _check_utf8(path)
    with _open(path) as fh:
        sample = fh.read(SNIFF_BYTES)
    delimiter = _delimiter(sample)
    with _open(path) as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        first = next((r for r in reader if any(c.strip() for c in r)), None)
        if first is None:
            raise ImportProblem("the file has no rows", "file")
        rows = sum(1 for r in reader if any(c.strip() for c in r))
    # A first row holding an address is data; otherwise it names the columns.
    has_header = not any(_is_email(c) for c in first)
    columns = [c.strip() for c in first] if has_header else [f"Column {i + 1}" for i in range(len(first))]
    return delimiter, columns, has_header, rows if has_header else rows + 1


def _delimiter(sample: str) -> str:
    """The Sniffer's guess, unless another candidate splits the lines more consistently."""
    try:
        sniffed = csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        sniffed = ","
    lines = [line for line in sample.splitlines()[:-1] or sample.splitlines() if line.strip()][:50]

    def score(delimiter: str) -> tuple[float, int]:
        widths = [len(r) for r in csv.reader(lines, delimiter=delimiter)]
        if not widths or widths[0] < 2:
            return (0.0, 0)
        return (sum(w == widths[0] for w in widths) / len(widths), widths[0])

    best = max(DELIMITERS, key=lambda d: (score(d), d == sniffed))
    return sniffed if score(sniffed) >= score(best) else best


def _is_email(value: str) -> bool:
    try:
        normalize(value)
    except InvalidEmail:
        return False
    return True


def guess_mapping(columns: list[str]) -> dict:
    """Contact field -> column index, from recognisable header names."""
    mapping = {}
    for index, name in enumerate(columns):
        label = name.strip().lower().replace("_", " ")
        for field_name, names in SYNONYMS.items():
            if field_name not in mapping and label in names:
                mapping[field_name] = index
    return mapping


def records(job: ImportJob, skip: int = 0) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of each non-blank data row, after the first `skip` of them."""
    with _open(Path(job.stored_path)) as fh:
        reader = csv.reader(fh, delimiter=job.delimiter)
        header_pending = job.has_header
        seen = 0
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            if header_pending:
                header_pending = False
                continue
            seen += 1
            if seen > skip:
                yield reader.line_num, cells


def delete_file(job: ImportJob) -> None:
    """Remove the upload from disk and keep no addresses in the job's preview."""
    if job.stored_path:
        Path(job.stored_path).unlink(missing_ok=True)
        job.stored_path = None
    if job.preview:
        preview = dict(job.preview)
        preview["invalid"] = [{"line": i["line"], "error": i["error"]} for i in preview.get("invalid", [])]
        preview.pop("sample", None)
        job.preview = preview


# -- settings ------------------------------------------------------------------------

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


def configure(job: ImportJob, settings: Settings) -> ImportJob:
    """Check and store how to read the file and on what basis; the file's rows are not touched."""
    if job.status not in ("uploaded", "previewed"):
        raise ImportProblem(f"this import is {job.status}; its settings can no longer change", "status")
    width = len(job.columns)
    mapping = {}
    for name, index in (settings.mapping or {}).items():
        if name not in FIELDS:
            raise ImportProblem(f"unknown contact field {name!r}", name)
        if index is None or index == "":
            continue
        index = int(index)
        if not 0 <= index < width:
            raise ImportProblem(f"{name}: there is no column {index + 1}", name)
        if index in mapping.values():
            raise ImportProblem(f"{name}: column {index + 1} is mapped twice", name)
        mapping[name] = index
    if "email" not in mapping:
        raise ImportProblem("choose the column that holds the email address", "email")
    if settings.legal_basis not in BASES:
        raise ImportProblem("choose the legal basis on which we hold these contacts", "legal_basis")
    source = (settings.source_text or "").strip()
    if not source:
        raise ImportProblem("say where these contacts come from (e.g. 'trade fair 2026 sign-up sheet')",
                           "source_text")
    if len(source) > SOURCE_MAX:
        raise ImportProblem(f"the source is longer than {SOURCE_MAX} characters", "source_text")
    if settings.default_relationship and settings.default_relationship not in RELATIONSHIPS:
        raise ImportProblem(f"relationship must be one of {', '.join(RELATIONSHIPS)}", "default_relationship")
    topic = None
    if settings.topic_key:
        topic = db.session.scalar(select(Topic).where(Topic.key == settings.topic_key))
        if topic is None:
            raise ImportProblem(f"unknown topic {settings.topic_key!r}", "topic")
        if topic.kind != "marketing" or topic.retired:
            raise ImportProblem("subscriptions can only be granted to a live marketing topic", "topic")
        if settings.legal_basis != "consent":
            raise ImportProblem("a subscription from an import needs the legal basis 'consent'; "
                               "legitimate-interest topics reach people through their relationship", "topic")
    if settings.legal_basis == "consent":
        if topic is None:
            raise ImportProblem("with the basis 'consent', choose the topic these people consented to", "topic")
        if not settings.consent_collected:
            raise ImportProblem("tick the box stating that these people gave their consent, and where",
                               "consent_collected")
    elif settings.consent_collected or settings.confirmed_opt_in:
        raise ImportProblem("consent statements only apply to the basis 'consent'", "consent_collected")
    if settings.confirmed_opt_in and not settings.consent_collected:
        raise ImportProblem("a confirmed opt-in is a collected consent: tick both boxes", "confirmed_opt_in")
    if settings.has_header is not None and settings.has_header != job.has_header:
        _switch_header(job, settings.has_header)
    job.mapping = mapping
    job.legal_basis = settings.legal_basis
    job.source_text = source
    job.topic_id = topic.id if topic else None
    job.consent_collected = bool(settings.consent_collected)
    job.confirmed_opt_in = bool(settings.confirmed_opt_in)
    job.default_relationship = settings.default_relationship or None
    return job


def _switch_header(job: ImportJob, has_header: bool) -> None:
    """The staff member knows better than the guess: the first row is (not) a header."""
    with _open(Path(job.stored_path)) as fh:
        first = next((r for r in csv.reader(fh, delimiter=job.delimiter) if any(c.strip() for c in r)), [])
    job.total += -1 if has_header else 1
    job.has_header = has_header
    job.columns = [c.strip() for c in first] if has_header else [f"Column {i + 1}" for i in range(len(first))]


# -- what each row does --------------------------------------------------------------

NEW, UPDATE, UNCHANGED, SUPPRESSED, ERASED, DUPLICATE, INVALID = (
    "new", "update", "unchanged", "suppressed", "erased", "duplicate", "invalid")
OUTCOMES = (NEW, UPDATE, UNCHANGED, SUPPRESSED, ERASED, DUPLICATE, INVALID)


@dataclass
class Row:
    line: int
    raw_email: str
    outcome: str = INVALID
    email: str | None = None
    fields: dict = field(default_factory=dict)
    error: str | None = None
    grant: bool = False  # a consent grant will be recorded
    keeps_opt_out: bool = False  # withdrew from the topic before: no grant


def _cell(cells: list[str], index: int | None) -> str:
    if index is None or index >= len(cells):
        return ""
    return cells[index].strip()


def _parse(job: ImportJob, line: int, cells: list[str]) -> Row:
    mapping = job.mapping
    row = Row(line=line, raw_email=_cell(cells, mapping.get("email")))
    try:
        row.email = normalize(row.raw_email)
    except InvalidEmail as exc:
        row.error = f"invalid email address: {exc}" if row.raw_email else "no email address"
        return row
    given = {name: _cell(cells, mapping.get(name)) for name in PROFILE if name in mapping}
    # An empty cell keeps what we know; imports only add or correct.
    fields = {k: v for k, v in given.items() if v}
    relationship = _cell(cells, mapping.get("relationship")).lower() or job.default_relationship
    if relationship:
        fields["relationship"] = relationship
    try:
        row.fields = contacts.clean_profile(fields)
    except contacts.ValidationError as exc:
        row.error = str(exc)
        return row
    return row


def classify(job: ImportJob, batch: list[tuple[int, list[str]]], seen: set[str]) -> list[Row]:
    """Decide what each row of a chunk does, with three queries for the whole chunk."""
    rows = [_parse(job, line, cells) for line, cells in batch]
    valid = [r for r in rows if r.error is None]
    emails = list({r.email for r in valid})
    existing = {c.email: c for c in db.session.scalars(select(Contact).where(Contact.email.in_(emails)))} \
        if emails else {}
    hashes = {r.email: contacts.hash_of(r.email) for r in valid}
    suppressed: dict[str, set[str]] = {}
    if hashes:
        for email_hash, reason in db.session.execute(
                select(Suppression.email_hash, Suppression.reason)
                .where(Suppression.email_hash.in_(list(set(hashes.values()))))):
            suppressed.setdefault(email_hash, set()).add(reason)
    withdrawn: set[int] = set()
    if job.topic_id and existing:
        withdrawn = set(db.session.scalars(select(Subscription.contact_id).where(
            Subscription.topic_id == job.topic_id, Subscription.state == "unsubscribed",
            Subscription.contact_id.in_([c.id for c in existing.values()]))))
    for row in valid:
        if row.email in seen:
            row.outcome, row.error = DUPLICATE, "the address appears earlier in the file"
            continue
        seen.add(row.email)
        reasons = suppressed.get(hashes[row.email])
        if reasons:
            row.outcome = ERASED if "erased" in reasons else SUPPRESSED
            row.error = "erased at the person's request" if row.outcome == ERASED else \
                f"on the suppression list ({', '.join(sorted(reasons))})"
            continue
        contact = existing.get(row.email)
        if contact is None:
            row.outcome = NEW
        elif any(getattr(contact, k) != v for k, v in row.fields.items()):
            row.outcome = UPDATE
        else:
            row.outcome = UNCHANGED
        if job.topic_id:
            if contact is not None and (contact.id in withdrawn or contact.marketing_opt_out_event_id
                                        or contact.status != "active"):
                row.keeps_opt_out = True
            else:
                row.grant = True
    return rows


def _chunks(job: ImportJob, skip: int = 0, size: int = CHUNK) -> Iterator[list[tuple[int, list[str]]]]:
    batch = []
    for record in records(job, skip):
        batch.append(record)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _empty_counts() -> dict:
    return {**{o: 0 for o in OUTCOMES}, "grants": 0, "kept_opt_out": 0}


def preview(job: ImportJob) -> dict:
    """Read the whole file without changing anything: counts, invalid lines and the first rows."""
    counts = _empty_counts()
    invalid, sample = [], []
    seen: set[str] = set()
    for batch in _chunks(job):
        for row in classify(job, batch, seen):
            counts[row.outcome] += 1
            counts["grants"] += row.grant
            counts["kept_opt_out"] += row.keeps_opt_out
            if row.outcome == INVALID and len(invalid) < INVALID_LISTED:
                invalid.append({"line": row.line, "value": row.raw_email[:320], "error": row.error})
            if len(sample) < SAMPLE_ROWS:
                sample.append({"line": row.line, "email": row.email or row.raw_email[:320],
                               "outcome": row.outcome, "error": row.error, "grant": row.grant,
                               "fields": row.fields})
    result = {"counts": counts, "invalid": invalid, "sample": sample, "rows": sum(
        counts[o] for o in OUTCOMES)}
    job.preview = result
    job.total = result["rows"]
    job.status = "previewed"
    return result


# -- applying ------------------------------------------------------------------------

def source_of(job: ImportJob) -> str:
    return f"import:{job.id}"


def consent_source_of(job: ImportJob) -> str:
    return f"import:{job.id}:{job.source_text}"


def _require_file(job: ImportJob) -> None:
    if not job.stored_path or not Path(job.stored_path).exists():
        raise ImportProblem("the uploaded file is gone; upload it again", "file")


def start(job: ImportJob) -> ImportJob:
    """Move a previewed import to the queue (the caller commits, then runs or enqueues it)."""
    if job.status != "previewed":
        raise ImportProblem("preview the import before running it", "status", code="conflict")
    _require_file(job)
    job.status = "queued"
    job.processed = 0
    return job


def retry(job: ImportJob) -> ImportJob:
    """Queue a failed import again; it resumes after the last committed chunk."""
    if job.status != "failed":
        raise ImportProblem("only a failed import can be retried", "status", code="conflict")
    _require_file(job)
    job.status = "queued"
    job.error = None
    return job


def discard(job: ImportJob) -> ImportJob:
    """Drop an import that has not started; its file is deleted."""
    if job.status not in ("uploaded", "previewed", "failed"):
        raise ImportProblem(f"a {job.status} import cannot be discarded", "status", code="conflict")
    job.status = "discarded"
    delete_file(job)
    return job


def _apply_rows(job: ImportJob, rows: list[Row], topic: Topic | None, counts: dict) -> None:
    """Apply a classified chunk: as if each row were upserted and granted one by one, in one ledger append."""
    todo = []
    for row in rows:
        counts[row.outcome] += 1
        if row.outcome in (NEW, UPDATE, UNCHANGED):
            todo.append(row)
    if not todo:
        return

    def grant(index: int, contact: Contact) -> list[dict]:
        row = todo[index]
        if not row.grant:
            return []
        return [contacts.consent_spec(
            contact, action=ledger.GRANT, topic=topic, source=consent_source_of(job), legal_basis="consent",
            confirmed=job.confirmed_opt_in, detail={"import_job": job.id, "line": row.line},
        )]

    done = contacts.upsert_many([(row.email, row.fields) for row in todo], source=source_of(job), then=grant)
    granted = [contact.email_hash for (contact, _), row in zip(done, todo) if row.grant]
    if granted and job.confirmed_opt_in:
        contacts.lift_suppressions_after_grant(granted, topic)
    counts["grants"] += len(granted)
    counts["kept_opt_out"] += sum(row.keeps_opt_out for row in todo)


def _plan_each_statement() -> None:
    """Have PostgreSQL plan this chunk's statements with their own parameters.

    psycopg prepares a statement it runs five times, and PostgreSQL may then
    keep one generic plan for it. A first import into an empty database would
    keep the plan chosen while `contacts` was tiny (a sequential scan) as the
    table grows, until the next ANALYZE: quadratic. Lasts one transaction.
    """
    if db.engine.dialect.name == "postgresql":
        db.session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))


def run(job_id: int, chunk: int = CHUNK) -> ImportJob | None:
    """Import a queued job chunk by chunk; each chunk commits with the progress counter.

    Safe to call twice for the same job: a chunk whose progress another run
    already committed is rolled back and this run stops.
    """
    job = db.session.get(ImportJob, job_id)
    if job is None or job.status not in ("queued", "running"):
        return job
    job.status = "running"
    job.started_at = job.started_at or utcnow()
    db.session.commit()
    topic = db.session.get(Topic, job.topic_id) if job.topic_id else None
    seen: set[str] = set()
    if job.processed:
        # Resuming: remember the addresses already handled, so duplicates stay duplicates.
        for line, cells in _take(records(job), job.processed):
            row = _parse(job, line, cells)
            if row.email:
                seen.add(row.email)
    try:
        for batch in _chunks(job, skip=job.processed, size=chunk):
            _plan_each_statement()
            counts = _empty_counts()
            _apply_rows(job, classify(job, batch, seen), topic, counts)
            done = db.session.execute(
                update(ImportJob)
                .where(ImportJob.id == job.id, ImportJob.processed == job.processed, ImportJob.status == "running")
                .values(processed=ImportJob.processed + len(batch),
                        created_count=ImportJob.created_count + counts[NEW],
                        updated_count=ImportJob.updated_count + counts[UPDATE],
                        unchanged_count=ImportJob.unchanged_count + counts[UNCHANGED],
                        skipped_count=ImportJob.skipped_count + counts[SUPPRESSED] + counts[ERASED]
                        + counts[DUPLICATE],
                        invalid_count=ImportJob.invalid_count + counts[INVALID],
                        granted_count=ImportJob.granted_count + counts["grants"])
                .execution_options(synchronize_session=False)
            )
            if not done.rowcount:
                db.session.rollback()
                return db.session.get(ImportJob, job_id)
            db.session.commit()
            db.session.refresh(job)
    except Exception as exc:  # noqa: BLE001 - any failure stops the job; committed chunks stay
        log.exception("import %s failed", job_id)
        db.session.rollback()
        job = db.session.get(ImportJob, job_id)
        job.status = "failed"
        job.error = f"{type(exc).__name__}: {exc}"[:2000]
        db.session.commit()
        return job
    job.status = "done"
    job.finished_at = utcnow()
    delete_file(job)
    db.session.commit()
    return job


def _take(iterator, n: int):
    for i, item in enumerate(iterator):
        if i >= n:
            return
        yield item


def jobs(limit: int = 50) -> list[ImportJob]:
    return list(db.session.scalars(select(ImportJob).order_by(ImportJob.id.desc()).limit(limit)))


def sample(job: ImportJob) -> list[Row]:
    """What the first rows of the file would do (read live from the stored file)."""
    if not job.stored_path or not Path(job.stored_path).exists() or "email" not in (job.mapping or {}):
        return []
    first = list(_take(records(job), SAMPLE_ROWS))
    return classify(job, first, set())


def inline_limit() -> int:
    return int(current_app.config.get("PC_IMPORT_INLINE_MAX_ROWS", 1000))
