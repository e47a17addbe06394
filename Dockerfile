# telewatch: the archiver, the scheduled jobs and the bot in one container.
#   docker compose run --rm telewatch login   # once: log in to Telegram (prompts)
#   docker compose up -d                      # then: `telewatch run`
# Everything that changes lives in the /data volume: config.toml, the archive, the session,
# media and backups. No secret is baked into the image: they come from /data/config.toml or
# the environment (TELEWATCH_API_ID, TELEWATCH_API_HASH, TELEWATCH_BOT_TOKEN, TELEWATCH_SESSION).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TELEWATCH_CONFIG=/data/config.toml

WORKDIR /app

# The pinned dependencies first: this layer is rebuilt only when the lock file changes.
COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock

COPY pyproject.toml README.md ./
COPY archiver ./archiver
COPY bot ./bot
RUN pip install --no-cache-dir --no-deps . \
    && useradd --create-home --uid 10001 --user-group telewatch \
    && mkdir -p /data \
    && chown telewatch:telewatch /data

USER 10001:10001
WORKDIR /data
VOLUME ["/data"]

# Healthy: the heartbeat of `telewatch run` and every channel's last sync are fresh.
HEALTHCHECK --interval=1m --timeout=30s --start-period=15m --retries=3 \
    CMD ["telewatch", "health"]

# `telewatch run` by default; any other command as arguments: `docker run IMAGE login`.
# It stops cleanly on SIGTERM within 10 s (Docker's default grace period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["telewatch"]
CMD ["run"]
