"""Requests that reach staff by phone, letter or in person are logged with their deadline (issue 14)."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from preference_center import rights
from preference_center.extensions import db
from preference_center.models import AuditLog, DataRequest, utcnow

from .helpers import factories, text_of


@pytest.fixture
def kim(ctx) -> int:
    contact = factories.contact("kim@example.com", relationship="customer")
    db.session.commit()
    return contact.id


def _requests() -> list[DataRequest]:
    db.session.expire_all()
    return db.session.scalars(select(DataRequest).order_by(DataRequest.id)).all()


def test_an_admin_logs_a_request_received_by_phone_with_its_deadline(as_admin, kim):
    received = (utcnow() - dt.timedelta(days=10)).date()
    page = as_admin.get(f"/admin/contacts/{kim}").get_data(as_text=True)
    assert "Log a request received by phone or letter" in page
    answer = as_admin.post(f"/admin/contacts/{kim}/requests", {"kind": "erasure", "channel": "phone",
                                                               "received": received.isoformat(), "note": "called"})
    assert answer.status_code == 303 and answer.headers["Location"].endswith("/admin/requests")
    (request,) = _requests()
    assert (request.kind, request.status, request.contact_id) == ("erasure", "open", kim)
    assert request.requested_at.date() == received
    assert request.due_at == rights.due_date(request.requested_at)  # one calendar month after receipt
    assert request.detail == {"channel": "phone", "note": "called", "logged_by": "staff:boss@example.com"}
    entry = db.session.scalars(select(AuditLog).where(AuditLog.action == "data_request.log")).one()
    assert entry.actor == "staff:boss@example.com" and entry.detail["channel"] == "phone"
    listing = text_of(as_admin.get("/admin/requests").get_data(as_text=True))
    assert "erasure" in listing and "kim@example.com" in listing


@pytest.mark.parametrize("form, why", [
    ({"kind": "erasure", "channel": "pigeon"}, "How it reached us: Not a valid choice"),
    ({"kind": "haircut", "channel": "letter"}, "What the person asked for: Not a valid choice"),
    ({"kind": "access", "channel": "letter", "received": "2999-01-01"}, "future"),
    ({"kind": "access", "channel": "letter", "note": "from kim@example.com"}, "email address"),
])
def test_a_bad_log_entry_is_refused_and_changes_nothing(as_admin, kim, form, why):
    data = {"received": utcnow().date().isoformat(), **form}
    answer = as_admin.post(f"/admin/contacts/{kim}/requests", data)
    assert answer.status_code == 422
    assert _requests() == []
    assert why in text_of(as_admin.get(f"/admin/contacts/{kim}").get_data(as_text=True))


def test_a_second_open_request_of_the_same_kind_is_a_conflict(as_admin, kim):
    form = {"kind": "access", "channel": "letter", "received": utcnow().date().isoformat()}
    assert as_admin.post(f"/admin/contacts/{kim}/requests", form).status_code == 303
    assert as_admin.post(f"/admin/contacts/{kim}/requests", form).status_code == 409
    assert len(_requests()) == 1


@pytest.mark.parametrize("role", ["as_marketer", "as_viewer"])
def test_only_admins_log_requests(request, kim, role):
    staff = request.getfixturevalue(role)
    form = {"kind": "access", "channel": "letter", "received": utcnow().date().isoformat()}
    assert staff.post(f"/admin/contacts/{kim}/requests", form).status_code == 403
    assert db.session.scalar(select(func.count(DataRequest.id))) == 0
