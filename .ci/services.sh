#!/usr/bin/env bash
# Start the services the suite talks to when they are not answering.
# The commands are this machine's own (see the env notes); only loopback is used.
set -euo pipefail

wait_for() {  # name, check command
  local name=$1; shift
  for _ in $(seq 1 60); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  echo "services: $name did not come up" >&2
  return 1
}

# Outside CI a missing service is only reported: the suites that need it skip.
# Under CI (CI is set) it is an error, and the suites that need it fail.
need() {
  if [ -n "${CI:-}" ]; then return 1; fi
  echo "services: $1 is not available; its tests will be skipped (CI fails instead)" >&2
}

postgres_up() { pg_isready -q -h 127.0.0.1 -p 5432; }
if ! postgres_up 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    echo "services: starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
  wait_for PostgreSQL postgres_up || need PostgreSQL
fi

# MariaDB (or MySQL): the suite's SIGNALBOX_TEST_DB=mysql run.
mariadb_up() { timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/3306' 2>/dev/null; }
if ! mariadb_up; then
  if [ -x /usr/sbin/mariadbd ]; then
    echo "services: starting MariaDB"
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
  fi
  wait_for MariaDB mariadb_up || need MariaDB
fi

# Redis: the Celery peer in `make bench` (and the engines later).
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }
if ! redis_up; then
  if command -v redis-server >/dev/null; then
    echo "services: starting Redis"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
      --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
  fi
  wait_for Redis redis_up || need Redis
fi

# RabbitMQ: the engines' integration tests (Celery and Dramatiq over AMQP).
rabbitmq_up() { timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/5672' 2>/dev/null; }
if ! rabbitmq_up; then
  if command -v rabbitmq-server >/dev/null; then
    echo "services: starting RabbitMQ"
    rabbitmq-server -detached || true
  fi
  wait_for RabbitMQ rabbitmq_up || need RabbitMQ
fi
