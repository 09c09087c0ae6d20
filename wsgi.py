"""WSGI entry point: gunicorn wsgi:app"""
import sys

from preference_center import create_app
from preference_center.config import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    # A configuration that cannot run safely: one clear line, not a traceback.
    print(f"preference-center: {exc}", file=sys.stderr)
    raise SystemExit(2) from None
