"""Behaviour of the Flask app through its test client."""

from __future__ import annotations

import pytest
from tiny_http_app import DEFAULT_MESSAGE, create_app


@pytest.fixture
def client():
    return create_app(message="hello-world").test_client()


def test_version_returns_the_configured_message(client):
    response = client.get("/version")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == {"message": "hello-world"}


def test_health_says_healthy(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": "healthy"}


def test_message_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("APP_MESSAGE", "from-env")
    assert create_app().test_client().get("/version").get_json() == {"message": "from-env"}


def test_default_message_without_environment(monkeypatch):
    monkeypatch.delenv("APP_MESSAGE", raising=False)
    assert create_app().test_client().get("/version").get_json() == {"message": DEFAULT_MESSAGE}
    assert DEFAULT_MESSAGE == "default-message"


@pytest.mark.parametrize(
    "message",
    ['say "hi": ok', "line one\nline two", "ñandú ☃ 日本", "{{ not_a_template }}", "yes", "0123", "true", "  padded  "],
)
def test_messages_arrive_byte_for_byte(message):
    response = create_app(message=message).test_client().get("/version")
    assert response.get_json() == {"message": message}


def test_unicode_is_sent_as_utf8_not_escapes():
    response = create_app(message="ñandú ☃").test_client().get("/version")
    assert "ñandú ☃".encode() in response.data


@pytest.mark.parametrize("path", ["/", "/nope", "/version/extra"])
def test_unknown_paths_get_json_404(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.mimetype == "application/json"
    assert response.get_json() == {"error": "Not Found", "status": 404}


@pytest.mark.parametrize("method", ["post", "put", "delete", "patch"])
def test_wrong_methods_get_json_405(client, method):
    response = getattr(client, method)("/version")
    assert response.status_code == 405
    assert response.mimetype == "application/json"
    assert response.get_json() == {"error": "Method Not Allowed", "status": 405}
    assert "GET" in response.headers["Allow"]


def test_readiness_switch_fails_health_only():
    client = create_app(message="m", fail_readiness=True).test_client()
    assert client.get("/health").status_code == 503
    assert client.get("/health").get_json() == {"status": "unhealthy"}
    assert client.get("/version").get_json() == {"message": "m"}


def test_readiness_switch_from_environment(monkeypatch):
    monkeypatch.setenv("APP_FAIL_READINESS", "true")
    assert create_app().test_client().get("/health").status_code == 503
