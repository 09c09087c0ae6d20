"""Secrets and staff sessions: rotation keeps every suppression, sign-out ends every copy of the cookie."""
from __future__ import annotations

import pytest

from preference_center import contacts, create_app, rules, staff
from preference_center.extensions import db
from preference_center.models import Suppression, Topic

from .helpers import PASSWORD, Staff, make_staff


def test_rotating_the_signing_keys_as_the_readme_says_keeps_every_suppression(app_config, app, api, topics):
    api.put("/contacts/gone@example.com", json={"relationship": "customer"})
    api.put("/contacts/bounced@example.com", json={"relationship": "customer"})
    assert api.delete("/contacts/gone@example.com").status_code == 200
    with app.app_context():
        bounced = contacts.find("bounced@example.com")
        contacts.suppress(bounced.email_hash, "all", "hard_bounce", source="test", contact=bounced)
        db.session.commit()
        stored = set(db.session.scalars(db.select(Suppression.email_hash)))
    # The README's rotation: add a new key at the end, later drop the oldest.
    old, new = app_config["PC_SECRET_KEYS"]
    rotated = create_app({**app_config, "PC_SECRET_KEYS": [new, "the-newest-signing-secret-2222"]})
    with rotated.app_context():
        assert {contacts.hash_of("gone@example.com"), contacts.hash_of("bounced@example.com")} <= stored
        tips = db.session.scalar(db.select(Topic).where(Topic.key == "tips"))
        again, _ = contacts.upsert("gone@example.com", {"relationship": "customer"}, source="test")
        for contact in (again, contacts.find("bounced@example.com")):
            decision = rules.decide(tips, [contact.id])[contact.id][1]
            assert (decision.send, decision.reason) == (False, "suppressed_all")
        db.session.rollback()


def _signed_in(client) -> bool:
    return client.get("/admin/").status_code == 200


def test_signing_out_ends_every_copy_of_the_session_cookie(app, ctx, client):
    make_staff("boss@example.com", "admin")
    browser = Staff(client)
    assert browser.login("boss@example.com").status_code == 302
    stolen = client.get_cookie("session").value
    copy = app.test_client()
    copy.set_cookie("session", stolen)
    assert _signed_in(copy)
    assert browser.post("/admin/logout").status_code == 302
    assert not _signed_in(copy)
    assert not _signed_in(client)


def test_deactivating_a_user_ends_their_sessions_everywhere(app, ctx, client):
    make_staff("boss@example.com", "admin")
    make_staff("mia@example.com", "marketer")
    admin = Staff(client)
    assert admin.login("boss@example.com").status_code == 302
    mia = Staff(app.test_client())
    assert mia.login("mia@example.com").status_code == 302
    assert _signed_in(mia.client)
    mia_id = db.session.scalar(db.select(staff.StaffUser.id).where(staff.StaffUser.email == "mia@example.com"))
    assert admin.post(f"/admin/users/{mia_id}/deactivate").status_code == 302
    assert not _signed_in(mia.client)
    # Activated again, the old cookie still opens nothing: she signs in afresh.
    assert admin.post(f"/admin/users/{mia_id}/activate").status_code == 302
    assert not _signed_in(mia.client)


@pytest.mark.parametrize("who", ["unknown", "wrong password", "locked", "deactivated"])
def test_every_refused_sign_in_does_the_same_password_work(monkeypatch, ctx, client, who):
    """No timing tells whether an account exists: each refusal verifies exactly one argon2 hash."""
    user = make_staff("boss@example.com", "admin")
    email, password = "boss@example.com", "not the password"
    if who == "unknown":
        email = "nobody@example.com"
    elif who == "locked":
        for _ in range(5):
            Staff(client).login(email, "wrong")
        password = PASSWORD
    elif who == "deactivated":
        user.active = False
        db.session.commit()
        password = PASSWORD
    verified = []
    real = staff.check_password
    monkeypatch.setattr(staff, "check_password", lambda u, p: verified.append(1) or real(u, p))
    response = Staff(client).login(email, password)
    assert response.status_code == 401
    assert len(verified) == 1
