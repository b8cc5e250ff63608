"""gunicorn settings for the container. Everything tunable comes from the environment."""

import os

bind = f"0.0.0.0:{os.environ.get('PORT', '8080')}"
worker_class = "sync"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# On SIGTERM workers finish in-flight requests for up to this long. The chart sets
# it and makes terminationGracePeriodSeconds = preStop sleep + this + slack.
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", "20"))
timeout = int(os.environ.get("WORKER_TIMEOUT", "30"))
# The heartbeat file must be on a writable tmpfs: the root filesystem is read-only.
worker_tmp_dir = os.environ.get("WORKER_TMP_DIR", "/dev/shm")
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'
