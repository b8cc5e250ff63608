"""The rollout prober against real local servers: gunicorn serving the app, and werkzeug."""

from __future__ import annotations

import http.server
import itertools
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import ClassVar

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from lab.bench.prober import Prober, Sample, mark_stale, summarize
from lab.paths import REPO
from tests.conftest import free_port

GUNICORN = REPO / ".venv" / "bin" / "gunicorn"


def wait_listening(port: int, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if process is not None and process.poll() is not None:
                raise AssertionError("server exited early") from None
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


@pytest.fixture
def gunicorn() -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """The app as the image serves it: gunicorn with the project's config, on loopback."""
    port = free_port()
    env = dict(os.environ, APP_MESSAGE="probe-me", WEB_CONCURRENCY="2", PYTHONPATH=str(REPO / "app"))
    process = subprocess.Popen(
        [
            *(sys.executable, GUNICORN, "--config", REPO / "app" / "gunicorn.conf.py"),
            *("--bind", f"127.0.0.1:{port}", "--access-logfile", "/dev/null", "tiny_http_app.wsgi:app"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: master and workers die together
    )
    wait_listening(port, process)
    yield port, process
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@pytest.fixture
def werkzeug_server() -> Iterator[Callable[[Callable[[Request], Response]], int]]:
    """Start a threaded werkzeug server (the Flask development server's) for a handler."""
    servers = []
    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    def start(handler: Callable[[Request], Response]) -> int:
        server = make_server("127.0.0.1", 0, Request.application(handler), threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.port

    yield start
    for server in servers:
        server.shutdown()


def message(text: str, status: int = 200) -> Response:
    return Response(json.dumps({"message": text}), status=status, mimetype="application/json")


def test_rate_is_held_and_every_request_is_logged(gunicorn):
    port, _ = gunicorn
    samples = Prober("127.0.0.1", port, rate=100, expected={"probe-me"}).run_for(3.0)
    summary = summarize(samples)
    # 3 s at 100/s: request 0 at t=0 ... request 300 at t=3.0 (the edge may or may not go)
    assert 299 <= len(samples) <= 301, summary
    assert summary["errors"] == 0, summary
    assert summary["messages"] == {"probe-me": len(samples)}
    assert 98 <= summary["rate_per_s"] <= 102
    # Requests leave on schedule, not one after the other: a serial prober would
    # fall seconds behind. (Measured: up to 0.6 s of lag at a load average of 14
    # on 2 cores, under 0.1 s on an idle machine.)
    assert summary["max_send_lag_ms"] < 1000
    gaps = [b.scheduled - a.scheduled for a, b in itertools.pairwise(samples)]
    assert max(gaps) == pytest.approx(0.01, abs=1e-6)
    assert all(s.status == 200 and s.latency > 0 and s.sent >= s.scheduled for s in samples)


def wait_refused(port: int) -> float:
    """When a connection to port was first refused (nothing holds the socket any more)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                pass
        except ConnectionRefusedError:
            return time.monotonic()
        except OSError:
            pass
        time.sleep(0.01)
    raise AssertionError(f"port {port} still accepts connections 10 s after the kill")


def test_errors_are_counted_when_the_server_goes_away(gunicorn):
    port, process = gunicorn
    prober = Prober("127.0.0.1", port, rate=100, expected={"probe-me"}).start()
    # answered requests before the kill, however loaded the machine (a fixed second was not always enough)
    deadline = time.monotonic() + 30
    while sum(s.ok for s in list(prober.samples)) < 20 and time.monotonic() < deadline:
        time.sleep(0.1)
    killed_at = time.monotonic()
    os.killpg(process.pid, signal.SIGKILL)  # master and workers, like a crashed pod
    process.wait()
    refused_at = wait_refused(port)
    time.sleep(1.0)
    samples = prober.stop()
    before = [s for s in samples if s.sent + s.latency < killed_at]  # answered before the kill
    # while the workers die, a connection one of them accepted may be reset
    # instead of refused: both are errors of a connection kind, never ok
    dying = [s for s in samples if killed_at - 0.05 <= s.sent <= refused_at]
    gone = [s for s in samples if s.sent > refused_at]
    assert before and all(s.ok for s in before)
    assert {s.kind for s in dying if not s.ok} <= {"connect", "reset"}, summarize(dying)
    assert len(gone) >= 80
    assert {s.kind for s in gone} == {"connect"}, summarize(gone)
    assert summarize(samples)["errors"] >= len(gone)


def test_error_kinds_are_classified(werkzeug_server):
    def handler(request: Request) -> Response:
        if request.path == "/unavailable":
            return message("old", status=503)
        if request.path == "/html":
            return Response("<h1>hello</h1>", mimetype="text/html")
        if request.path == "/other":
            return message("neither old nor new")
        if request.path == "/slow":
            time.sleep(2.3)
        return message("old")

    port = werkzeug_server(handler)

    def kinds(path: str, seconds: float = 0.5) -> set[str]:
        samples = Prober("127.0.0.1", port, path=path, rate=20, expected={"old", "new"}).run_for(seconds)
        assert samples
        return {s.kind for s in samples}

    assert kinds("/version") == {"ok"}
    assert kinds("/unavailable") == {"status"}
    assert kinds("/html") == {"body"}
    assert kinds("/other") == {"body"}
    assert kinds("/slow", seconds=0.2) == {"timeout"}
    assert kinds("/version") == {"ok"}  # the slow requests did not leave the prober stuck


def test_a_connection_reset_is_its_own_kind():
    """A listener that accepts and resets every connection (SO_LINGER 0) before answering."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def reset_everything() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            client.recv(1024)
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()

    thread = threading.Thread(target=reset_everything, daemon=True)
    thread.start()
    try:
        samples = Prober("127.0.0.1", port, rate=20).run_for(0.5)
    finally:
        stop.set()
        thread.join()
        listener.close()
    assert samples
    assert {s.kind for s in samples} == {"reset"}


class KeepAliveHandler(http.server.BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive (gunicorn's sync workers and werkzeug close after each answer)."""

    protocol_version = "HTTP/1.1"
    client_ports: ClassVar[list[int]] = []

    def do_GET(self) -> None:
        self.client_ports.append(self.client_address[1])
        body = b'{"message": "old"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def peak_in_flight(samples: list[Sample]) -> int:
    """The most requests that were open at the same moment."""
    events = sorted([(s.sent, 1) for s in samples] + [(s.sent + s.latency, -1) for s in samples])
    return max(itertools.accumulate(change for _, change in events))


def test_keepalive_reuses_connections_and_new_mode_does_not():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), KeepAliveHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port, client_ports = server.server_address[1], KeepAliveHandler.client_ports
    try:
        samples = Prober("127.0.0.1", port, rate=50, mode="keepalive").run_for(1.0)
        assert len(samples) >= 49 and all(s.ok for s in samples)
        # one connection per thread, and a thread only opens one when it has none:
        # at most as many as requests were ever in flight at once (slower on a loaded machine)
        connections = len(set(client_ports))
        assert connections < len(client_ports), "keep-alive opened a connection per request"
        assert connections <= peak_in_flight(samples) + 2, (connections, peak_in_flight(samples))

        client_ports.clear()
        samples = Prober("127.0.0.1", port, rate=50, mode="new").run_for(1.0)
        assert all(s.ok for s in samples)
        assert len(set(client_ports)) == len(client_ports) == len(samples)
    finally:
        server.shutdown()
        server.server_close()


class IdleClosingHandler(KeepAliveHandler):
    """Keep-alive, but an idle connection is closed after 20 ms without telling the client."""

    timeout = 0.02


def test_keepalive_counts_a_connection_the_server_closed_under_it():
    """Without retries, a request sent on a kept-alive connection the server has just closed fails."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), IdleClosingHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        samples = Prober("127.0.0.1", server.server_address[1], rate=10, mode="keepalive").run_for(1.0)
    finally:
        server.shutdown()
        server.server_close()
    kinds = Counter(s.kind for s in samples)
    assert kinds["reset"] >= 3, kinds
    assert set(kinds) <= {"ok", "reset"}, kinds


def test_old_message_after_the_old_pods_are_gone_is_an_error():
    def sample(sent: float, text: str) -> Sample:
        return Sample(scheduled=sent, sent=sent, latency=0.001, kind="ok", status=200, message=text)

    samples = [sample(1.0, "old"), sample(2.0, "new"), sample(3.0, "old"), sample(4.0, "new")]
    marked = mark_stale(samples, old_message="old", old_gone_at=2.5)
    assert [s.kind for s in marked] == ["ok", "ok", "stale", "ok"]
    assert summarize(marked)["error_kinds"] == {"stale": 1}


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="mode"):
        Prober("127.0.0.1", 1, mode="pipelined")
    with pytest.raises(ValueError, match="rate"):
        Prober("127.0.0.1", 1, rate=0)
