"""WSGI entry point for gunicorn: `gunicorn tiny_http_app.wsgi:app`."""

from tiny_http_app import create_app

app = create_app()
