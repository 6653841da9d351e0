# syntax=docker/dockerfile:1
# SSW Logs Capture agent image. The agent's wheel and every dependency are built on the host
# (`make wheels`: pip wheel --wheel-dir build/wheels .) and installed here with --no-index: the
# build needs no network and installs exactly the wheels it is given. Build: make image
# (= make wheels, then docker build -t ssw-logs-capture .).
# Run:   docker run --rm -e KAFKA_BROKERS=kafka:9092 -v /var/log/app:/var/log/app:ro ssw-logs-capture
#
# BASE_IMAGE: any Debian bookworm image with Python 3.11 and its venv module (the host's wheels
# are cp311 for glibc 2.36). The default is the official Python image; the test suite passes a
# local one made with debootstrap (no registry is reachable there).
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="ssw-logs-capture" \
      org.opencontainers.image.description="Log shipping agent: files, containers, syslog, stdin and HTTP to Apache Kafka" \
      org.opencontainers.image.licenses="MIT"
# The directory of wheels, relative to the build context (make wheels writes build/wheels).
ARG WHEELS=build/wheels
COPY ${WHEELS}/ /wheels/
RUN python3 -m venv /opt/log-capturer \
    && /opt/log-capturer/bin/pip install --no-cache-dir --no-index --find-links=/wheels /wheels/log_capturer-*.whl \
    && rm -rf /wheels \
    && groupadd --system --gid 10001 logcapturer \
    && useradd --system --uid 10001 --gid logcapturer --no-create-home --shell /usr/sbin/nologin logcapturer \
    && mkdir -p /var/lib/log-capturer /var/log/app \
    && chown logcapturer:logcapturer /var/lib/log-capturer
ENV PATH=/opt/log-capturer/bin:$PATH
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
