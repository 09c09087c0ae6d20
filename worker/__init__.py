"""The Celery app, bound to the Flask app: `celery -A worker worker`.

`celery_init_app(app)` follows Flask's "Background Tasks with Celery" pattern:
every task runs inside the Flask app context, and the Celery settings come
from the same PC_* configuration. The tasks live in `preference_center.tasks`;
they take ids and load what they need.
"""
from __future__ import annotations

import gc

from celery import Celery, Task
from celery.schedules import crontab
from celery.signals import setup_logging, worker_ready
from flask import Flask

from preference_center import logs

_configs: dict = {}


@setup_logging.connect(weak=False)
def _our_logging(loglevel=None, **_):
    """Celery's worker and beat log through our handler (JSON in production, masked, routine work at DEBUG)."""
    config = _configs.get("app")
    # Tests start workers inside pytest, whose own log capture must stay in place.
    if config is not None and config["PC_ENV"] != "testing":
        logs.configure(config, loglevel)


@worker_ready.connect(weak=False)
def _freeze_what_the_worker_built(**_):
    """Once the worker is up, what it built (its consumer, pools, connections and timers, tens of thousands of
    objects that live as long as the process) is frozen too, as the app was: the collector's full passes, which a
    batch's rows and envelopes trigger every few batches, walked them each time (a full pass took ~36 ms)."""
    gc.collect()
    gc.freeze()


def celery_config(config: dict) -> dict:
    broker = config["PC_BROKER_URL"]
    # kombu's SQLAlchemy transport hands its options to create_engine, so
    # the embedded broker gets none.
    options: dict = {} if broker.startswith("sqla+") else {"visibility_timeout": 3600}
    return {
        "broker_url": broker,
        "broker_transport_options": options,
        "broker_connection_retry_on_startup": True,
        "task_ignore_result": True,
        "result_backend": None,
        # Acknowledge after the work: a killed worker's message comes back,
        # and the database claim turns the repeat into a no-op.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_hijack_root_logger": False,
        "timezone": "UTC",
        "beat_schedule": {
            "tick": {"task": "preference_center.tasks.tick", "schedule": float(config["PC_TICK_SECONDS"])},
            "settle-opt-outs": {"task": "preference_center.tasks.settle_opt_outs", "schedule": float(config["PC_SETTLE_SECONDS"])},
            "webhook-sweep": {"task": "preference_center.tasks.sweep_webhook_events", "schedule": 60.0},
            "deliver-webhooks": {"task": "preference_center.tasks.deliver_webhooks",
                                 "schedule": float(config["PC_WEBHOOK_TICK_SECONDS"])},
            "push-to-sendgrid": {"task": "preference_center.tasks.push_to_sendgrid",
                                 "schedule": float(config["PC_SENDGRID_SYNC_SECONDS"])},
            "retention": {"task": "preference_center.tasks.retention", "schedule": crontab(hour=3, minute=17)},
        },
    }


def celery_init_app(app: Flask) -> Celery:
    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            # The id of the request that enqueued this task (or its ancestor) stays on every log line.
            with app.app_context():
                return logs.run_with_request_id(logs.request_id_of(self.request), lambda: self.run(*args, **kwargs))

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.config_from_object(celery_config(app.config))
    celery_app.set_default()
    _configs["app"] = app.config
    app.extensions["celery"] = celery_app
    import preference_center.tasks  # noqa: F401  (registers the shared tasks)

    return celery_app


def __getattr__(name: str):
    # `celery -A worker` looks up worker.app / worker.celery: build the Flask
    # app from the environment only then, not on every import.
    if name in ("app", "celery"):
        import sys

        from preference_center import create_app
        from preference_center.config import ConfigError

        try:
            value = create_app().extensions["celery"]
        except ConfigError as exc:
            print(f"preference-center: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        # What is built by now (the app, its models and templates, the libraries) lives as long as the process:
        # frozen, the collector's full passes stop walking it each time a batch's short-lived rows and
        # envelopes trigger one (measured: half of a campaign's per-recipient Python time went there).
        gc.freeze()
        globals()["app"] = globals()["celery"] = value
        return value
    raise AttributeError(name)
