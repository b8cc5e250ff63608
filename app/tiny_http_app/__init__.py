"""tiny-http-app: GET /version returns the configured message, GET /health says healthy."""

from __future__ import annotations

import os

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

DEFAULT_MESSAGE = "default-message"


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes"}


def create_app(message: str | None = None, fail_readiness: bool | None = None) -> Flask:
    """Build the app. Without arguments the settings come from the environment.

    APP_MESSAGE: what GET /version answers (the chart's ConfigMap sets it).
    APP_FAIL_READINESS: test-only switch; /health answers 503 so a release whose
    pods never become ready can be exercised (the rollback path).
    """
    app = Flask(__name__)
    app.json.ensure_ascii = False  # unicode messages are sent as UTF-8, not \\u escapes
    app.json.sort_keys = False
    app.config["APP_MESSAGE"] = os.environ.get("APP_MESSAGE", DEFAULT_MESSAGE) if message is None else message
    app.config["APP_FAIL_READINESS"] = _env_flag("APP_FAIL_READINESS") if fail_readiness is None else fail_readiness

    @app.get("/version")
    def version():
        return jsonify(message=app.config["APP_MESSAGE"])

    @app.get("/health")
    def health():
        if app.config["APP_FAIL_READINESS"]:
            return jsonify(status="unhealthy"), 503
        return jsonify(status="healthy")

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        response = jsonify(error=error.name, status=error.code)
        response.status_code = error.code or 500
        if error.code == 405 and error.valid_methods:
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response

    return app
