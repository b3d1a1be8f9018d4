#!/usr/bin/env bash
# Starts the services the tests need when they are down (this machine kind starts them before a
# session; CI runs after the session's processes are ended, so check and restart as needed).
# Tests that need a service fail with a clear message under CI=true when it is still down.
set -u
up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
start() {
  local name=$1 port=$2; shift 2
  if up "$port"; then echo "== $name up on :$port"; return; fi
  echo "== starting $name"
  "$@" >/dev/null 2>&1 || echo "   (start command for $name failed)"
  for _ in $(seq 1 30); do up "$port" && { echo "   $name up on :$port"; return; }; sleep 1; done
  echo "   $name still down on :$port"
}
command -v pg_ctlcluster >/dev/null && start postgresql 5432 pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
command -v mariadbd >/dev/null && start mariadb 3306 start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
command -v redis-server >/dev/null && start redis 6379 redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
command -v nats-server >/dev/null && start nats 4222 start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
command -v rabbitmq-server >/dev/null && start rabbitmq 5672 rabbitmq-server -detached
# Message failover tests federate exchanges between per-unit vhosts (test/bridges/mq/failover-amqp.test.ts).
if command -v rabbitmq-plugins >/dev/null && up 5672; then
  rabbitmq-plugins enable rabbitmq_federation >/dev/null 2>&1 && echo "   rabbitmq_federation enabled" \
    || echo "   (could not enable rabbitmq_federation)"
fi
command -v mosquitto >/dev/null && start mosquitto 1883 mosquitto -d -c /etc/mosquitto/mosquitto.conf
exit 0
