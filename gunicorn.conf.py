"""gunicorn's settings, read from the working directory by the README's `gunicorn -w 4 wsgi:app`.

- The master process logs through our handler too (JSON lines in production,
  addresses and tokens masked), not only the workers (wsgi.py does theirs).
- In multiprocess metrics mode (PROMETHEUS_MULTIPROC_DIR), a worker that
  exits is marked dead, so its live gauges leave /metrics.
"""
from gunicorn.glogging import Logger

# Module-level names are read as gunicorn settings (`config` is one): ours start with an underscore.
from preference_center import config as _settings
from preference_center import logs as _logs


class PreferenceCenterLogger(Logger):
    """gunicorn's logger, with its lines handed to our one root handler."""

    def setup(self, cfg):
        super().setup(cfg)
        try:
            _logs.configure(_settings.load(_settings.instance_path()))
        except _settings.ConfigError:
            pass  # the workers report it in one line when they load wsgi.py


logger_class = PreferenceCenterLogger


def child_exit(server, worker):
    """A worker exited: its multiprocess metric files stop counting as live."""
    if _settings.prometheus_multiprocess_dir():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
