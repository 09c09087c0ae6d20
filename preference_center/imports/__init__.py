"""CSV import of contacts: store, sniff, map columns, preview, apply in chunks with progress.

An import never turns "imported" into "consented": the staff member states a
legal basis and a source for the whole file; a consent grant is recorded only
when they say the consent was collected, and it counts as a confirmed opt-in
only when they also affirm that. Addresses on the suppression list (erased,
bounced, complained, opted out) are skipped, so a re-import cannot bring
anyone back. Every change is a ledger event with source ``import:<job id>``.

Modules: `files` (the upload: store, sniff, records, delete), `settings` (the
mapping and the stated basis), `seen` (the addresses a pass has read, on disk,
for the duplicate check) and `applying` (what each row does, preview, run,
recovery). Everything is re-exported here: use `imports.X`.
"""
from .applying import (
    CHUNK,
    DUPLICATE,
    ERASED,
    INVALID,
    INVALID_LISTED,
    NEW,
    OUTCOMES,
    PROFILE,
    SAMPLE_ROWS,
    SUPPRESSED,
    UNCHANGED,
    UPDATE,
    Row,
    _chunks,  # noqa: F401  (tests classify chunk by chunk)
    classify,
    consent_source_of,
    discard,
    inline_limit,
    jobs,
    preview,
    requeue_lost,
    retry,
    run,
    sample,
    source_of,
    start,
)
from .files import (
    DELIMITERS,
    SNIFF_BYTES,
    SYNONYMS,
    ImportProblem,
    delete_file,
    describe,
    guess_mapping,
    records,
    store,
    uploads_folder,
)
from .seen import Seen
from .settings import BASES, BASIS_NAMES, FIELDS, SOURCE_MAX, Settings, configure

__all__ = [
    "BASES", "BASIS_NAMES", "CHUNK", "DELIMITERS", "DUPLICATE", "ERASED", "FIELDS", "INVALID", "INVALID_LISTED",
    "NEW", "OUTCOMES", "PROFILE", "SAMPLE_ROWS", "SNIFF_BYTES", "SOURCE_MAX", "SUPPRESSED", "SYNONYMS", "UNCHANGED",
    "UPDATE", "ImportProblem", "Row", "Seen", "Settings", "classify", "configure", "consent_source_of", "delete_file",
    "describe", "discard", "guess_mapping", "inline_limit", "jobs", "preview", "records", "requeue_lost", "retry",
    "run", "sample", "source_of", "start", "store", "uploads_folder",
]
