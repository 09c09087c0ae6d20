"""WSGI entry point: gunicorn wsgi:app"""
from preference_center import create_app

app = create_app()
