# syntax=docker/dockerfile:1
# SSW Logs Capture agent image. Build: docker build -t ssw-logs-capture .
# Run:   docker run --rm -e KAFKA_BROKERS=kafka:9092 -v /var/log/app:/var/log/app:ro ssw-logs-capture

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
# The hot path's two C modules need gcc here (build stage only); confluent-kafka's manylinux
# wheel bundles the librdkafka they open at run time: no system library is needed. Not pinned:
# the build stage only compiles (any bookworm gcc does), and libc6-dev follows security updates.
# hadolint ignore=DL3008
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml setup.py README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="ssw-logs-capture" \
      org.opencontainers.image.description="Log shipping agent: files, containers, syslog, stdin and HTTP to Apache Kafka" \
      org.opencontainers.image.licenses="MIT"
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels /wheels/log_capturer-*.whl \
    && rm -rf /wheels \
    && groupadd --system --gid 10001 logcapturer \
    && useradd --system --uid 10001 --gid logcapturer --no-create-home --shell /usr/sbin/nologin logcapturer \
    && mkdir -p /var/lib/log-capturer /var/log/app \
    && chown logcapturer:logcapturer /var/lib/log-capturer
COPY deploy/docker/config.yaml /etc/log-capturer/config.yaml
# Positions and the local DLQ: keep this on a volume so a restart resumes where it stopped.
VOLUME ["/var/lib/log-capturer"]
WORKDIR /var/lib/log-capturer
# 8401: API (/health, /stats, /positions, POST /api/v1/logs); 8001: /metrics and a plain /health; 5140: syslog.
EXPOSE 8401 8001 5140/tcp 5140/udp
# Reading other containers' logs (/var/lib/docker/containers) needs root: docker-compose.yml and the
# Kubernetes DaemonSet run the image as user 0; files the agent may read as itself need no more.
USER 10001:10001
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8001/health', timeout=4).read() != b'OK')"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["log-capturer"]
CMD ["run", "--config", "/etc/log-capturer/config.yaml", "--no-status"]
