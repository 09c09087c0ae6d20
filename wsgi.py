"""WSGI entry point: gunicorn wsgi:app"""
import sys

from preference_center import create_app, optouts
from preference_center.config import ConfigError, instance_path, load
from preference_center.logs import configure as configure_logging

try:
    # Logging first, so that even the start-up warnings (unknown PC_* variables) are formatted lines.
    configure_logging(load(instance_path()))
    app = create_app()
except ConfigError as exc:
    # A configuration that cannot run safely: one clear line, not a traceback.
    print(f"preference-center: {exc}", file=sys.stderr)
    raise SystemExit(2) from None
configure_logging(app.config)  # the app's own settings, test overrides included
with app.app_context():
    optouts.prepare()  # before the first request, not during it
