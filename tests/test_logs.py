"""Logs an operator can use: request ids end to end, JSON lines in production, nothing personal or secret."""
from __future__ import annotations

import io
import json
import logging

import pytest

from preference_center import links, logs, tasks

from .helpers import make_contact, token


def _record(message, *args, name="preference_center.test", level=logging.INFO, exc_info=None):
    return logging.LogRecord(name, level, __file__, 1, message, args, exc_info)


def _emitted(config, record, level=logging.INFO) -> str:
    stream = io.StringIO()
    handler = logs.handler_for(config, level, stream)
    if record.levelno >= handler.level:
        handler.handle(record)
    return stream.getvalue()


# -- request ids ------------------------------------------------------------------------

def test_a_request_id_given_by_the_caller_is_echoed(client):
    assert client.get("/healthz/live", headers={"X-Request-Id": "lb-42.a"}).headers["X-Request-Id"] == "lb-42.a"


@pytest.mark.parametrize("offered", [None, "", "has spaces", "x" * 129, "semi;colon", "ann@example.com"])
def test_a_missing_or_unusable_request_id_is_replaced_by_a_new_one(client, offered):
    headers = {"X-Request-Id": offered} if offered is not None else {}
    first = client.get("/healthz/live", headers=headers).headers["X-Request-Id"]
    second = client.get("/healthz/live", headers=headers).headers["X-Request-Id"]
    assert len(first) == 32 and first != second and first != offered


def test_a_request_refused_before_routing_still_carries_its_id(client):
    response = client.get("/p/%00", headers={"X-Request-Id": "refused-1"})
    assert response.status_code >= 400 and response.headers["X-Request-Id"] == "refused-1"


def test_tasks_enqueued_by_a_request_carry_its_id_in_their_headers(app, client, monkeypatch):
    sent = []
    monkeypatch.setattr(app.extensions["celery"], "send_task",
                        lambda name, **options: sent.append((name, options.get("headers"))))

    @app.get("/_probe_enqueue")
    def probe():
        tasks.enqueue("tick")
        return "ok"

    client.get("/_probe_enqueue", headers={"X-Request-Id": "req-77"})
    assert sent == [("preference_center.tasks.tick", {"pc_request_id": "req-77"})]


def test_a_task_logs_with_the_id_it_was_sent_with_and_passes_it_on(app, monkeypatch):
    celery_app = app.extensions["celery"]
    seen, sent = {}, []
    monkeypatch.setattr(celery_app, "send_task", lambda name, **options: sent.append(options.get("headers")))

    @celery_app.task(name="tests.probe_request_id")
    def probe():
        seen["id"] = logs.current_request_id()
        tasks.enqueue("tick")  # a task's own follow-up work keeps the id

    assert probe.apply(headers={"pc_request_id": "req-9"}).successful()
    assert seen["id"] == "req-9" and sent == [{"pc_request_id": "req-9"}]
    assert logs.current_request_id() is None  # and the id does not leak past the task


# -- masking ----------------------------------------------------------------------------------

def test_addresses_tokens_and_secrets_are_masked_in_every_record(app):
    with app.app_context():
        contact_id = make_contact(app, "ann.lee+news@example.co.uk")
        link = token(app, links.UNSUBSCRIBE, contact_id)
    text = _emitted(app.config, _record(
        "sent to %s via /u/%s and %s?x=1; token %s; api token %s; Authorization: Bearer %s; secret %s; key %s",
        "ann.lee+news@example.co.uk", link, f"https://prefs.example.test/p/{link}", link,
        "pc_" + "A" * 43, "pc_" + "A" * 43, "whsec_" + "b" * 32, "SG.abcdefgh.ijklmnopqrstuvwxyz"))
    for secret in ("ann.lee", "example.co.uk", link, "A" * 43, "b" * 32, "ijklmnop"):
        assert secret not in text
    assert "/u/***" in text and "/p/***" in text and "pc_***" in text and "Bearer ***" in text


def test_tracebacks_are_masked_too(app):
    try:
        raise ValueError("cannot send to bob@example.com")
    except ValueError:
        import sys

        record = _record("failed", level=logging.ERROR, exc_info=sys.exc_info())
    text = _emitted(app.config, record)
    assert "ValueError" in text and "bob@example.com" not in text and "***@***" in text


def test_task_names_and_hosts_are_left_alone(app):
    text = _emitted(app.config, _record("Task preference_center.tasks.sweep_webhook_events[ab-1] retried on "
                                        "prefs.example.com"))
    assert "preference_center.tasks.sweep_webhook_events" in text and "prefs.example.com" in text


def test_a_message_masked_when_made_is_masked_again_if_anything_changes_it_afterwards(app):
    record = logging.getLogRecordFactory()("preference_center.test", logging.INFO, __file__, 1,
                                           "sent to %s", ("dana@example.com",), None)
    assert record.getMessage() == "sent to ***@***"  # masked when made (privacy_logging's factory)
    assert "***@***" in _emitted(app.config, record)
    record.msg, record.args = "now to %s", ("erin@example.com",)  # an adapter or filter rewrote it
    text = _emitted(app.config, record)
    assert "erin@example.com" not in text and "now to ***@***" in text


@pytest.mark.parametrize("request_id, shown", [
    ("0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdef"),  # one of ours: as it is
    ("fran@example.com", "***@***"), ("lb/fran@example.com", "lb/***@***"),  # a caller's: masked
])
def test_the_request_id_in_a_line_is_masked_unless_it_is_one_we_made(app, request_id, shown):
    config = {**app.config, "PC_LOG_FORMAT": "json"}
    with app.test_request_context("/"):
        from flask import g

        g.request_id = request_id
        entry = json.loads(_emitted(config, _record("hello")))
    assert entry["request_id"] == shown


# -- format --------------------------------------------------------------------------------------

def test_production_writes_one_json_object_per_line_with_the_request_id(app):
    config = {**app.config, "PC_LOG_FORMAT": "json"}
    with app.test_request_context("/"):
        from flask import g

        g.request_id = "req-json"
        line = _emitted(config, _record("hello %s", "carl@example.com"))
    assert line.endswith("\n") and line.count("\n") == 1
    entry = json.loads(line)
    assert entry["message"] == "hello ***@***" and entry["request_id"] == "req-json"
    assert entry["level"] == "INFO" and entry["logger"] == "preference_center.test" and entry["time"]


def test_development_writes_readable_text(app):
    line = _emitted({**app.config, "PC_LOG_FORMAT": "text"}, _record("hello"))
    assert line.rstrip().endswith("INFO preference_center.test [-] hello")


def test_production_logs_one_line_per_request_with_its_route_not_its_path(app, client, caplog):
    app.config["PC_ENV"] = "production"
    with caplog.at_level(logging.INFO, logger="preference_center.requests"):
        client.get("/u/some-token-value", headers={"X-Request-Id": "r-5"})
    [record] = [r for r in caplog.records if r.name == "preference_center.requests"]
    assert (record.route, record.status, record.method) == ("/u/<token>", 404, "GET")
    assert "some-token-value" not in record.getMessage()


# -- routine work ------------------------------------------------------------------------------

@pytest.mark.parametrize("logger, message", [
    ("celery.app.trace", "Task preference_center.tasks.settle_opt_outs[1f] succeeded in 0.01s: 0"),
    ("celery.worker.strategy", "Task preference_center.tasks.tick[2a] received"),
    ("celery.beat", "Scheduler: Sending due task settle-opt-outs (preference_center.tasks.settle_opt_outs)"),
])
def test_routine_background_work_is_debug_not_info(app, logger, message):
    record = _record(message, name=logger)
    assert _emitted(app.config, record, logging.INFO) == ""
    assert "DEBUG" in _emitted(app.config, _record(message, name=logger), logging.DEBUG)


def test_every_task_the_scheduler_repeats_within_the_hour_is_routine(app):
    from preference_center import logs

    schedule = app.extensions["celery"].conf.beat_schedule
    frequent = {entry["task"] for entry in schedule.values()
                if isinstance(entry["schedule"], (int, float)) and entry["schedule"] < 3600}
    assert frequent and frequent <= set(logs.ROUTINE_TASKS)
    for task in frequent:
        message = f"Task {task}[4d] succeeded in 0.01s: {{}}"
        assert _emitted(app.config, _record(message, name="celery.app.trace"), logging.INFO) == ""


def test_real_work_of_the_worker_stays_at_info(app):
    message = "Task preference_center.tasks.send_batch[3c] succeeded in 0.2s: {}"
    assert "INFO" in _emitted(app.config, _record(message, name="celery.app.trace"), logging.INFO)
