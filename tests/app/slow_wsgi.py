"""The real app behind a test-only delay, so a request can be in flight at SIGTERM."""

import os
import time
from pathlib import Path
from urllib.parse import parse_qs

from tiny_http_app import create_app

_app = create_app(message="drain-test")


def app(environ, start_response):
    delay = parse_qs(environ.get("QUERY_STRING", "")).get("delay", ["0"])[0]
    if "IN_FLIGHT_MARKER" in os.environ:  # tells the test a worker holds the request now
        Path(os.environ["IN_FLIGHT_MARKER"]).touch()
    time.sleep(float(delay))
    return _app(environ, start_response)
