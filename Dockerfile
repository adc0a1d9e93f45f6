# The livewindows image: one console script, `livewindows`, for every service
# (serve, worker, topics create, replay). Kafka itself comes from apache/kafka.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY livewindows ./livewindows
COPY producer ./producer
COPY processor ./processor
COPY schemas ./schemas
RUN pip install -c constraints.txt . \
    && useradd --system --uid 10001 --home-dir /app livewindows \
    && mkdir -p /data \
    && chown livewindows /data

USER livewindows
VOLUME ["/data"]
EXPOSE 8080
ENTRYPOINT ["livewindows"]
CMD ["--help"]
