# feedamp worker image: `docker build -t feedamp .`, then `docker run feedamp` runs
# `feedamp worker`; any other subcommand works too (`docker run feedamp feed USER`).
# Configure with KAFKA_BOOTSTRAP_SERVERS, REDIS_URL and FEEDAMP_* (see config/__init__.py).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only what the package needs is copied: tests, bench and the rest stay out of the image.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY feedamp/ feedamp/
COPY config/ config/
COPY models/ models/
COPY feeds/ feeds/
COPY streams/ streams/
COPY kafka/ kafka/
COPY ops/ ops/
COPY embedded/ embedded/
COPY cli/ cli/
COPY console/ console/
RUN pip install /src \
    && feedamp --help >/dev/null

# Unprivileged user. Faust creates its data directory (`<app id>-data`) in the working
# directory, so that must be writable.
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /app feedamp
USER feedamp
WORKDIR /app

ENTRYPOINT ["feedamp"]
CMD ["worker"]
