# telewatch: the archiver, the scheduled jobs and the bot in one container.
# How to run it: README.md, "In a container" (the one source for the commands; docker-compose.yml
# and docs/operations.md follow it).
#
# Layout: the container is laid out like a checkout. telewatch runs in / as uid 10001, and
# everything that changes lives in the /data volume (./data on the host): the config
# data/config.toml (/config.toml links to it, so telewatch finds it as it finds ./config.toml,
# and runs on built-in defaults without it, like the demo), and what the example config names
# data/telewatch.db, data/telewatch.session, data/backups, data/media, and the demo's
# data/demo.db. Relative paths resolve against /, so they mean the same files as in a checkout
# on the host: ./data/telewatch.db either way. No secret is in the image: they come from the
# config in the volume or from the environment (TELEWATCH_API_ID, TELEWATCH_API_HASH,
# TELEWATCH_BOT_TOKEN, TELEWATCH_SESSION).

# ---- build: the pinned dependencies and telewatch's own wheel, in a virtualenv at /app
FROM python:3.11-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# The pinned dependencies first: this layer is rebuilt only when the lock file changes. pip runs
# inside the virtualenv, so it neither touches the system's packages nor warns about root.
COPY requirements.lock ./
RUN python -m venv /app \
    && /app/bin/pip install --no-cache-dir -r requirements.lock

COPY pyproject.toml README.md ./
COPY archiver ./archiver
COPY bot ./bot
COPY web ./web
# A wheel, installed like any package: no source tree, build/ or *.egg-info is left in /app.
# pip and setuptools go too: nothing installs anything at run time.
RUN /app/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && /app/bin/pip install --no-cache-dir --no-deps /wheels/telewatch-*.whl \
    && /app/bin/pip uninstall --yes pip setuptools

# ---- the image: Python, the virtualenv and an unprivileged user; nothing else
FROM python:3.11-slim-bookworm

ENV PATH=/app/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TELEWATCH_IN_CONTAINER=1

RUN useradd --create-home --uid 10001 --user-group telewatch \
    && mkdir -p /data \
    && chown telewatch:telewatch /data \
    && ln -s data/config.toml /config.toml
COPY --from=build /app /app

USER 10001:10001
WORKDIR /
VOLUME ["/data"]

# Healthy: `telewatch run` is running (its heartbeat is fresh, it has not stopped or failed) and
# every channel's last sync is fresh.
HEALTHCHECK --interval=1m --timeout=30s --start-period=15m --retries=3 \
    CMD ["telewatch", "health"]

# `telewatch run` by default; any other command as arguments: `docker run IMAGE demo`.
# It stops cleanly on SIGTERM within 10 s (Docker's default grace period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["telewatch"]
CMD ["run"]
