#!/usr/bin/env bash
# Start any local service the tests may use that is not answering (never skip a test for it).
set -uo pipefail

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

ensure() {
  local name=$1 port=$2; shift 2
  if up "$port"; then return 0; fi
  echo "starting $name (port $port was closed)"
  "$@" >/dev/null 2>&1 || true
  for _ in $(seq 1 60); do up "$port" && return 0; sleep 1; done
  echo "warning: $name still not answering on $port" >&2
}

ensure postgresql 5432 bash -c 'pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start'
ensure mariadb 3306 start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
ensure rabbitmq 5672 rabbitmq-server -detached
