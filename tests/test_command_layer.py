"""The doors only parse, call a command and answer: no door writes the ledger, the audit log or a suppression."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "preference_center"
DOORS = sorted([
    *PACKAGE.glob("admin/views/*.py"),
    PACKAGE / "admin" / "auth.py",
    *PACKAGE.glob("api/*.py"),
    *PACKAGE.glob("public/*.py"),
    PACKAGE / "cli.py",
    PACKAGE / "tasks.py",
    PACKAGE / "webhooks.py",
    *(PACKAGE.parent / "worker").glob("*.py"),
])
# What only the command layer (preference_center/commands/) and the modules under it may call.
WRITES = re.compile(r"""
    \bledger\.(append|append_many|apply|apply_many|redact)\b
  | \baudit\.(record|record_many)\b
  | \bcontacts\.(suppress|lift_suppression|record_consent|erase|upsert|upsert_many|lift_suppressions_after_grant)\b
  | \brights\.(open_request|complete|done)\b
  | \boptouts\.take\b
  | \btopics\.(create|update|retire|restore)\b
  | \bcampaigns\.(create|edit|schedule|cancel)\b
  | \bstaff\.create_user\b
  | \btokens\.(create|revoke)\b
  | \bmessages\.create\b
  | \bimports\.(store|configure|start|retry|discard)\b
  | (?<!class\ )\b(AuditLog|Suppression|ConsentEvent)\(
""", re.VERBOSE)


def test_the_doors_are_the_files_we_think_they_are():
    assert len(DOORS) >= 15 and all(path.exists() for path in DOORS)


@pytest.mark.parametrize("path", DOORS, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_no_door_writes_the_ledger_the_audit_log_or_a_suppression_itself(path: Path):
    found = [f"{path.name}:{number}: {line.strip()}"
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if WRITES.search(line) and not line.lstrip().startswith("#")]
    assert found == [], "call a command in preference_center/commands/ instead:\n" + "\n".join(found)


@pytest.mark.parametrize("line", [
    "    ledger.append(ledger.GRANT, contact=c, source='x')",
    "    audit.record(g.actor, 'topic.create')",
    "    contacts.suppress(h, 'all', 'x', source='y')",
    "    contacts.record_consent(c, action='grant', topic=None, source='x')",
    "    rights.complete(request)",
    "    db.session.add(Suppression(email_hash=h))",
])
def test_the_check_catches_a_door_that_writes(line: str):
    assert WRITES.search(line)


def test_the_check_lets_a_door_declare_a_response_model_of_the_same_name():
    assert not WRITES.search("class ConsentEvent(BaseModel):")
