"""Tables of the staff side: CSV import jobs and their progress."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .extensions import db
from .models import UTCDateTime, utcnow

IMPORT_STATUSES = ("uploaded", "previewed", "queued", "running", "done", "failed", "discarded")


class ImportJob(db.Model):
    """One uploaded CSV file: how to read it, on what basis, and how far its import got."""

    __tablename__ = "import_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_by: Mapped[str] = mapped_column(String(200))
    filename: Mapped[str] = mapped_column(String(255))
    # Under PC_INSTANCE_PATH/uploads; cleared once the file is deleted.
    stored_path: Mapped[str | None] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(16), default="uploaded", index=True)
    delimiter: Mapped[str] = mapped_column(String(1), default=",")
    has_header: Mapped[bool] = mapped_column(Boolean, default=True)
    columns: Mapped[list] = mapped_column(JSON, default=list)
    # Contact field -> zero-based column index.
    mapping: Mapped[dict] = mapped_column(JSON, default=dict)
    legal_basis: Mapped[str | None] = mapped_column(String(32))
    source_text: Mapped[str | None] = mapped_column(String(150))
    default_relationship: Mapped[str | None] = mapped_column(String(16))
    topic_id: Mapped[int | None] = mapped_column(ForeignKey("topics.id"))
    consent_collected: Mapped[bool] = mapped_column(Boolean, default=False)
    confirmed_opt_in: Mapped[bool] = mapped_column(Boolean, default=False)
    preview: Mapped[dict] = mapped_column(JSON, default=dict)
    total: Mapped[int] = mapped_column(Integer, default=0)
    # Rows handled so far; committed with each chunk, so a restarted task resumes here.
    processed: Mapped[int] = mapped_column(Integer, default=0)
    created_count: Mapped[int] = mapped_column(Integer, default=0)
    updated_count: Mapped[int] = mapped_column(Integer, default=0)
    unchanged_count: Mapped[int] = mapped_column(Integer, default=0)
    skipped_count: Mapped[int] = mapped_column(Integer, default=0)
    invalid_count: Mapped[int] = mapped_column(Integer, default=0)
    granted_count: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    @property
    def percent(self) -> int:
        if not self.total:
            return 100 if self.status == "done" else 0
        return min(100, int(self.processed * 100 / self.total))
