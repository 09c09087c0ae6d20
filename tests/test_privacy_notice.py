"""Telling people (Art. 14): an address from another company's list is told where we got it, on what basis and
how to object, before the first marketing mail, once."""
from __future__ import annotations

import io

import pytest
from sqlalchemy import select

from preference_center import first_contact, imports
from preference_center.actors import staff
from preference_center.commands import imports as import_commands
from preference_center.extensions import db
from preference_center.models import Delivery, FirstContactNotice

from .fake_sendgrid import FakeSendGrid
from .helpers import drain, factories, outbox

BOSS = staff("boss@example.com")


def _import(rows: str, third_party: str | None = "Fair Ltd") -> None:
    job = import_commands.upload(BOSS, io.BytesIO(f"email,relationship\n{rows}".encode()), "list.csv")
    import_commands.preview(BOSS, job, imports.Settings(
        mapping={"email": 0, "relationship": 1}, legal_basis="legitimate_interest", source_text="Fair 2026",
        third_party=third_party))
    import_commands.start(BOSS, job)
    db.session.commit()
    assert imports.run(job.id).status == "done"


def _campaign(api, name="Tips") -> int:
    campaign = api.post("/campaigns", json={"name": name, "topic": "tips", "subject": "Tips", "text": "Hello"}).json["id"]
    assert api.post(f"/campaigns/{campaign}/schedule", json={"at": None}).status_code == 200
    drain(campaign)
    return campaign


def _mail_to(app, address: str) -> list:
    return [m for m in outbox(app) if m["To"] == address]


def test_people_from_another_companys_list_are_told_before_their_first_marketing_mail(app, api, topics, ctx):
    factories.contact("known@example.com", relationship="customer")
    db.session.commit()
    _import("new@example.com,customer\nknown@example.com,customer\n")
    notices = db.session.scalars(select(FirstContactNotice)).all()
    assert [(n.third_party, n.legal_basis, n.sent_at) for n in notices] == [("Fair Ltd", "legitimate_interest", None)]
    _campaign(api)
    notice, tips = _mail_to(app, "new@example.com")
    assert notice["Subject"] == first_contact.SUBJECT and tips["Subject"] == "Tips", "the notice comes first"
    body = notice.get_body(preferencelist=("plain",)).get_content()
    assert "we have your email address from Fair Ltd" in body and "legitimate interest" in body
    assert "https://prefs.example.test/p/" in body and "/data" in body and "List-Unsubscribe" not in notice
    assert [m["Subject"] for m in _mail_to(app, "known@example.com")] == ["Tips"], "known people gave it themselves"
    db.session.expire_all()
    assert db.session.scalars(select(FirstContactNotice)).one().sent_at is not None
    _campaign(api, "More tips")
    assert [m["Subject"] for m in _mail_to(app, "new@example.com")] == [first_contact.SUBJECT, "Tips", "Tips"]


def test_our_own_lists_need_no_notice(app, api, topics, ctx):
    _import("own@example.com,customer\n", third_party=None)
    assert db.session.scalar(select(FirstContactNotice.contact_id)) is None
    _campaign(api)
    assert [m["Subject"] for m in _mail_to(app, "own@example.com")] == ["Tips"]


def test_the_scheduler_tells_people_even_when_no_campaign_reaches_them(app, topics, ctx):
    _import("new@example.com,customer\n")
    told, failed = first_contact.send_due()
    assert len(told) == 1 and failed == set()
    assert [m["Subject"] for m in _mail_to(app, "new@example.com")] == [first_contact.SUBJECT]
    assert first_contact.send_due() == (set(), set())


def test_a_batch_tells_only_its_own_recipients_even_with_others_due_between_them(app, topics, ctx):
    """A campaign batch's notices are read by the range of its ids: people due in that range who are not in the
    batch (not eligible, or in no batch) are left to the scheduler."""
    _import("".join(f"n{i}@example.com,customer\n" for i in range(6)))
    ids = sorted(db.session.scalars(select(FirstContactNotice.contact_id)))
    batch = ids[::2]  # every other one: the ones between are due too
    told, failed = first_contact.send_due(batch)
    assert told == set(batch) and failed == set()
    unsent = set(db.session.scalars(select(FirstContactNotice.contact_id).where(FirstContactNotice.sent_at.is_(None))))
    assert unsent == set(ids) - set(batch)
    spread = [ids[1], ids[1] + 10_000]  # far apart: asked for by id, not by range
    assert first_contact.send_due(spread) == ({ids[1]}, set())


@pytest.fixture
def fake():
    with FakeSendGrid() as server:
        yield server


@pytest.fixture
def app_config(app_config, request):
    if "fake" not in request.fixturenames:
        return app_config
    server = request.getfixturevalue("fake")
    return {**app_config, "PC_MAIL_TRANSPORT": "sendgrid", "PC_SENDGRID_API_KEY": "SG.test",
            "PC_SENDGRID_API_HOST": server.url, "PC_SENDGRID_MAX_ATTEMPTS": 1}


def test_nobody_gets_marketing_whose_notice_could_not_be_sent(app, api, topics, ctx, fake):
    _import("new@example.com,customer\n")
    fake.script([(400, {})])  # the notice is refused; the marketing mail would be next
    campaign = _campaign(api)
    delivery = db.session.scalars(select(Delivery).where(Delivery.campaign_id == campaign)).one()
    assert (delivery.status, delivery.reason) == ("skipped", first_contact.SKIP_NOT_INFORMED)
    assert fake.accepted == []
    assert api.get(f"/campaigns/{campaign}/report").json["skipped"] == {first_contact.SKIP_NOT_INFORMED: 1}
    db.session.expire_all()
    assert db.session.scalars(select(FirstContactNotice)).one().sent_at is None
