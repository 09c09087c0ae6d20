"""Handing work to the broker: a broker outage never turns a committed change into an error, and the
scheduler finds the work whose message never arrived."""
from __future__ import annotations

import datetime as dt
import io
import logging

import pytest

from preference_center import imports, tasks
from preference_center.extensions import db
from preference_center.models import Campaign, ImportJob, utcnow

DOWN = "redis://127.0.0.1:1/0"  # nothing listens on port 1: every connection is refused


@pytest.fixture
def down_app(app_config, request):
    """The app with an unreachable broker (fixtures listed after this one share it)."""
    app_config["PC_BROKER_URL"] = DOWN
    return request.getfixturevalue("app")


@pytest.fixture
def task_log(caplog, monkeypatch):
    """Warnings of preference_center.tasks (an earlier Alembic fileConfig may have disabled the logger)."""
    monkeypatch.setattr(logging.getLogger("preference_center.tasks"), "disabled", False)
    with caplog.at_level(logging.WARNING, logger="preference_center.tasks"):
        yield caplog


def test_enqueue_returns_true_when_the_broker_takes_the_task(ctx):
    assert tasks.enqueue("settle_opt_outs") is True


@pytest.mark.slow
def test_enqueue_with_the_broker_down_warns_and_returns_false(down_app, task_log):
    with down_app.app_context():
        assert tasks.enqueue("send_message", 12345) is False
    assert "could not queue send_message(12345,)" in task_log.text


def test_the_worker_shim_still_exports_enqueue_and_the_tasks():
    from worker.tasks import enqueue, tick

    assert enqueue is tasks.enqueue and tick is tasks.tick
    assert tick.name == "preference_center.tasks.tick"


@pytest.mark.slow
def test_scheduling_through_the_api_with_the_broker_down_answers_200_and_commits(down_app, api, topics, task_log):
    assert down_app.config["PC_BROKER_URL"] == DOWN
    created = api.post("/campaigns", json={"name": "N", "topic": "news", "subject": "S", "text": "T"})
    assert created.status_code == 201
    response = api.post(f"/campaigns/{created.json['id']}/schedule", json={"at": None})
    assert response.status_code == 200 and response.json["status"] == "scheduled"
    assert "could not queue tick()" in task_log.text, "the API did try the broker"
    with down_app.app_context():
        assert db.session.get(Campaign, created.json["id"]).status == "scheduled"
        tasks.tick()  # what beat does every few seconds: the campaign starts without the lost message
        assert db.session.get(Campaign, created.json["id"]).status == "sending"


def _queued_import() -> ImportJob:
    job = imports.store(io.BytesIO(b"email\nann@example.com\nbob@example.com\n"), "people.csv",
                        created_by="staff:mia@example.com")
    imports.configure(job, imports.Settings(mapping={"email": 0}, legal_basis="legitimate_interest",
                                            source_text="customer list"))
    imports.preview(job)
    imports.start(job)
    db.session.commit()
    return job


def _age(job: ImportJob, seconds: int) -> None:
    job.queued_at = utcnow() - dt.timedelta(seconds=seconds)
    db.session.commit()


def test_a_queued_import_whose_message_was_lost_is_queued_again_once_per_period(ctx, monkeypatch):
    job = _queued_import()
    sent = []
    monkeypatch.setattr(tasks, "enqueue", lambda name, *args, **kw: sent.append((name, *args)) or True)
    tasks.tick()
    assert ("import_csv", job.id) not in sent, "a job queued a moment ago still has its message"
    _age(job, ctx.config["PC_REQUEUE_AFTER_SECONDS"] + 5)
    tasks.tick()
    assert sent.count(("import_csv", job.id)) == 1
    tasks.tick()
    assert sent.count(("import_csv", job.id)) == 1, "re-stamped: not queued again on every tick"
    _age(job, ctx.config["PC_REQUEUE_AFTER_SECONDS"] + 5)
    job.status = "running"
    db.session.commit()
    assert imports.requeue_lost() == [], "only queued imports; a running one has its worker"


def test_a_recovered_import_runs_to_the_end(ctx):
    job = _queued_import()
    _age(job, ctx.config["PC_REQUEUE_AFTER_SECONDS"] + 5)
    assert imports.requeue_lost() == [job.id]
    assert tasks.import_csv(job.id) == "done"  # the worker's task, in its own session
    db.session.expire_all()
    assert (job.status, job.processed, job.created_count) == ("done", 2, 2)
