#!/usr/bin/env bash
# Installs the Debian packages the project needs, once (only those missing). Java 17+ and
# Maven run the local Kafka broker; the rest are real peers used by tests and benchmarks.
set -euo pipefail
need=()
# A C compiler and Python's headers build the hot path's C modules (pip install, setup.py).
# `--compiler`: only these (make install runs it before pip).
command -v gcc >/dev/null || need+=(gcc libc6-dev)
if [ "${1:-}" != "--compiler" ]; then
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need+=(maven)
# javac compiles the small main class that runs the local OpenSearch node (log-capturer opensearch up).
command -v javac >/dev/null || need+=(openjdk-17-jdk-headless)
# nginx: TLS, mutual TLS, basic auth and API-key checks in front of the local OpenSearch node
# (the Elasticsearch sink's security tests run their own instance on loopback ports), and a rate
# limit answering 429 + Retry-After in front of VictoriaLogs (devtools/nginx_local.py, the Loki
# sink's 429 test).
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
# util-linux's `logger` (Debian package bsdutils) is the real syslog client of the syslog tests;
# they need its --server/--tcp/--udp/--rfc3164/--rfc5424/--octet-count options.
if ! command -v logger >/dev/null || ! logger --help 2>&1 | grep -q -- '--octet-count'; then
  need+=(bsdutils)
fi
# kcat (raw librdkafka producer/consumer): the benchmark's ceiling and an independent client.
command -v kcat >/dev/null || need+=(kcat)
# rsyslog: a real syslog receiver for the load generator's syslog target.
command -v rsyslogd >/dev/null || [ -x /usr/sbin/rsyslogd ] || need+=(rsyslog)
# rsyslog's GnuTLS network stream driver: the TLS syslog (RFC 5425) tests forward through it.
dpkg -s rsyslog-gnutls >/dev/null 2>&1 || need+=(rsyslog-gnutls)
# Prometheus and promtool: the alert rules are checked and unit-tested with promtool, and a real
# Prometheus scrapes the agent in the integration tests (they run their own server on a free
# loopback port, never the package's system service).
{ command -v prometheus >/dev/null && command -v promtool >/dev/null; } || need+=(prometheus)
# curl and jq: the design document's health check (curl .../health | jq ...) is run as written.
command -v curl >/dev/null || need+=(curl)
command -v jq >/dev/null || need+=(jq)
# socat: a real TLS terminator that requires a client certificate (OpenSSL), in front of the local
# VictoriaLogs, for the Loki sink's mutual TLS test (VictoriaLogs' open-source build has no mTLS).
command -v socat >/dev/null || need+=(socat)
# A private Docker Engine (log-capturer docker up; the container source and agent image tests):
# dockerd and its client, Compose v1 for the stack test, busybox-static and debootstrap for the
# local images (no registry is reachable). Nothing is started here: the project runs dockerd itself.
command -v dockerd >/dev/null || [ -x /usr/sbin/dockerd ] || need+=(docker.io)
command -v docker-compose >/dev/null || need+=(docker-compose)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || need+=(debootstrap)
# npm: installs dclint (the Compose file linter) for the deployment-file tests.
command -v npm >/dev/null || need+=(npm)
fi
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
echo "installing Debian packages: ${need[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
