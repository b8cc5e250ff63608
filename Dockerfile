# tiny-http-app: Flask behind gunicorn, non-root, read-only-root friendly.
#
# BASE_IMAGE is any Debian-based image with python3 and the venv module. Online:
# the default below. Offline (the lab, air-gapped users): a base made locally,
# wheels downloaded beforehand into wheels/ and
#   --build-arg BASE_IMAGE=localhost/python-base:... --build-arg PIP_INSTALL_OPTS=--no-index
ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ARG PIP_INSTALL_OPTS=""
COPY app/requirements.txt /tmp/requirements.txt
COPY wheels/ /wheels/
# PIP_INSTALL_OPTS is deliberately unquoted: it holds zero or more options.
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check \
      ${PIP_INSTALL_OPTS} --find-links /wheels -r /tmp/requirements.txt

FROM ${BASE_IMAGE}
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH \
    PORT=8080 \
    WEB_CONCURRENCY=2
COPY --from=build /opt/venv /opt/venv
COPY app/gunicorn.conf.py /app/gunicorn.conf.py
COPY app/tiny_http_app /app/tiny_http_app
WORKDIR /app
# `sleep` (coreutils) must stay in the image: the chart's preStop hook execs it.
RUN sleep 0
USER 10001:10001
EXPOSE 8080
# Standard library only: nothing else is installed to make a request with.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["python3", "-c", "import os, sys, urllib.request; r = urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8080') + '/health', timeout=2); sys.exit(0 if r.status == 200 else 1)"]
CMD ["gunicorn", "--config", "/app/gunicorn.conf.py", "tiny_http_app.wsgi:app"]
