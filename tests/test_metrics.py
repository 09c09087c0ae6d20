"""/metrics shows an operator a campaign's progress, the queues and the requests; /healthz/live and /ready."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from preference_center import campaigns, links, optouts, sending
from preference_center.extensions import db
from preference_center.models import Campaign, WebhookEvent
from worker import tasks

from .helpers import IP, grant, make_contact, token

# Sent through the real sendgrid client to the fake provider (`fake`, tests/conftest.py).
pytestmark = pytest.mark.sendgrid(PC_SENDGRID_MAX_ATTEMPTS=2, PC_BATCH_SIZE=2, PC_METRICS_TOKEN='metrics-token-for-tests')


ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def scrape(client, **options) -> dict[tuple, float]:
    """Every sample of /metrics as {(name, sorted labels): value}."""
    response = client.get("/metrics", **options)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def audience(app, topics) -> list[int]:
    ids = [make_contact(app, f"r{i}@example.com", relationship="customer", name=f"R{i}") for i in range(5)]
    for contact_id in ids:
        grant(app, contact_id, "news")
    return ids


def _campaign(app) -> int:
    with app.app_context():
        campaign = campaigns.create({"name": "Winter", "topic": "news", "subject": "Hi {{ contact.name }}",
                                     "text": "Hello {{ contact.name }}"}, created_by="test")
        db.session.commit()
        campaigns.schedule(db.session.get(Campaign, campaign.id), None)
        db.session.commit()
        campaigns.start_due()
        return campaign.id


def _plan(app, campaign_id) -> list[int]:
    with app.app_context():
        batches = []
        while (batch := sending.plan_chunk(campaign_id, 2)) is not None:
            batches.append(batch)
        return batches


# -- who may read ---------------------------------------------------------------------------

def test_metrics_are_readable_from_loopback(client):
    assert client.get("/metrics").status_code == 200


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Basic bWV0cmljcw==", "Bearer "])
def test_metrics_are_refused_to_other_networks_without_the_token(client, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = client.get("/metrics", headers=headers, environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert response.status_code == 403 and response.get_json()["error"]["code"] == "forbidden"
    assert "pc_" not in response.get_data(as_text=True)


def test_the_token_reads_metrics_from_anywhere(client):
    scrape(client, headers={"Authorization": "Bearer metrics-token-for-tests"},
           environ_base={"REMOTE_ADDR": "203.0.113.9"})


def test_configured_networks_read_metrics_and_loopback_then_needs_the_token(app, client):
    app.config["PC_METRICS_ALLOW"] = ["10.0.0.0/8"]
    scrape(client, environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert client.get("/metrics").status_code == 403


# -- requests -----------------------------------------------------------------------------------

def test_requests_are_counted_by_route_rule_and_status_never_by_path(client):
    before = scrape(client)
    for _ in range(3):
        client.get("/u/not-a-real-token-at-all")
    client.get("/healthz/live")
    response = client.get("/metrics")
    text = response.get_data(as_text=True)
    assert "not-a-real-token-at-all" not in text
    after = scrape(client)
    key = {"method": "GET", "route": "/u/<token>"}
    assert value(after, "pc_http_requests_total", status="404", **key) - \
        value(before, "pc_http_requests_total", status="404", **key) == 3
    assert value(after, "pc_http_request_duration_seconds_count", **key) - \
        value(before, "pc_http_request_duration_seconds_count", **key) == 3
    assert value(after, "pc_http_requests_total", method="GET", route="/healthz/live", status="200") >= 1
    assert any(name == "pc_http_request_duration_seconds_bucket" for name, _ in after)


# -- campaign progress ----------------------------------------------------------------------------

def test_a_campaign_shows_its_progress_while_it_sends(app, client, audience, fake):
    campaign_id = _campaign(app)
    batches = _plan(app, campaign_id)
    assert len(batches) == 3
    cid = str(campaign_id)
    planned = scrape(client)
    assert value(planned, "pc_campaign_recipients", campaign_id=cid, status="queued") == 5
    assert value(planned, "pc_campaign_recipients_planned", campaign_id=cid) == 5
    assert value(planned, "pc_campaign_status", campaign_id=cid, status="sending") == 1
    assert value(planned, "pc_campaign_batches", campaign_id=cid, status="queued") == 3
    assert value(planned, "pc_batches", status="queued") == 3

    with app.app_context():
        tasks.send_batch(batches[0])
    midway = scrape(client)
    assert value(midway, "pc_campaign_recipients", campaign_id=cid, status="sent") == 2
    assert value(midway, "pc_campaign_recipients", campaign_id=cid, status="queued") == 3
    assert value(midway, "pc_campaign_sent_last_minute", campaign_id=cid) == 2
    assert value(midway, "pc_campaign_batches", campaign_id=cid, status="done") == 1
    assert value(midway, "pc_worker_recipients_total", outcome="sent") - \
        value(planned, "pc_worker_recipients_total", outcome="sent") == 2

    with app.app_context():
        for batch in batches[1:]:
            tasks.send_batch(batch)
        sending.finish_campaign_if_done(campaign_id)
    done = scrape(client)
    assert value(done, "pc_campaign_recipients", campaign_id=cid, status="sent") == 5
    assert value(done, "pc_campaign_status", campaign_id=cid, status="sent") == 1  # still shown once finished
    assert value(done, "pc_batches", status="queued") == 0
    assert len(fake.accepted) == 5


def test_provider_errors_are_counted_by_status(app, client, audience, fake):
    campaign_id = _campaign(app)
    [first, *_] = _plan(app, campaign_id)
    before = scrape(client)
    fake.script([(503, {}), (503, {})])
    with app.app_context():
        tasks.send_batch(first)
    after = scrape(client)
    assert value(after, "pc_provider_errors_total", provider="sendgrid", status="503") - \
        value(before, "pc_provider_errors_total", provider="sendgrid", status="503") == 2


# -- queues ------------------------------------------------------------------------------------------

def test_the_opt_out_inbox_backlog_shows_until_it_is_settled(app, client, audience):
    assert value(scrape(client), "pc_optout_inbox_backlog") == 0
    with app.app_context():
        link = token(app, links.UNSUBSCRIBE, audience[0])
    gmail = app.test_client(use_cookies=False)
    assert gmail.post(f"/u/{link}", data=ONE_CLICK, environ_base={"REMOTE_ADDR": IP}).status_code == 200
    waiting = scrape(client)
    assert value(waiting, "pc_optout_inbox_backlog") == 1
    assert value(waiting, "pc_optout_inbox_oldest_seconds") >= 0
    with app.app_context():
        optouts.settle_all()
    assert value(scrape(client), "pc_optout_inbox_backlog") == 0


def test_provider_events_waiting_are_shown(app, client):
    with app.app_context():
        db.session.add_all([WebhookEvent(provider_event_id=f"e{i}", event="delivered", payload={}) for i in range(3)])
        db.session.commit()
    assert value(scrape(client), "pc_webhook_events_waiting") == 3


def test_an_unreachable_database_is_a_figure_not_a_failed_scrape(app, client, monkeypatch):
    from preference_center import metrics

    def broken(self, now):
        raise RuntimeError("database went away")

    monkeypatch.setattr(metrics.DatabaseCollector, "_read", broken)
    assert value(scrape(client), "pc_database_up") == 0


# -- health ---------------------------------------------------------------------------------------------

def test_liveness_needs_nothing_but_the_process(app, client):
    app.config["PC_BROKER_URL"] = "redis://127.0.0.1:1/0"
    response = client.get("/healthz/live")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_readiness_checks_the_database_and_the_broker(app, client):
    for path in ("/healthz/ready", "/healthz"):
        response = client.get(path)
        assert response.status_code == 200
        assert response.get_json() == {"status": "ok", "database": "ok", "broker": "ok"}


def test_not_ready_when_the_broker_is_unreachable_and_healthz_says_the_same(app, client):
    app.config["PC_BROKER_URL"] = "redis://127.0.0.1:1/0"
    for path in ("/healthz/ready", "/healthz"):
        response = client.get(path)
        assert response.status_code == 503
        body = response.get_json()
        assert body["status"] == "error" and body["database"] == "ok" and re.match(r"error: \w+", body["broker"])


def test_routes_are_labelled_by_their_parameters_names_not_their_converters(client, api, topics):
    api.post("/campaigns/12345/schedule", json={"at": None})
    samples = scrape(client)
    routes = {dict(labels).get("route") for name, labels in samples if name == "pc_http_requests_total"}
    assert "/api/v1/campaigns/<id>/schedule" in routes
    assert not any("int(" in route or "12345" in route for route in routes if route)


@pytest.mark.slow
def test_under_several_processes_metrics_add_up_every_process(tmp_path):
    """PROMETHEUS_MULTIPROC_DIR: what gunicorn's workers (and Celery's) count is summed on /metrics."""
    import os
    import subprocess
    import sys

    folder = tmp_path / "metrics"
    folder.mkdir()
    script = (
        "import sys\n"
        "from preference_center import create_app\n"
        "from tests.helpers import app_settings, prepare_database\n"
        "from pathlib import Path\n"
        "app = create_app(app_settings(Path(sys.argv[1])))\n"
        "prepare_database(app)\n"
        "client = app.test_client()\n"
        "for _ in range(int(sys.argv[2])):\n"
        "    assert client.get('/healthz/live').status_code == 200\n"
        "if sys.argv[3] == 'scrape':\n"
        "    sys.stdout.write(client.get('/metrics').get_data(as_text=True))\n"
    )
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    env.pop("PC_TEST_DATABASE_URL", None)
    env.pop("PC_TEST_BROKER_URL", None)
    for index, (count, then) in enumerate([(3, "-"), (2, "scrape")]):
        (tmp_path / str(index)).mkdir()
        done = subprocess.run([sys.executable, "-c", script, str(tmp_path / str(index)), str(count), then],
                              cwd=root, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    samples = {}
    for family in text_string_to_metric_families(done.stdout):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    assert value(samples, "pc_http_requests_total", method="GET", route="/healthz/live", status="200") == 5
    assert value(samples, "pc_database_up") == 1


def test_behind_a_trusted_proxy_the_client_address_is_the_forwarded_one(app_config, tmp_path):
    from preference_center import create_app

    from .helpers import prepare_database

    app_config["PC_PROXY_HOPS"] = 1
    proxied = create_app(app_config)
    prepare_database(proxied)
    client = proxied.test_client()
    # The proxy runs on the same machine (loopback): the caller behind it is not on an allowed network.
    refused = client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    assert refused.status_code == 403
    assert client.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"}).status_code == 200
    with proxied.app_context():
        db.session.remove()
        db.engine.dispose()
