"""The uploaded file: store it, sniff its delimiter and header, read its rows, delete it."""
from __future__ import annotations

import codecs
import csv
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

from flask import current_app

from .. import characters, contacts, folding
from ..emails import InvalidEmail, normalize
from ..errors import N_
from ..extensions import db
from ..models import ImportJob

SNIFF_BYTES = 64 * 1024
DELIMITERS = ",;\t|"

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
            raise ImportProblem(N_("the file is not UTF-8 text; save it as 'CSV UTF-8' and upload it again"),
                               "file") from exc


def _open(path: Path):
    # utf-8-sig drops the byte-order mark spreadsheet programs put at the start.
    return path.open("r", encoding="utf-8-sig", newline="")


def describe(path: Path) -> tuple[str, list[str], bool, int]:
    """(delimiter, first-row cells, whether the first row is a header, number of data rows)."""
    if path.stat().st_size == 0:
        raise ImportProblem(N_("the file is empty"), "file")
    _check_utf8(path)
    with _open(path) as fh:
        sample = fh.read(SNIFF_BYTES)
    delimiter = _delimiter(sample)
    with _open(path) as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        first = next((r for r in reader if any(c.strip() for c in r)), None)
        if first is None:
            raise ImportProblem(N_("the file has no rows"), "file")
        rows = sum(1 for r in reader if any(c.strip() for c in r))
    # A first row holding an address is data; otherwise it names the columns.
    has_header = not any(_is_email(c) for c in first)
    columns = column_names(first, has_header)
    return delimiter, columns, has_header, rows if has_header else rows + 1


def column_names(first: list[str], has_header: bool) -> list[str]:
    """The columns' names: the header's cells (labels to map from, kept without control characters), or 'Column n'."""
    if has_header:
        return [characters.printable(c).strip() for c in first]
    return [f"Column {i + 1}" for i in range(len(first))]


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


def attribute_key(column: str, index: int) -> str:
    """The attribute key a column becomes when imported as an attribute: its header folded to the key
    pattern ("Plan Tier" -> plan_tier), or column_<n> when the header gives none."""
    key = re.sub(r"[^a-z0-9]+", "_", folding.fold(column or "")).strip("_")
    key = re.sub(r"^[^a-z]+", "", key)[:40].rstrip("_")
    return key or f"column_{index + 1}"


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
