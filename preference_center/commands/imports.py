"""CSV import commands: upload, preview (with the stated basis), start, retry, discard.

The rows themselves are applied by `imports.run` as the actor `import:<job id>`,
one audit entry per committed chunk; an import never asserts a return to
marketing (see `imports.applying.classify`).
"""
from __future__ import annotations

from .. import audit, imports
from ..actors import Actor
from ..extensions import db
from ..models import ImportJob, Topic


def upload(actor: Actor, stream, filename: str) -> ImportJob:
    """Store an uploaded CSV file and describe it."""
    job = imports.store(stream, filename or "upload.csv", created_by=actor.label)
    audit.record(actor, "import.upload", target_type="import", target_id=job.id,
                 detail={"filename": job.filename, "rows": job.total})
    return job


def preview(actor: Actor, job: ImportJob, settings: imports.Settings) -> dict:
    """Check the mapping and the stated basis, and count what the import would do (nothing is imported)."""
    imports.configure(job, settings)
    result = imports.preview(job)
    audit.record(actor, "import.preview", target_type="import", target_id=job.id,
                 detail={"counts": result["counts"], "legal_basis": job.legal_basis, "source": job.source_text})
    return result


def start(actor: Actor, job: ImportJob) -> ImportJob:
    """Queue a previewed import (the door commits, then runs it inline or hands it to the worker)."""
    imports.start(job)
    topic = db.session.get(Topic, job.topic_id) if job.topic_id else None
    audit.record(actor, "import.start", target_type="import", target_id=job.id, detail={
        "rows": job.total, "legal_basis": job.legal_basis, "source": job.source_text,
        "topic": topic.key if topic else None, "consent_collected": job.consent_collected,
        "confirmed_opt_in": job.confirmed_opt_in})
    return job


def retry(actor: Actor, job: ImportJob) -> ImportJob:
    imports.retry(job)
    audit.record(actor, "import.retry", target_type="import", target_id=job.id)
    return job


def discard(actor: Actor, job: ImportJob) -> ImportJob:
    imports.discard(job)
    audit.record(actor, "import.discard", target_type="import", target_id=job.id)
    return job
