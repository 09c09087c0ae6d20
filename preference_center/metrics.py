"""Prometheus metrics at /metrics: what an operator needs to see without opening the admin pages.

Two sources, one page:

- **This process (and its siblings)**: requests by route rule (never the raw
  path, which holds tokens) and status, with latency histograms; provider
  errors by status; recipients handled by the workers, by outcome. Under
  gunicorn (several processes) set `PROMETHEUS_MULTIPROC_DIR` to an empty
  directory for the web and worker processes of one machine: every process
  writes its counters there and /metrics sums them.
- **The database, read at scrape time** (the source of truth, whichever
  machine did the work): per campaign that is sending or finished within a
  day, its recipients by delivery status, the recipients planned so far,
  whether planning is done, its batches by status and what it sent in the
  last minute; batches waiting and claimed; the one-click opt-out inbox's
  backlog; stored provider (webhook) events waiting; system messages queued.

Only networks in `PC_METRICS_ALLOW` (loopback by default) or a caller with
`Authorization: Bearer <PC_METRICS_TOKEN>` may read it; others get 403.
"""
from __future__ import annotations

import datetime as dt
import hmac
import ipaddress
import time

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import REGISTRY
from sqlalchemy import func, or_, select

from . import config as settings
from . import logs
from .extensions import db
from .models import Campaign, CampaignBatch, Delivery, OptOutInbox, WebhookEvent, utcnow
from .states import CampaignStatus

REQUESTS = Counter("pc_http_requests", "HTTP requests answered, by route rule and status",
                   ["method", "route", "status"])
LATENCY = Histogram("pc_http_request_duration_seconds", "Time to answer, by route rule", ["method", "route"],
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
PROVIDER_ERRORS = Counter("pc_provider_errors", "Failed requests to the mail provider, by provider and status "
                          "(HTTP status, `unreachable` or `no_answer`)", ["provider", "status"])
RECIPIENTS = Counter("pc_worker_recipients", "Campaign recipients handled by the workers, by outcome", ["outcome"])
BATCHES_QUEUED = Counter("pc_batches_queued", "Campaign batches handed to the broker (planned or re-queued)")

# A finished campaign stays on the page this long, so its last figures are scraped.
RECENT = dt.timedelta(days=1)

bp = Blueprint("metrics", __name__)


def provider_error(provider: str, status: int | str) -> None:
    """Count one failed provider request."""
    PROVIDER_ERRORS.labels(provider=provider, status=str(status)).inc()


def recipients_handled(sent: int = 0, skipped: int = 0, failed: int = 0, unknown: int = 0) -> None:
    """Count what one batch did with its recipients."""
    for outcome, count in (("sent", sent), ("skipped", skipped), ("failed", failed), ("unknown", unknown)):
        if count:
            RECIPIENTS.labels(outcome=outcome).inc(count)


class _ThisProcess:
    """The process-local registry, when there is no multiprocess directory."""

    def collect(self):
        """This process's own metrics (the default registry)."""
        return REGISTRY.collect()


class DatabaseCollector:
    """Campaign progress and queue depths, read from the database at scrape time."""

    def collect(self):
        """The database's figures, or pc_database_up 0 when it does not answer."""
        now = utcnow()
        try:
            families = self._read(now)
        except Exception:  # noqa: BLE001 - an unreachable database is a figure, not a failed scrape
            db.session.rollback()
            up = GaugeMetricFamily("pc_database_up", "1 when the database answered this scrape")
            up.add_metric([], 0)
            yield up
            return
        finally:
            db.session.remove()
        yield from families

    def _read(self, now: dt.datetime) -> list:
        up = GaugeMetricFamily("pc_database_up", "1 when the database answered this scrape")
        up.add_metric([], 1)
        campaigns = db.session.execute(select(Campaign.id, Campaign.status, Campaign.dispatch_done).where(or_(
            Campaign.status == CampaignStatus.SENDING, Campaign.finished_at >= now - RECENT))).all()
        ids = [c.id for c in campaigns]
        status = GaugeMetricFamily("pc_campaign_status", "1 for the status each campaign is in",
                                   labels=["campaign_id", "status"])
        planning = GaugeMetricFamily("pc_campaign_planning_done",
                                     "1 once every recipient of the campaign is planned (the total is final)",
                                     labels=["campaign_id"])
        for campaign in campaigns:
            status.add_metric([str(campaign.id), campaign.status], 1)
            planning.add_metric([str(campaign.id)], 1 if campaign.dispatch_done else 0)
        recipients = GaugeMetricFamily("pc_campaign_recipients", "Recipients of a campaign by delivery status",
                                       labels=["campaign_id", "status"])
        planned = GaugeMetricFamily("pc_campaign_recipients_planned", "Recipients of a campaign planned so far",
                                    labels=["campaign_id"])
        last_minute = GaugeMetricFamily("pc_campaign_sent_last_minute",
                                        "Recipients of a campaign sent in the last 60 seconds (throughput)",
                                        labels=["campaign_id"])
        batches = GaugeMetricFamily("pc_campaign_batches", "Batches of a campaign by status (queued, claimed, done)",
                                    labels=["campaign_id", "status"])
        if ids:
            totals: dict[int, int] = dict.fromkeys(ids, 0)
            for campaign_id, state, count in db.session.execute(
                    select(Delivery.campaign_id, Delivery.status, func.count())
                    .where(Delivery.campaign_id.in_(ids)).group_by(Delivery.campaign_id, Delivery.status)):
                recipients.add_metric([str(campaign_id), state], count)
                totals[campaign_id] += count
            from .campaigns import pending  # campaigns reaches this module through the transports

            for campaign_id in ids:  # recipients planned on open batches wait there, without a row yet
                waiting = pending(campaign_id)
                if waiting:
                    recipients.add_metric([str(campaign_id), "queued"], waiting)
                planned.add_metric([str(campaign_id)], totals[campaign_id] + waiting)
            recent = dict(db.session.execute(
                select(Delivery.campaign_id, func.count())
                .where(Delivery.campaign_id.in_(ids), Delivery.status == "sent",
                       Delivery.updated_at >= now - dt.timedelta(seconds=60))
                .group_by(Delivery.campaign_id)).all())
            for campaign_id in ids:
                last_minute.add_metric([str(campaign_id)], recent.get(campaign_id, 0))
            for campaign_id, state, count in db.session.execute(
                    select(CampaignBatch.campaign_id, CampaignBatch.status, func.count())
                    .where(CampaignBatch.campaign_id.in_(ids))
                    .group_by(CampaignBatch.campaign_id, CampaignBatch.status)):
                batches.add_metric([str(campaign_id), state], count)
        waiting = GaugeMetricFamily("pc_batches", "Campaign batches not done yet, by status (queued, claimed)",
                                    labels=["status"])
        counts = dict(db.session.execute(select(CampaignBatch.status, func.count())
                                         .where(CampaignBatch.status != "done").group_by(CampaignBatch.status)).all())
        for state in ("queued", "claimed"):
            waiting.add_metric([state], counts.get(state, 0))
        system = GaugeMetricFamily("pc_system_messages_queued", "System messages waiting to be sent")
        system.add_metric([], db.session.scalar(select(func.count()).select_from(Delivery).where(
            Delivery.system_message_id.is_not(None), Delivery.status == "queued")) or 0)
        families = [up, status, planning, recipients, planned, last_minute, batches, waiting, system]
        families += self._inbox(now, "pc_optout_inbox", "One-click opt-outs taken but not yet chained into the ledger",
                                select(func.count(), func.min(OptOutInbox.received_at)).select_from(OptOutInbox))
        families += self._inbox(now, "pc_webhook_events_waiting", "Stored provider events not yet processed",
                                select(func.count(), func.min(WebhookEvent.received_at))
                                .where(WebhookEvent.processed_at.is_(None)))
        return families

    @staticmethod
    def _inbox(now: dt.datetime, name: str, meaning: str, query) -> list:
        count, oldest = db.session.execute(query).one()
        backlog = GaugeMetricFamily(f"{name}_backlog" if name == "pc_optout_inbox" else name, meaning)
        backlog.add_metric([], count or 0)
        age = GaugeMetricFamily(f"{name}_oldest_seconds", f"{meaning}: age of the oldest (0 when none)")
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=dt.UTC)
        age.add_metric([], max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0)
        return [backlog, age]


def exposition() -> bytes:
    """The text of /metrics: every process's counters plus the database's figures."""
    registry = CollectorRegistry()
    if settings.prometheus_multiprocess_dir():
        MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())
    registry.register(DatabaseCollector())
    return generate_latest(registry)


def may_read() -> bool:
    """A caller from an allowed network, or with the metrics token."""
    token = current_app.config["PC_METRICS_TOKEN"]
    offered = request.headers.get("Authorization", "")
    if token and hmac.compare_digest(offered.encode(), f"Bearer {token}".encode()):
        return True
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(network) for network in current_app.config["PC_METRICS_ALLOW"])


@bp.get("/metrics")
def metrics():
    if not may_read():
        return jsonify({"error": {"code": "forbidden", "message": "metrics are readable from the networks in "
                                  "PC_METRICS_ALLOW or with the bearer token PC_METRICS_TOKEN"}}), 403
    return Response(exposition(), mimetype=CONTENT_TYPE_LATEST.split(";")[0],
                    headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"})


def init_app(app: Flask) -> None:
    """Mount /metrics and time every request by its route rule."""
    app.register_blueprint(bp)

    # The labelled series, looked up once each: `labels()` checks and locks on every call.
    counters: dict[tuple[str, str, int], object] = {}
    timers: dict[tuple[str, str], object] = {}

    @app.after_request
    def count_request(response):
        started = g.get("request_started")  # taken by logs.init_app's first hook
        method, route, status = request.method, logs.route_label(), response.status_code
        counter = counters.get((method, route, status))
        if counter is None:
            counter = counters[(method, route, status)] = REQUESTS.labels(method=method, route=route,
                                                                           status=str(status))
        counter.inc()
        if started is not None:
            timer = timers.get((method, route))
            if timer is None:
                timer = timers[(method, route)] = LATENCY.labels(method=method, route=route)
            timer.observe(time.perf_counter() - started)
        return response
