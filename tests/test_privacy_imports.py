"""Imports record the third party a list came from and its evidence of consent to share; a third party's list is
refused for consent topics without that evidence (issue 14, Art. 14)."""
from __future__ import annotations

import io

import pytest
from sqlalchemy import select

from preference_center import access_copy, imports
from preference_center.actors import staff
from preference_center.commands import DomainError
from preference_center.commands import imports as import_commands
from preference_center.extensions import db
from preference_center.models import ConsentEvent, Contact, ImportJob

from .helpers import text_of

BOSS = staff("boss@example.com")
EVIDENCE = "Fair Ltd's sign-up form v3: 'share my address with Example Ltd for its newsletter' (ticked)"


@pytest.fixture
def job(ctx, topics) -> ImportJob:
    uploaded = import_commands.upload(BOSS, io.BytesIO(b"email,name\nlee@example.com,Lee\n"), "fair.csv")
    db.session.commit()
    return uploaded


def _settings(**changes) -> imports.Settings:
    values = dict(mapping={"email": 0, "name": 1}, legal_basis="consent", source_text="Fair 2026 list",
                  topic_key="news", consent_collected=True, third_party="Fair Ltd")
    return imports.Settings(**{**values, **changes})


def test_a_third_partys_list_for_a_consent_topic_needs_its_evidence_of_consent_to_share(job):
    with pytest.raises(DomainError, match="evidence") as refused:
        import_commands.preview(BOSS, job, _settings())
    assert refused.value.field == "share_evidence"
    db.session.rollback()
    assert db.session.get(ImportJob, job.id).status == "uploaded"


def test_the_third_party_and_its_evidence_go_with_every_grant_and_into_the_access_copy(job):
    import_commands.preview(BOSS, job, _settings(share_evidence=EVIDENCE))
    import_commands.start(BOSS, job)
    db.session.commit()
    assert imports.run(job.id).status == "done"
    stored = db.session.get(ImportJob, job.id)
    assert (stored.third_party, stored.share_evidence) == ("Fair Ltd", EVIDENCE)
    grant = db.session.scalars(select(ConsentEvent).where(ConsentEvent.action == "grant")).one()
    assert grant.detail["third_party"] == "Fair Ltd" and grant.detail["share_evidence"] == EVIDENCE
    lee = db.session.scalar(select(Contact).where(Contact.email == "lee@example.com"))
    assert access_copy.information(lee)["source"].startswith("Fair Ltd gave us your address, with your consent")


def test_a_third_partys_list_on_legitimate_interest_needs_no_evidence_but_is_recorded(job):
    import_commands.preview(BOSS, job, _settings(legal_basis="legitimate_interest", topic_key=None,
                                                 consent_collected=False))
    assert db.session.get(ImportJob, job.id).third_party == "Fair Ltd"


@pytest.mark.parametrize("changes, field", [
    ({"third_party": None, "share_evidence": EVIDENCE}, "third_party"),
    ({"third_party": "Fair Ltd (lists@fair.example)", "share_evidence": EVIDENCE}, "third_party"),
    ({"share_evidence": "x" * 501}, "share_evidence"),
])
def test_bad_third_party_details_are_refused(job, changes, field):
    with pytest.raises(DomainError) as refused:
        import_commands.preview(BOSS, job, _settings(**changes))
    assert refused.value.field == field


def test_the_staff_page_asks_for_and_shows_the_third_party(as_admin, job):
    page = as_admin.get(f"/admin/imports/{job.id}").get_data(as_text=True)
    assert 'name="third_party"' in page and 'name="share_evidence"' in page
    refused = as_admin.post(f"/admin/imports/{job.id}/preview", {
        "map_email": "0", "map_name": "1", "legal_basis": "consent", "source_text": "Fair 2026 list",
        "topic": "news", "consent_collected": "y", "third_party": "Fair Ltd", "has_header": "y"})
    assert refused.status_code == 422 and "evidence that they consented" in text_of(refused.get_data(as_text=True))
    done = as_admin.post(f"/admin/imports/{job.id}/preview", {
        "map_email": "0", "map_name": "1", "legal_basis": "consent", "source_text": "Fair 2026 list",
        "topic": "news", "consent_collected": "y", "third_party": "Fair Ltd", "share_evidence": EVIDENCE,
        "has_header": "y"})
    assert done.status_code in (200, 302, 303)
    assert "Fair Ltd — consent to share" in text_of(as_admin.get(f"/admin/imports/{job.id}").get_data(as_text=True))
