#!/usr/bin/env bash
# The servers ledgersync's tests need, on loopback only. Called by scripts/test before the tests.
#
#   scripts/services.sh start    # (default) start what is not running; check what is
#   scripts/services.sh status   # what listens on the ports the tests use
#
# Idempotent and non-interactive (CI runs it with CI=true and no input). A server that already
# listens is only checked, never reconfigured or restarted. A server that is missing is
# installed with apt (as root) and started with a loopback-only configuration.
#
# RabbitMQ (the AMQP bus tests, crates/bus and crates/runtime): 127.0.0.1:5672, guest/guest
# (guest may only log in from loopback, RabbitMQ's default). The tests create a vhost of their
# own with rabbitmqctl, so rabbitmqctl must be able to talk to the node (as root, or as the
# rabbitmq user). Configuration as measured in shared/infra/services.md §3a: node
# rabbit@localhost, every listener on 127.0.0.1, plugins enabled offline before the start,
# readiness awaited on the node's pid file.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

log() { printf '[services] %s\n' "$*"; }
die() { printf '[services] %s\n' "$*" >&2; exit 1; }
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
is_root() { [ "$(id -u)" = 0 ]; }

RABBIT_ENV=/etc/rabbitmq/rabbitmq-env.conf
RABBIT_CONF=/etc/rabbitmq/rabbitmq.conf
RABBIT_PID=/var/lib/rabbitmq/mnesia/rabbit@localhost.pid
MARKER='# written by ledgersync scripts/services.sh'

# The loopback configuration, written only where no configuration exists yet (or where this
# script wrote it): an administrator's own files are left alone.
rabbitmq_config() {
  mkdir -p /etc/rabbitmq
  if [ ! -s "$RABBIT_ENV" ] || grep -qF "$MARKER" "$RABBIT_ENV"; then
    cat >"$RABBIT_ENV" <<EOF
$MARKER
NODENAME=rabbit@localhost
NODE_IP_ADDRESS=127.0.0.1
NODE_PORT=5672
export ERL_EPMD_ADDRESS=127.0.0.1
EOF
  else
    log "keeping the existing $RABBIT_ENV"
  fi
  if [ ! -s "$RABBIT_CONF" ] || grep -qF "$MARKER" "$RABBIT_CONF"; then
    cat >"$RABBIT_CONF" <<EOF
$MARKER
listeners.tcp.default = 127.0.0.1:5672
distribution.listener.interface = 127.0.0.1
loopback_users.guest = true
management.tcp.ip = 127.0.0.1
management.tcp.port = 15672
stream.listeners.tcp.1 = 127.0.0.1:5552
EOF
  else
    log "keeping the existing $RABBIT_CONF"
  fi
}

rabbitmq_install() {
  command -v rabbitmq-server >/dev/null && return
  is_root || die "RabbitMQ is not installed and nothing listens on 127.0.0.1:5672: run this script as root (it installs the Debian package rabbitmq-server), or install and start RabbitMQ on 127.0.0.1:5672 yourself"
  command -v apt-get >/dev/null || die "RabbitMQ is not installed and there is no apt-get: install RabbitMQ and start it on 127.0.0.1:5672"
  # The configuration goes first: a package that starts its service on install (systemd)
  # then starts it on loopback.
  rabbitmq_config
  if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
    apt-get update -q >/dev/null
  fi
  log "installing rabbitmq-server (apt)"
  apt-get install -y -q -o Dpkg::Options::=--force-confold rabbitmq-server >/dev/null
}

rabbitmq_check() {
  command -v rabbitmqctl >/dev/null \
    || die "something listens on 127.0.0.1:5672 but rabbitmqctl is missing: the AMQP tests create their vhosts with it (install rabbitmq-server)"
  rabbitmqctl -q list_vhosts >/dev/null 2>&1 \
    || die "rabbitmqctl cannot reach the node on 127.0.0.1:5672: the AMQP tests create their vhosts with it; run the tests as root (or as the rabbitmq user)"
}

rabbitmq_start() {
  if listening 5672; then
    rabbitmq_check
    log "rabbitmq: already listening on 127.0.0.1:5672"
    return
  fi
  rabbitmq_install
  if ! listening 5672; then
    is_root || die "nothing listens on 127.0.0.1:5672 and starting RabbitMQ needs root: run this script as root, or start RabbitMQ on 127.0.0.1:5672"
    rabbitmq_config
    # Online, the plugins would bind on every interface until a restart: enable them first.
    rabbitmq-plugins enable --offline rabbitmq_management rabbitmq_consistent_hash_exchange rabbitmq_stream >/dev/null
    log "starting rabbitmq"
    rabbitmq-server -detached
    # await_startup fails until the node has registered with epmd: wait on the pid file.
    rabbitmqctl -q wait --timeout 60 "$RABBIT_PID" \
      || die "RabbitMQ did not start within 60 s: see /var/log/rabbitmq/"
  fi
  listening 5672 || die "RabbitMQ runs but nothing listens on 127.0.0.1:5672: see $RABBIT_CONF and /var/log/rabbitmq/"
  rabbitmq_check
  log "rabbitmq: listening on 127.0.0.1:5672"
}

status() {
  ss -ltnp 2>/dev/null | awk 'NR==1 || /127\.0\.0\.1:(5672|15672|5552|4369|25672) /' || true
}

case "${1:-start}" in
  start) rabbitmq_start ;;
  status) status ;;
  *) echo "usage: $0 [start|status]" >&2; exit 2 ;;
esac
