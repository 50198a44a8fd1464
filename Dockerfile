# Airlock's image: the portal, the Celery worker and beat are all this image, started as
# `deploy/start web|worker|beat` (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, from the lock alone, so that a code change reuses this layer: exactly
# the pinned versions, each file checked against its hash. The project itself runs from
# /app and is not installed.
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock

COPY . .

# Static files are collected into the image (WhiteNoise serves them, compressed and
# fingerprinted). The secret key here only lets settings load; it is not kept.
RUN DEBUG=false SECRET_KEY=collectstatic-at-build-time-only \
    python manage.py collectstatic --no-input --verbosity 0

# Run as an unprivileged user that cannot change the code it runs. data/ is writable only
# for the SQLite defaults; compose uses PostgreSQL and Redis.
RUN useradd --system --user-group --home-dir /app --no-create-home --shell /usr/sbin/nologin airlock \
    && mkdir -p data/metrics \
    && chown airlock:airlock data data/metrics
USER airlock

EXPOSE 8000
CMD ["deploy/start", "web"]
