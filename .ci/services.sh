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

# A broker can hold its port open and still answer nothing (an interrupted stop_app): ask it for
# the AMQP protocol header; if no answer comes, restart it.
amqp_answers() {
  timeout 10 bash -c 'exec 3<>/dev/tcp/127.0.0.1/5672 && printf "AMQP\x00\x00\x09\x01" >&3 &&
    [ "$(timeout 8 head -c 1 <&3 | od -An -c | tr -d " ")" != "" ]' 2>/dev/null
}
restart_rabbitmq() {
  pkill -9 -f 'beam.smp.*rabbit' || true
  sleep 2
  rabbitmq-server -detached >/dev/null 2>&1 || true
  for _ in $(seq 1 60); do amqp_login && return 0; sleep 1; done
  return 1
}
# The full handshake: a broker stuck recovering its queues accepts the header and then hangs.
amqp_login() {
  timeout 15 "${PYTHON:-python3}" - <<'PY' 2>/dev/null
import base64, socket
s = socket.create_connection(("127.0.0.1", 5672), timeout=10)
s.sendall(b"AMQP\x00\x00\x09\x01")
assert s.recv(1)[:1] == b"\x01"  # connection.start: the broker is serving connections
PY
}
if ! amqp_answers || ! amqp_login; then
  echo "rabbitmq holds port 5672 but does not answer AMQP: restarting it"
  if ! restart_rabbitmq; then
    # It cannot recover its own queue state (test queues only): start it with a fresh one.
    echo "rabbitmq did not recover its state: starting it afresh"
    pkill -9 -f 'beam.smp.*rabbit' || true
    mnesia=/var/lib/rabbitmq/mnesia
    rm -rf "$mnesia.stale" && mv "$mnesia" "$mnesia.stale" && install -d -o rabbitmq -g rabbitmq "$mnesia"
    restart_rabbitmq || echo "warning: rabbitmq still not answering AMQP" >&2
  fi
fi
