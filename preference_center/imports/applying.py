"""What each row does (classify, preview) and applying a queued import chunk by chunk, with recovery."""
from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from flask import current_app
from sqlalchemy import and_, or_, select, text, update
from sqlalchemy.exc import DBAPIError

from .. import actors, attributes, audit, characters, contacts, first_contact, ledger, optouts
from ..emails import InvalidEmail, normalize
from ..errors import N_
from ..extensions import db
from ..models import ConsentEvent, Contact, ImportJob, Suppression, Topic, utcnow
from ..sqlutil import one_of
from .files import ImportProblem, delete_file, records
from .seen import Seen
from .settings import ATTRIBUTE

log = logging.getLogger(__name__)

PROFILE = ("name", "company", "title", "phone", "locale")
CHUNK = 2000  # rows per committed chunk: one ledger append, one COPY per table on PostgreSQL
SAMPLE_ROWS = 20
INVALID_LISTED = 200

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
    contact: Contact | None = None  # the live contact of the address, if there is one
    email_hash: str | None = None


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
    # Columns imported as attributes: like the profile, an empty cell keeps what we know (merged in `classify`).
    given_attributes = {name[len(ATTRIBUTE):]: attributes.parse_value(cell) for name, index in mapping.items()
                        if name.startswith(ATTRIBUTE) and (cell := _cell(cells, index))}
    if given_attributes:
        fields["attributes"] = given_attributes
    try:
        row.fields = contacts.clean_profile(fields)
    except contacts.ValidationError as exc:
        row.error = str(exc)
        return row
    return row


def classify(job: ImportJob, batch: list[tuple[int, list[str]]], seen: Seen | None = None) -> list[Row]:
    """Decide what each row of a chunk does, with three queries for the whole chunk.

    A valid row whose address an earlier valid row had (in `seen`, the pass's
    earlier chunks, or in this chunk) is a duplicate. One-click opt-outs still
    waiting for the chunk's contacts are settled first, so a grant never
    follows an opt-out the person already made.
    """
    rows = [_parse(job, line, cells) for line, cells in batch]
    valid = [r for r in rows if r.error is None]
    earlier = seen.add(r.email for r in valid) if seen is not None else set()
    in_chunk: set[str] = set()
    emails = list({r.email for r in valid})
    existing = {c.email: c for c in db.session.scalars(select(Contact).where(one_of(Contact.email, emails)))} \
        if emails else {}
    optouts.settle([contact.id for contact in existing.values()])
    hashes = {r.email: contacts.hash_of(r.email) for r in valid}
    suppressed: dict[str, set[str]] = {}
    if hashes:
        for email_hash, reason in db.session.execute(
                select(Suppression.email_hash, Suppression.reason)
                .where(one_of(Suppression.email_hash, set(hashes.values())))):
            suppressed.setdefault(email_hash, set()).add(reason)
    stopped: set[str] = set()
    if job.topic_id and hashes:
        # Anyone whose address ever withdrew from this topic or from all marketing, objected or was erased
        # (on any row: an erased row keeps its hash) gets no grant from an import: only their own
        # confirmation brings them back (SPEC section 7, invariant 1).
        # Two steps, each on its own index: the rows of these addresses, then only their events (a join
        # planned on the statistics of a table the import is still filling may scan every event).
        hash_of_row = dict(db.session.execute(
            select(Contact.id, Contact.email_hash).where(one_of(Contact.email_hash, set(hashes.values())))).all())
        if hash_of_row:
            events = ConsentEvent.__table__.c
            stopped = {hash_of_row[contact_id] for contact_id in db.session.scalars(
                select(events.contact_id).where(
                    one_of(events.contact_id, list(hash_of_row)),
                    (events.action.in_((ledger.WITHDRAW, ledger.OBJECT))
                     & ((events.scope == ledger.ALL_MARKETING) | (events.topic_id == job.topic_id)))
                    | (events.action == ledger.ERASE)).distinct())}
    for row in valid:
        if row.email in earlier or row.email in in_chunk:
            row.outcome, row.error = DUPLICATE, "the address appears earlier in the file"
            continue
        in_chunk.add(row.email)
        row.email_hash = hashes[row.email]
        reasons = suppressed.get(row.email_hash)
        if reasons:
            row.outcome = ERASED if "erased" in reasons else SUPPRESSED
            row.error = "erased at the person's request" if row.outcome == ERASED else \
                f"on the suppression list ({', '.join(sorted(reasons))})"
            continue
        contact = row.contact = existing.get(row.email)
        if contact is not None and "attributes" in row.fields:
            try:  # the file's attributes are added to (or change) the stored ones, never remove them
                row.fields["attributes"] = attributes.clean({**attributes.of(contact), **row.fields["attributes"]})
            except contacts.ValidationError as exc:
                row.outcome, row.error = INVALID, str(exc)
                continue
        if contact is None:
            row.outcome = NEW
        elif any((getattr(contact, k) or ({} if k == "attributes" else None)) != v for k, v in row.fields.items()):
            row.outcome = UPDATE
        else:
            row.outcome = UNCHANGED
        if job.topic_id:
            if hashes[row.email] in stopped or (contact is not None and (
                    contact.marketing_opt_out_event_id or contact.status != "active")):
                row.keeps_opt_out = True
            else:
                row.grant = True
    return rows


def _chunks(job: ImportJob, skip: int = 0, size: int = CHUNK,
            stop: int | None = None) -> Iterator[list[tuple[int, list[str]]]]:
    """The file's records after the first `skip` (and before the `stop`-th), `size` at a time."""
    batch = []
    read = records(job, skip)
    for record in read if stop is None else _take(read, stop - skip):
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
    with Seen() as seen:
        for batch in _chunks(job):
            for row in classify(job, batch, seen):
                counts[row.outcome] += 1
                counts["grants"] += row.grant
                counts["kept_opt_out"] += row.keeps_opt_out
                # What the preview keeps and shows of a bad cell (and a validator's message quoting it) is printable.
                shown, error = characters.printable(row.raw_email)[:320], characters.printable(row.error)
                if row.outcome == INVALID and len(invalid) < INVALID_LISTED:
                    invalid.append({"line": row.line, "value": shown, "error": error})
                if len(sample) < SAMPLE_ROWS:
                    sample.append({"line": row.line, "email": row.email or shown,
                                   "outcome": row.outcome, "error": error, "grant": row.grant,
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
        raise ImportProblem(N_("the uploaded file is gone; upload it again"), "file")


def start(job: ImportJob) -> ImportJob:
    """Move a previewed import to the queue (the caller commits, then runs or enqueues it)."""
    if job.status != "previewed":
        raise ImportProblem(N_("preview the import before running it"), "status", code="conflict")
    _require_file(job)
    job.status = "queued"
    job.processed = 0
    job.queued_at = utcnow()  # the scheduler re-queues it if no worker takes it
    return job


def retry(job: ImportJob) -> ImportJob:
    """Queue a failed import again; it resumes after the last committed chunk."""
    if job.status != "failed":
        raise ImportProblem(N_("only a failed import can be retried"), "status", code="conflict")
    _require_file(job)
    job.status = "queued"
    job.error = None
    job.queued_at = utcnow()
    return job


def discard(job: ImportJob) -> ImportJob:
    """Drop an import that has not started; its file is deleted."""
    if job.status not in ("uploaded", "previewed", "failed"):
        raise ImportProblem(N_("a %(status)s import cannot be discarded", status=job.status), "status", code="conflict")
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

    # Where a list from another company came from, and its evidence of consent to share, go with each grant.
    third_party = {"third_party": job.third_party, "share_evidence": job.share_evidence} if job.third_party else {}

    def grant(index: int, contact: Contact) -> list[dict]:
        row = todo[index]
        if not row.grant:
            return []
        return [contacts.consent_spec(
            contact, action=ledger.GRANT, topic=topic, source=consent_source_of(job), legal_basis="consent",
            confirmed=job.confirmed_opt_in, detail={"import_job": job.id, "line": row.line, **third_party},
        )]

    # Rows were normalised, cleaned and looked up by `classify` under the head's lock; upsert_many repeats none of it.
    results = contacts.upsert_many([(row.email, row.fields) for row in todo], source=source_of(job), then=grant,
                                   cleaned=True, known={row.email: row.contact for row in todo if row.contact},
                                   hashes={row.email: row.email_hash for row in todo})
    first_contact.due(job, [contact for contact, created in results if created])  # Art. 14: tell them
    # An import never lifts a suppression: suppressed addresses were skipped, and only the person's
    # own confirmation lifts their opt-out or an erasure.
    counts["grants"] += sum(1 for row in todo if row.grant)
    counts["kept_opt_out"] += sum(row.keeps_opt_out for row in todo)


def _plan_each_statement() -> None:
    """Have PostgreSQL plan this chunk's statements with their own parameters.

    psycopg prepares a statement it runs five times, and PostgreSQL may then
    keep one generic plan for it. A first import into an empty database would
    keep the plan chosen while `contacts` was tiny (a sequential scan) as the
    table grows, until the next ANALYZE: quadratic. For the same reason the
    statistics themselves may still say `contacts` is tiny, and a lookup of
    2,000 hashes then scans the whole table (91 ms per chunk at 1M rows): every
    lookup of a chunk has its index, so sequential scans are off too. Lasts
    one transaction.
    """
    if db.engine.dialect.name == "postgresql":
        db.session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
        db.session.execute(text("SET LOCAL enable_seqscan = off"))


def run(job_id: int, chunk: int | None = None) -> ImportJob | None:
    """Import a queued job chunk by chunk (CHUNK rows unless `chunk`); each chunk commits with the progress counter.

    Safe to call twice for the same job: a chunk whose progress another run
    already committed is rolled back and this run stops.
    """
    job = db.session.get(ImportJob, job_id)
    if job is None or job.status not in ("queued", "running"):
        return job
    job.status = "running"
    job.started_at = job.started_at or utcnow()
    db.session.commit()
    try:
        with Seen() as seen:
            return _run_chunks(job, seen, chunk or CHUNK)
    except Exception as exc:  # noqa: BLE001 - any failure stops the job; committed chunks stay
        log.exception("import %s failed", job_id)
        return _record_failure(job_id, f"{type(exc).__name__}: {exc}"[:2000])


def _run_chunks(job: ImportJob, seen: Seen, size: int) -> ImportJob | None:
    """Apply the rows after the committed progress, one committed chunk at a time, then mark the job done."""
    job_id = job.id
    topic = db.session.get(Topic, job.topic_id) if job.topic_id else None
    if job.processed:
        # Resuming: remember the addresses the committed rows had, so duplicates stay duplicates (the same
        # rows as `classify`: an address counts once its row is valid).
        for batch in _chunks(job, size=size, stop=job.processed):
            seen.add(row.email for row in (_parse(job, line, cells) for line, cells in batch) if row.error is None)
    for batch in _chunks(job, skip=job.processed, size=size):
        _plan_each_statement()
        # The head's lock before reading, as every ledger writer takes it: no contact, opt-out or
        # suppression the chunk's rows were classified by can change before they are applied.
        ledger.lock_head()
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
        audit.record(actors.import_job(job.id), "import.apply", target_type="import", target_id=job.id,
                     detail={"rows": len(batch), **{k: v for k, v in counts.items() if v}})
        db.session.commit()
        db.session.refresh(job)
    job.status = "done"
    job.finished_at = utcnow()
    delete_file(job)
    db.session.commit()
    return job


def _record_failure(job_id: int, error: str, tries: int = 6) -> ImportJob:
    """Mark the job failed (staff retry it; it resumes after the last committed chunk).

    The failure is often the database connection dying, and the next one may
    die too: a few tries on fresh connections, so the job never stays
    `running` with nobody running it.
    """
    for attempt in range(tries):
        try:
            db.session.rollback()
            job = db.session.get(ImportJob, job_id, populate_existing=True)
            job.status, job.error = "failed", error
            db.session.commit()
            return job
        except DBAPIError:
            if attempt == tries - 1:
                raise
            time.sleep(0.25 * (attempt + 1))
    raise AssertionError("unreachable")


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
    return classify(job, first)


def inline_limit() -> int:
    return current_app.config["PC_IMPORT_INLINE_MAX_ROWS"]


# -- recovery ------------------------------------------------------------------------

def requeue_lost() -> list[int]:
    """Queued imports no worker took within PC_REQUEUE_AFTER_SECONDS (broker message lost or never sent).

    Each one is stamped as queued again, so it is handed over at most once per
    period; the caller enqueues the returned ids.
    """
    stale = utcnow() - dt.timedelta(seconds=current_app.config["PC_REQUEUE_AFTER_SECONDS"])
    waiting = or_(ImportJob.queued_at < stale, and_(ImportJob.queued_at.is_(None), ImportJob.created_at < stale))
    lost = []
    for job_id in db.session.scalars(select(ImportJob.id).where(ImportJob.status == "queued", waiting)).all():
        stamped = db.session.execute(
            update(ImportJob).where(ImportJob.id == job_id, ImportJob.status == "queued", waiting)
            .values(queued_at=utcnow()).execution_options(synchronize_session=False))
        if stamped.rowcount:
            lost.append(job_id)
    db.session.commit()
    return lost
