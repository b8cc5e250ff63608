"""A constant-rate HTTP prober, standard library only, that logs every request.

It sends GET requests at a fixed rate (a dispatcher thread schedules request i
at start + i/rate, a thread pool sends them, so a slow answer never delays the
next request), never retries, and classifies each outcome:

- ok: 200 with a JSON body {"message": M}, M one of the expected messages;
- connect: the TCP connection failed (refused, unreachable, connect timeout);
- reset: the connection broke before a complete answer (reset, closed early);
- timeout: no complete answer within the timeout (2 s), or a slower answer;
- status: an HTTP status other than 200;
- body: not {"message": <expected>};
- stale: the old message after the last old pod was gone (see mark_stale).

Two connection modes: a new TCP connection per request ("new", Connection:
close) and one persistent connection per sending thread ("keepalive", reused
for as long as the server keeps it open; a request that finds it closed is an
error, as for any client without retries).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import statistics
import threading
import time
from collections import Counter
from collections.abc import Collection, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace

MODES = ("new", "keepalive")
ERROR_KINDS = ("connect", "reset", "timeout", "status", "body", "stale")
DEFAULT_TIMEOUT = 2.0


@dataclass(frozen=True)
class Sample:
    """One request: when it was due and sent (time.monotonic), how it ended."""

    scheduled: float
    sent: float
    latency: float
    kind: str
    status: int = 0
    message: str | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.kind == "ok"


def classify_body(status: int, body: bytes, expected: Collection[str] | None) -> tuple[str, str | None, str]:
    """(kind, message, detail) of a complete HTTP answer."""
    message = None
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        document = None
    if isinstance(document, dict) and set(document) == {"message"} and isinstance(document["message"], str):
        message = document["message"]
    if status != 200:
        return "status", message, f"HTTP {status}"
    if message is None:
        return "body", None, f"not {{'message': str}}: {body[:80]!r}"
    if expected is not None and message not in expected:
        return "body", message, "unexpected message"
    return "ok", message, ""


def classify_exception(error: BaseException, elapsed: float, timeout: float, connected: bool) -> tuple[str, str]:
    """(kind, detail) of a request that raised before a complete answer."""
    detail = f"{type(error).__name__}: {error}"
    if isinstance(error, TimeoutError) or elapsed >= timeout:
        return ("timeout" if connected else "connect"), detail
    if not connected:
        return "connect", detail
    return "reset", detail


class Prober:
    """Send GET http://host:port/path at `rate` per second until stop()."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        path: str = "/version",
        rate: float = 100.0,
        mode: str = "new",
        timeout: float = DEFAULT_TIMEOUT,
        expected: Collection[str] | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.host, self.port, self.path = host, port, path
        self.rate, self.mode, self.timeout = rate, mode, timeout
        self.expected = set(expected) if expected is not None else None
        self.samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._local = threading.local()
        # Enough threads that every request of 2 timeouts can hang at once and
        # the next one still leaves on time.
        self._pool = ThreadPoolExecutor(max_workers=math.ceil(rate * timeout * 2) + 8, thread_name_prefix="probe")
        self._dispatcher = threading.Thread(target=self._dispatch, name="probe-dispatch", daemon=True)
        self.started_at = 0.0
        self.stopped_at = 0.0
        # run_for: no request is scheduled after started_at + this (a late wake-up
        # of the caller on a loaded machine must not add requests)
        self._duration: float | None = None

    # lifecycle ----------------------------------------------------------
    def start(self) -> Prober:
        self.started_at = time.monotonic()
        self._dispatcher.start()
        return self

    def stop(self) -> list[Sample]:
        """Stop sending, wait for the requests in flight, return every sample sorted by schedule."""
        self._stop.set()
        self._dispatcher.join()
        self._pool.shutdown(wait=True)
        self.stopped_at = time.monotonic()
        with self._lock:
            return sorted(self.samples, key=lambda s: s.scheduled)

    def run_for(self, seconds: float) -> list[Sample]:
        """Send for exactly `seconds` of schedule (rate * seconds + 1 requests), then stop."""
        self._duration = seconds
        self.start()
        self._dispatcher.join()
        return self.stop()

    def __enter__(self) -> Prober:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if not self._stop.is_set():
            self.stop()

    # sending ------------------------------------------------------------
    def _dispatch(self) -> None:
        index = 0
        while True:
            if self._duration is not None and index / self.rate > self._duration + 1e-9:
                return
            due = self.started_at + index / self.rate
            delay = due - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            if self._stop.is_set():
                return
            self._pool.submit(self._request, due)
            index += 1

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """(connection, reused). keepalive: this thread's open connection, if any."""
        if self.mode == "keepalive":
            connection = getattr(self._local, "connection", None)
            if connection is not None and connection.sock is not None:
                return connection, True
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        if self.mode == "keepalive":
            self._local.connection = connection
        return connection, False

    def _request(self, scheduled: float) -> None:
        connection, connected = self._connection()
        headers = {"Connection": "close"} if self.mode == "new" else {}
        sent = time.monotonic()
        try:
            if not connected:
                connection.connect()
                connected = True
            connection.request("GET", self.path, headers=headers)
            response = connection.getresponse()
            body = response.read()
            latency = time.monotonic() - sent
            if self.mode == "new" or response.will_close:
                connection.close()
            if latency > self.timeout:
                detail = f"answered after {latency:.3f}s"
                sample = Sample(scheduled, sent, latency, "timeout", response.status, detail=detail)
            else:
                kind, message, detail = classify_body(response.status, body, self.expected)
                sample = Sample(scheduled, sent, latency, kind, response.status, message, detail)
        except (OSError, http.client.HTTPException) as error:
            latency = time.monotonic() - sent
            connection.close()
            kind, detail = classify_exception(error, latency, self.timeout, connected)
            sample = Sample(scheduled, sent, latency, kind, detail=detail)
        with self._lock:
            self.samples.append(sample)


def mark_stale(samples: Iterable[Sample], old_message: str, old_gone_at: float) -> list[Sample]:
    """Requests sent after the last old pod was gone that still got the old message are errors."""
    return [
        replace(s, kind="stale", detail="old message after the old pods were gone")
        if s.ok and s.message == old_message and s.sent > old_gone_at
        else s
        for s in samples
    ]


def summarize(samples: list[Sample]) -> dict[str, object]:
    """Counts, error kinds, messages, latencies and how well the rate was held."""
    errors = [s for s in samples if not s.ok]
    latencies = sorted(s.latency for s in samples if s.ok)
    span = (samples[-1].scheduled - samples[0].scheduled) if len(samples) > 1 else 0.0
    lags = [s.sent - s.scheduled for s in samples]

    def percentile(fraction: float) -> float | None:
        if not latencies:
            return None
        return round(latencies[min(len(latencies) - 1, int(fraction * len(latencies)))] * 1000, 2)

    return {
        "requests": len(samples),
        "errors": len(errors),
        "error_ratio": round(len(errors) / len(samples), 6) if samples else None,
        "error_kinds": dict(Counter(s.kind for s in errors)),
        "messages": dict(Counter(s.message for s in samples if s.ok)),
        "rate_per_s": round((len(samples) - 1) / span, 2) if span > 0 else None,
        "max_send_lag_ms": round(max(lags) * 1000, 2) if lags else None,
        "latency_ms": {
            "p50": percentile(0.5),
            "p99": percentile(0.99),
            "max": round(latencies[-1] * 1000, 2) if latencies else None,
            "mean": round(statistics.fmean(latencies) * 1000, 2) if latencies else None,
        },
    }


def as_rows(samples: Iterable[Sample], origin: float) -> list[dict[str, object]]:
    """Samples as plain rows with times relative to `origin` (for logs and JSON)."""
    rows = []
    for sample in samples:
        row = asdict(sample)
        row["scheduled"] = round(sample.scheduled - origin, 4)
        row["sent"] = round(sample.sent - origin, 4)
        row["latency"] = round(sample.latency, 5)
        rows.append(row)
    return rows


def probe_command(args: list[str]) -> int:
    """`python -m lab.bench.prober HOST PORT [SECONDS] [RATE] [MODE]`: a quick manual probe."""
    host, port = args[0], int(args[1])
    seconds = float(args[2]) if len(args) > 2 else 5.0
    rate = float(args[3]) if len(args) > 3 else 100.0
    mode = args[4] if len(args) > 4 else "new"
    samples = Prober(host, port, rate=rate, mode=mode).run_for(seconds)
    print(json.dumps(summarize(samples), indent=2, ensure_ascii=False))
    return 0 if all(s.ok for s in samples) else 1


if __name__ == "__main__":
    import sys

    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(probe_command(sys.argv[1:]))
